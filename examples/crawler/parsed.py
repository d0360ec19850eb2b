"""What the workers send back for each page (no third-party import: the parent loads it)."""

from __future__ import annotations

from typing import NamedTuple


class Parsed(NamedTuple):
    """What a page yielded; ``error`` is set when it could not be parsed.

        ``meta`` and ``extra`` (the hook's result) come as JSON text, ready to store.
        ``text_chars`` is the length of the page's whole text (text nodes stripped and
        joined by spaces); ``text`` is its first :data:`MAX_TEXT_CHARS` characters with
        whitespace collapsed. ``links`` are new to this worker: the parent dedups again.
    ``encoding`` is the codec the body was decoded with; ``skipped_links`` are links that
    are not requested (an unwanted extension), with the reason.
    """

    title: str = ""
    text: str = ""
    text_chars: int = 0
    meta: str = "{}"
    canonical: str | None = None
    links: tuple[str, ...] = ()
    extra: str = "{}"
    invalid_links: tuple[tuple[str, str], ...] = ()
    error: str | None = None
    links_found: int = 0
    encoding: str = "utf-8"
    skipped_links: tuple[tuple[str, str], ...] = ()
