"""Page parsing, run in the engine's worker processes (selectolax's lexbor parser).

:func:`parse_page` takes the raw body, decodes it as a browser would
(:mod:`examples.crawler.charset`), and returns a :class:`Parsed` with the title, the
text, the meta tags and the links worth following, already resolved against
``<base href>``, normalised and filtered by the crawl's scope. ``rel=nofollow`` links and
pages whose meta robots say ``nofollow`` give no links; links to files that are never HTML
(by extension) are reported apart, to be recorded as skipped and never requested. A user hook, named
``"module:function"``, can add its own extraction: it is called as ``hook(url, tree)``
with the selectolax tree and returns a JSON-serialisable dict.
"""

from __future__ import annotations

import contextlib
import json
from functools import cache

from selectolax.lexbor import LexborHTMLParser, LexborNode

from .charset import decode_body
from .hook import load_hook
from .parsed import Parsed
from .recent import RecentSet
from .urls import CompiledScope, InvalidUrl, LinkResolver, Scope, extension_refusal

MAX_TEXT_CHARS = 2000  # text kept per page; the full length is recorded too
MAX_INVALID_LINKS = 20  # invalid links recorded per page
BINARY_SNIFF_BYTES = 1024  # the prefix of a body checked for binary content
BINARY_CONTROL_FRACTION = 0.05  # control bytes in the prefix past which a body is binary
SEEN_LINKS_KEPT = 20_000  # links a worker remembers having returned (a prefilter only)
# Every byte but the control bytes text never has: deleting these leaves the suspicious ones.
NOT_SUSPICIOUS = bytes(b for b in range(256) if b >= 32 or b in b"\t\n\r\x0c")
# One pass over the tree finds every element parsing needs, in document order.
ELEMENTS = "title, base[href], meta[name], link[rel][href], a[href]"
SKIPPED_SCHEMES = ("mailto:", "javascript:", "tel:", "#", "data:")
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-16 text is full of NUL bytes


_seen = RecentSet(SEEN_LINKS_KEPT)


def parse_page(
    url: str,
    body: bytes,
    scope: Scope,
    hook_name: str | None,
    follow: bool = True,
    charset: str | None = None,
) -> Parsed:
    """Parse one HTML page; never raises for bad HTML (``error`` says why instead).

    With ``follow`` False (the page is at the depth limit) no links are returned.
    ``charset`` is the one the ``Content-Type`` header declared, if any.
    """
    if _looks_binary(body[:BINARY_SNIFF_BYTES]) and not body.startswith(UTF16_BOMS):
        return Parsed(error="binary body served as HTML")
    text, encoding = decode_body(body, charset)
    tree = LexborHTMLParser(text)
    elements = _Elements(tree.css(ELEMENTS), url)
    extra = "{}"
    if hook_name:
        try:
            extra = json.dumps(load_hook(hook_name)(url, tree))
        except Exception as exc:
            return Parsed(error=f"hook {hook_name} failed: {type(exc).__name__}: {exc}")
    whole, text = _text(tree)
    links: tuple[str, ...] = ()
    invalid: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    found = 0
    if follow:
        anchors = "nofollow" not in elements.meta.get("robots", "").lower()
        found_links, invalid = elements.links(_compiled(scope), anchors)
        found = len(found_links)
        links, skipped = _sorted_links(found_links, scope.skip_extensions)
    return Parsed(
        title=elements.title,
        text=text,
        text_chars=whole,
        meta=json.dumps(elements.meta),
        canonical=elements.canonical,
        links=links,
        extra=extra,
        invalid_links=tuple(invalid[:MAX_INVALID_LINKS]),
        links_found=found,
        encoding=encoding,
        skipped_links=tuple(skipped[:MAX_INVALID_LINKS]),
    )


def parse_pages(
    pages: list[tuple[str, bytes, bool, str | None]], scope: Scope, hook_name: str | None
) -> list[Parsed]:
    """:func:`parse_page` over several ``(url, body, follow, charset)`` pages, in order.

    Never raises for one page: a batch that failed would be run again, and the links its
    first pages returned would then be filtered out as already seen.
    """
    results = []
    for url, body, follow, charset in pages:
        try:
            results.append(parse_page(url, body, scope, hook_name, follow, charset))
        except Exception as exc:
            results.append(Parsed(error=f"parse: {type(exc).__name__}: {exc}"))
    return results


