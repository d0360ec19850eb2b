"""Decoding a page's bytes the way browsers do, run in the worker processes.

The encoding is taken from, in order: a byte order mark, the ``charset`` of the
``Content-Type`` header, a ``<meta charset>`` or ``<meta http-equiv>`` in the first
:data:`META_SNIFF_BYTES`, then UTF-8 if the bytes are valid UTF-8, then a detector
(charset-normalizer) as the last resort. Labels are mapped as the WHATWG Encoding
standard maps them (``iso-8859-1`` and ``ascii`` mean windows-1252, ``gbk`` and ``gb2312``
mean GB18030, ``shift_jis`` means windows-31j), so what is stored is what a browser shows.
An unknown or non-text label is ignored; decoding never raises.
"""

from __future__ import annotations

import codecs
import re

META_SNIFF_BYTES = 1024  # the HTML standard's prescan looks this far
DETECT_BYTES = 64 * 1024  # the detector reads this much of an undeclared body
FALLBACK = "cp1252"  # what browsers in most locales assume for undeclared legacy bytes
BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Python codec name -> the codec a browser uses for that label (WHATWG Encoding).
BROWSER_CODECS = {
    "ascii": "cp1252", "latin-1": "cp1252", "iso8859-1": "cp1252", "iso8859-9": "cp1254",
    "gb2312": "gb18030", "gbk": "gb18030", "shift_jis": "cp932", "euc_kr": "cp949",
    "iso8859-11": "cp874", "tis-620": "cp874", "big5": "big5hkscs",
}  # fmt: skip
REFUSED_CODECS = frozenset({"utf-7"})  # browsers never decode these (script injection)
_META_CHARSET = re.compile(rb"<meta[^>]*?charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]{1,40})", re.I)


def decode_body(body: bytes, declared: str | None = None) -> tuple[str, str]:
    """The text of ``body`` and the name of the codec used.

    Args:
        body: the response body.
        declared: the ``charset`` parameter of the ``Content-Type`` header, if any.
    """
    for bom, bom_codec in BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(bom_codec, "replace"), bom_codec
    name: str | None = browser_codec(declared)
    if name is None:
        name = _meta_codec(body[:META_SNIFF_BYTES])
    if name is None:
        try:
            return body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            name = _detected(body[:DETECT_BYTES])
    return body.decode(name, "replace"), name


def browser_codec(label: str | None) -> str | None:
    """The Python codec a browser uses for ``label``, or ``None`` if there is none."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
        b"a".decode(name, "ignore")  # LookupError for a bytes-to-bytes codec such as base64
    except (LookupError, ValueError, UnicodeError):
        return None
    if name in REFUSED_CODECS:
        return None
    return BROWSER_CODECS.get(name, name)


def _meta_codec(prefix: bytes) -> str | None:
    match = _META_CHARSET.search(prefix)
    if match is None:
        return None
    name = browser_codec(match.group(1).decode("ascii"))
    # A page that says it is UTF-16 in ASCII-compatible bytes is not (HTML standard).
    return "utf-8" if name is not None and name.startswith("utf-16") else name


def _detected(sample: bytes) -> str:
    from charset_normalizer import from_bytes  # only for undeclared legacy pages

    matches = from_bytes(sample)
    best = matches.best()
    if best is None:
        return FALLBACK
    for match in matches:
        # Latin code pages often tie on a short text; browsers settle ties on windows-1252.
        tied = (match.chaos, match.coherence) == (best.chaos, best.coherence)
        if tied and FALLBACK in match.could_be_from_charset:
            return FALLBACK
    return browser_codec(best.encoding) or FALLBACK
