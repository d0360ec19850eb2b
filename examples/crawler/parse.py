"""Page parsing, run in the engine's worker processes (selectolax's lexbor parser).

:func:`parse_page` takes the raw body and returns a :class:`Parsed` with the title, the
text, the meta tags and the links worth following, already resolved against
``<base href>``, normalised and filtered by the crawl's scope. ``rel=nofollow`` links and
pages whose meta robots say ``nofollow`` give no links. A user hook, named
``"module:function"``, can add its own extraction: it is called as ``hook(url, tree)``
with the selectolax tree and returns a JSON-serialisable dict.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from selectolax.lexbor import LexborHTMLParser

from .urls import CompiledScope, InvalidUrl, Scope, normalise

MAX_TEXT_CHARS = 2000  # text kept per page; the full length is recorded too
MAX_INVALID_LINKS = 20  # invalid links recorded per page
BINARY_SNIFF_BYTES = 1024  # the prefix of a body checked for binary content
BINARY_CONTROL_FRACTION = 0.05  # control bytes in the prefix past which a body is binary
TEXT_CONTROL_BYTES = frozenset(b"\t\n\r\x0c")

Hook = Callable[[str, LexborHTMLParser], dict[str, Any]]


@dataclass(frozen=True)
class Parsed:
    """What a page yielded; ``error`` is set when it could not be parsed."""

    title: str = ""
    text: str = ""
    text_chars: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    canonical: str | None = None
    links: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    invalid_links: tuple[tuple[str, str], ...] = ()
    error: str | None = None


def parse_page(url: str, body: bytes, scope: Scope, hook_name: str | None) -> Parsed:
    """Parse one HTML page; never raises for bad HTML (``error`` says why instead)."""
    if _looks_binary(body[:BINARY_SNIFF_BYTES]):
        return Parsed(error="binary body served as HTML")
    tree = LexborHTMLParser(body.decode("utf-8", errors="replace"))
    base = _base_url(tree, url)
    meta = _meta(tree)
    text = _text(tree)
    follow = "nofollow" not in meta.get("robots", "").lower()
    extra: dict[str, Any] = {}
    if hook_name:
        try:
            extra = load_hook(hook_name)(url, tree)
        except Exception as exc:
            return Parsed(error=f"hook {hook_name} failed: {type(exc).__name__}: {exc}")
    scope_rules = _compiled(scope)
    canonical = _canonical(tree, base)
    links, invalid = _links(tree, base, scope_rules) if follow else ({}, [])
    if canonical and canonical != url and scope_rules.follows(canonical):
        links[canonical] = None
    return Parsed(
        title=_title(tree),
        text=text[:MAX_TEXT_CHARS],
        text_chars=len(text),
        meta=meta,
        canonical=canonical,
        links=tuple(links),
        extra=extra,
        invalid_links=tuple(invalid[:MAX_INVALID_LINKS]),
    )


def _looks_binary(prefix: bytes) -> bool:
    """A NUL byte, or more control bytes than any text has (random bytes have ~12 %)."""
    if b"\x00" in prefix:
        return True
    controls = sum(1 for byte in prefix if byte < 32 and byte not in TEXT_CONTROL_BYTES)
    return controls > BINARY_CONTROL_FRACTION * max(1, len(prefix))


def parse_pages(
    pages: list[tuple[str, bytes]], scope: Scope, hook_name: str | None
) -> list[Parsed]:
    """:func:`parse_page` over several ``(url, body)`` pages, in order."""
    return [parse_page(url, body, scope, hook_name) for url, body in pages]


@cache
def load_hook(name: str) -> Hook:
    """Import ``"package.module:function"`` (cached per process)."""
    module_name, _, function_name = name.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"hook must be 'module:function', not {name!r}")
    function = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(function):
        raise ValueError(f"{name!r} is not a function")
    return function  # type: ignore[no-any-return]


@cache
def _compiled(scope: Scope) -> CompiledScope:
    return scope.compiled()


def _title(tree: LexborHTMLParser) -> str:
    node = tree.css_first("title")
    return node.text(strip=True) if node is not None else ""


def _text(tree: LexborHTMLParser) -> str:
    body = tree.body
    if body is None:
        return ""
    return " ".join(body.text(separator=" ").split())


def _meta(tree: LexborHTMLParser) -> dict[str, str]:
    meta: dict[str, str] = {}
    for node in tree.css("meta[name]"):
        name = (node.attributes.get("name") or "").lower()
        content = node.attributes.get("content")
        if name and content is not None:
            meta[name] = content
    return meta


def _base_url(tree: LexborHTMLParser, url: str) -> str:
    node = tree.css_first("base[href]")
    href = node.attributes.get("href") if node is not None else None
    if not href:
        return url
    try:
        return normalise(href, url)
    except InvalidUrl:
        return url


def _canonical(tree: LexborHTMLParser, base: str) -> str | None:
    for node in tree.css("link[rel][href]"):
        if "canonical" in (node.attributes.get("rel") or "").lower().split():
            try:
                return normalise(node.attributes.get("href") or "", base)
            except InvalidUrl:
                return None
    return None


def _links(
    tree: LexborHTMLParser, base: str, scope: CompiledScope
) -> tuple[dict[str, None], list[tuple[str, str]]]:
    """Followable links in page order, and the invalid ones with the reason."""
    found: dict[str, None] = {}
    invalid: list[tuple[str, str]] = []
    for node in tree.css("a[href]"):
        attributes = node.attributes
        if "nofollow" in (attributes.get("rel") or "").lower().split():
            continue
        href = (attributes.get("href") or "").strip()
        if href.startswith(("mailto:", "javascript:", "tel:", "#", "data:")):
            continue
        try:
            link = normalise(href, base)
        except InvalidUrl as exc:
            invalid.append((href[:500], str(exc)))
            continue
        if scope.follows(link):
            found[link] = None
    return found, invalid
