"""The user's extraction hook, named ``"package.module:function"``.

It runs in the worker processes as ``hook(url, tree)`` with the page's selectolax tree
and returns a JSON-serialisable dict; the parent only imports it to check the name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

Hook = Callable[[str, Any], dict[str, Any]]


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
