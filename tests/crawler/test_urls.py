"""Links resolved on the workers' fast path are exactly what full normalisation gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from examples.crawler.recent import RecentSet
from examples.crawler.urls import InvalidUrl, LinkResolver, normalise

BASES = [
    "http://Example.COM:80/a/b/page",
    "https://h/",
    "http://h",
    "http://h/a//b/c",
    "http://h/a/./b/c",
    "http://u:p@h:8080/x/y?q=1#f",
    "http://h/a;p/b",
    "http://[::1]:81/d/",
    "ftp://h/x",
    "http://h/../x/y",
]
PIECES = [*"ab/.:;%?#=&@+~-_ \t\\é", "..", "./", "//", "%2F", "x.html", "javascript:"]


def resolved(base: str, href: str, *, fast: bool) -> str:
    try:
        return LinkResolver(base).resolve(href) if fast else normalise(href, base)
    except InvalidUrl as exc:
        return f"invalid: {exc}"


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(BASES), st.lists(st.sampled_from(PIECES), min_size=1, max_size=8))
def test_the_fast_path_resolves_like_normalise(base: str, pieces: list[str]) -> None:
    href = "".join(pieces).strip()
    assert resolved(base, href, fast=True) == resolved(base, href, fast=False)


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("/p/1", "http://h:8080/p/1"),
        ("q/2", "http://h:8080/a/q/2"),
        ("../up", "http://h:8080/up"),
        ("/p//x", "http://h:8080/p//x"),
        ("//other.org/x", "http://other.org/x"),
        ("/s?b=2&a=1#top", "http://h:8080/s?a=1&b=2"),
    ],
)
def test_common_links_resolve(href: str, expected: str) -> None:
    assert LinkResolver("HTTP://H:8080/a/page").resolve(href) == expected


def test_a_recent_set_forgets_the_oldest_half_when_full() -> None:
    seen = RecentSet(4)
    assert [seen.add_new(x) for x in "abab"] == [True, True, False, False]
    for x in "cdef":
        seen.add_new(x)
    assert not seen.add_new("f")
    assert seen.add_new("a")  # long forgotten
    assert len(seen) <= 4