def _sorted_links(
    found: dict[str, None], extensions: frozenset[str]
) -> tuple[tuple[str, ...], list[tuple[str, str]]]:
    """The links new to this worker, to follow or to record as skipped by extension."""
    follow: list[str] = []
    skipped: list[tuple[str, str]] = []
    for link in found:
        if not _seen.add_new(link):
            continue
        refusal = extension_refusal(link, extensions)
        if refusal is None:
            follow.append(link)
        else:
            skipped.append((link, refusal))
    return tuple(follow), skipped


def _looks_binary(prefix: bytes) -> bool:
    """A NUL byte, or more control bytes than any text has (random bytes have ~12 %)."""
    if b"\x00" in prefix:
        return True
    controls = len(prefix.translate(None, NOT_SUSPICIOUS))
    return controls > BINARY_CONTROL_FRACTION * max(1, len(prefix))


@cache
def _compiled(scope: Scope) -> CompiledScope:
    return scope.compiled()


def _text(tree: LexborHTMLParser) -> tuple[int, str]:
    """The length of the body's text, and its start with whitespace collapsed."""
    body = tree.body
    if body is None:
        return 0, ""
    whole = body.text(separator=" ", strip=True)
    take = 2 * MAX_TEXT_CHARS
    while True:
        # A prefix of the collapsed text (the last word may be cut, past the limit).
        text = " ".join(whole[:take].split())
        if len(text) > MAX_TEXT_CHARS or take >= len(whole):
            return len(whole), text[:MAX_TEXT_CHARS]
        take *= 4


class _Elements:
    """The elements of one page that parsing reads, sorted by kind."""

    def __init__(self, nodes: list[LexborNode], url: str) -> None:
        self.title = ""
        self.meta: dict[str, str] = {}
        self.canonical: str | None = None
        self._anchors: list[LexborNode] = []
        base_href = canonical_href = None
        for node in nodes:
            tag = node.tag
            if tag == "a":
                self._anchors.append(node)
            elif tag == "meta":
                self._meta(node)
            elif tag == "link":
                if canonical_href is None and "canonical" in _words(node, "rel"):
                    canonical_href = node.attributes.get("href") or ""
            elif tag == "base":
                base_href = base_href or node.attributes.get("href")
            elif tag == "title" and not self.title:
                self.title = node.text(strip=True)
        self._resolver = LinkResolver(url)
        if base_href:
            with contextlib.suppress(InvalidUrl):
                self._resolver = LinkResolver(self._resolver.resolve(base_href.strip()))
        if canonical_href is not None:
            with contextlib.suppress(InvalidUrl):
                self.canonical = self._resolver.resolve(canonical_href.strip())
        self._url = url

    def _meta(self, node: LexborNode) -> None:
        attributes = node.attributes
        name = (attributes.get("name") or "").lower()
        content = attributes.get("content")
        if name and content is not None:
            self.meta[name] = content

    def links(
        self, scope: CompiledScope, anchors: bool
    ) -> tuple[dict[str, None], list[tuple[str, str]]]:
        """Followable links in page order (the canonical one last), and the invalid hrefs.

        With ``anchors`` False (meta robots nofollow) only the canonical link counts.
        """
        found: dict[str, None] = {}
        invalid: list[tuple[str, str]] = []
        resolver = self._resolver
        same_site = resolver.origin + "/" if resolver.origin else None
        host = resolver.host
        for node in self._anchors if anchors else ():
            attributes = node.attributes
            rel = attributes.get("rel")
            if rel and "nofollow" in rel.lower().split():
                continue
            href = (attributes.get("href") or "").strip()
            if not href or href.startswith(SKIPPED_SCHEMES):
                continue
            try:
                link = resolver.resolve(href)
            except InvalidUrl as exc:
                invalid.append((href[:500], str(exc)))
                continue
            if scope.follows(link, host if same_site and link.startswith(same_site) else None):
                found[link] = None
        canonical = self.canonical
        if canonical and canonical != self._url and scope.follows(canonical):
            found[canonical] = None
        return found, invalid


def _words(node: LexborNode, name: str) -> list[str]:
    return (node.attributes.get(name) or "").lower().split()
