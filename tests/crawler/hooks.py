"""Extraction hooks for the crawler tests; they run in the crawler's worker processes."""

from __future__ import annotations

import os
from typing import Any


def word_count(url: str, tree: Any) -> dict[str, Any]:
    """Count the words of the body and name the worker that did it."""
    body = tree.body
    words = len(body.text(separator=" ").split()) if body is not None else 0
    return {"words": words, "pid": os.getpid()}


def niceness(url: str, tree: Any) -> dict[str, Any]:
    """The niceness of the worker that parsed the page."""
    return {"nice": os.nice(0), "pid": os.getpid()}
