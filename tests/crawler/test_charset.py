"""Decoding pages the way browsers do: BOM, header, meta, then a detector."""

from __future__ import annotations

import pytest

from examples.crawler.charset import decode_body
from examples.crawler.realsite import ENCODINGS, TEXTS, TITLES


def _page(lang: str, meta: str = "") -> bytes:
    html = f"<html><head>{meta}<title>{TITLES[lang]}</title></head><body><p>{TEXTS[lang]}</p>"
    return html.encode(ENCODINGS[lang])


@pytest.mark.parametrize("lang", sorted(ENCODINGS))
@pytest.mark.parametrize("how", ["header", "meta", "none"])
def test_legacy_pages_decode_to_what_was_served(lang: str, how: str) -> None:
    labels = {"gbk": "gb2312", "sjis": "shift_jis", "cp1252": "iso-8859-1"}
    meta = f'<meta charset="{labels[lang]}">' if how == "meta" else ""
    text, _ = decode_body(_page(lang, meta), labels[lang] if how == "header" else None)
    assert TITLES[lang] in text
    assert TEXTS[lang] in text


def test_the_order_is_bom_then_header_then_meta_then_utf8() -> None:
    meta = b'<meta charset="shift_jis">'
    assert decode_body(b"\xef\xbb\xbf" + meta + "é".encode(), "gbk")[1] == "utf-8"
    assert decode_body(meta + "é".encode("gbk"), "gbk")[1] == "gb18030"
    assert decode_body(meta + "ア".encode("cp932"))[1] == "cp932"
    assert decode_body("é".encode())[1] == "utf-8"


@pytest.mark.parametrize(
    "label", ["\udcff\udcfe", "base64", "utf-7", "x-no-such-thing", "", "rot13"]
)
def test_a_hostile_or_unknown_label_is_ignored(label: str) -> None:
    text, encoding = decode_body(b"<title>caf\xc3\xa9</title>", label)
    assert (text, encoding) == ("<title>café</title>", "utf-8")


def test_a_meta_claiming_utf16_in_ascii_bytes_is_read_as_utf8() -> None:
    assert decode_body('<meta charset="utf-16"><p>é</p>'.encode())[1] == "utf-8"
