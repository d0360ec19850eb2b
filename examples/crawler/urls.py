"""URL normalisation and the crawl's scope filter.

Normalising makes equal pages compare equal: scheme and host lower case, default ports
dropped, fragment dropped, an empty path made ``/``, and query parameters sorted by name
(a stable sort, so repeated names keep their order, which is what makes it safe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_CHARS = 2048  # longer URLs are almost always traps
# Files that are never HTML: not requested at all (Scrapy's IGNORED_EXTENSIONS, in short).
SKIPPED_EXTENSIONS = frozenset((
    "7z", "7zip", "apk", "bz2", "dmg", "ico", "iso", "jar", "rar", "tar", "tgz", "gz", "pdf",
    "xz", "zip", "exe", "msi", "bin", "deb", "rpm", "mng", "pct", "bmp", "gif", "jpg", "jpeg",
    "png", "pst", "psp", "tif", "tiff", "ai", "drw", "dxf", "eps", "ps", "svg", "cdr", "webp",
    "avif", "heic", "mp3", "wma", "ogg", "wav", "ra", "aac", "mid", "au", "aiff", "flac", "3gp",
    "asf", "asx", "avi", "mov", "mp4", "mpg", "qt", "rm", "swf", "wmv", "m4a", "m4v", "flv",
    "webm", "mkv", "css", "js", "xls", "xlsx", "ppt", "pptx", "pps", "doc", "docx", "odt",
    "ods", "odg", "odp", "woff", "woff2", "ttf", "otf", "eot",
))  # fmt: skip
# Characters of a path-only href that joining and normalising leave as they are.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_~!$&'()*+,=:@%./-]+")


class InvalidUrl(ValueError):
    """A URL that cannot be crawled; the message says why."""


def normalise(url: str, base: str | None = None) -> str:
    """Resolve ``url`` against ``base`` and return its normal form.

    Raises:
        InvalidUrl: not http(s), no host, a bad port or too long.
    """
    try:
        absolute = urljoin(base, url.strip()) if base else url.strip()
        parts = urlsplit(absolute)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise InvalidUrl(f"invalid URL {url!r}: only http and https are crawled")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidUrl(f"invalid URL {url!r}: no host")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    query = "&".join(sorted(parts.query.split("&"), key=lambda p: p.split("=", 1)[0]))
    normal = urlunsplit((scheme, netloc, parts.path or "/", query if parts.query else "", ""))
    if len(normal) > MAX_URL_CHARS:
        raise InvalidUrl(f"URL longer than {MAX_URL_CHARS} characters")
    return normal


class LinkResolver:
    """Resolves the hrefs of one page against its base, as :func:`normalise` would.

    A plain path href (most links on most sites: no query, fragment, scheme, dot or
    empty segment) is joined by concatenation with the base's normalised origin and
    directory; anything else goes through :func:`normalise`.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self.origin = self.host = self._directory = ""
        try:
            parts = urlsplit(normalise(base))
        except InvalidUrl:
            return
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.hostname or ""
        directory = parts.path[: parts.path.rfind("/") + 1]
        if _plain(directory):
            self._directory = directory

    def resolve(self, href: str) -> str:
        """The normal form of ``href`` on this page.

        Raises:
            InvalidUrl: as :func:`normalise` does.
        """
        if self.origin and _PLAIN_PATH.fullmatch(href) and _plain(href):
            if href[0] == "/":
                link = self.origin + href
            elif ":" not in href and self._directory:
                link = self.origin + self._directory + href
            else:
                link = ""
            if link and len(link) <= MAX_URL_CHARS:
                return link
        return normalise(href, self.base)


def _plain(path: str) -> bool:
    """No empty segment and no ``.`` or ``..`` segment (which joining would remove)."""
    marked = f"/{path}/"
    return "//" not in path and "/./" not in marked and "/../" not in marked


def extension_refusal(url: str, extensions: frozenset[str]) -> str | None:
    """Why ``url`` is not requested when its path ends in one of ``extensions``."""
    if not extensions:
        return None
    path = urlsplit(url).path
    name = path[path.rfind("/") + 1 :]
    dot = name.rfind(".")
    if dot < 0:
        return None
    extension = name[dot + 1 :].lower()
    return f"extension .{extension} not wanted" if extension in extensions else None


def host_of(url: str) -> str:
    """``"name:port"`` of a normalised URL (the key per-host limits use)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or DEFAULT_PORTS.get(parts.scheme, 80)}"


@dataclass(frozen=True)
class Scope:
    """Which discovered URLs the crawl follows.

    Attributes:
        domains: hosts (and their subdomains) to stay on; empty: any host.
        allow: regexes; when any is given, a URL must match one.
        deny: regexes; a URL matching one is dropped.
        skip_extensions: URLs whose path ends in one of these are never requested.
        same_host_canonical: a ``rel=canonical`` to the page's own host names the URL
            the page is stored under (its identity).
    """

    domains: frozenset[str] = frozenset()
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    skip_extensions: frozenset[str] = SKIPPED_EXTENSIONS
    same_host_canonical: bool = True

    def compiled(self) -> CompiledScope:
        return CompiledScope(self)


class CompiledScope:
    """A :class:`Scope` with its patterns compiled (raises ``re.error`` on a bad one)."""

    def __init__(self, scope: Scope) -> None:
        self.domains = scope.domains
        self.allow = [re.compile(p) for p in scope.allow]
        self.deny = [re.compile(p) for p in scope.deny]
        self.skip_extensions = scope.skip_extensions

    def follows(self, url: str, host: str | None = None) -> bool:
        """Whether to follow ``url`` (whose hostname is ``host``, when known)."""
        if self.domains:
            if host is None:
                host = urlsplit(url).hostname or ""
            if not self.follows_host(host):
                return False
        if self.allow and not any(p.search(url) for p in self.allow):
            return False
        return not any(p.search(url) for p in self.deny)

    def follows_host(self, host: str) -> bool:
        return not self.domains or any(host == d or host.endswith("." + d) for d in self.domains)
