"""The ``hybrid.commands`` entry points, and one clear line when ``adapters`` is not ours.

``adapters`` is also the import name of AdapterHub's distribution on PyPI. Both install into
``site-packages/adapters/``; whichever came last owns ``__init__.py``. The core never imports
``adapters``, so it checks the package's ``__init__.py`` for hybrid's marker as text: the
other package's code (which may itself fail to import) is never run.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

DISTRIBUTION = "hybrid-engine"  # on PyPI; "hybrid" there is an unrelated project
ENTRY_POINT_GROUP = "hybrid.commands"
ADAPTERS_MARKER = "HYBRID_ADAPTERS = True"  # the line in hybrid's adapters/__init__.py
OUR_DISTRIBUTIONS = frozenset({DISTRIBUTION, "hybrid"})  # "hybrid": installs from before 0.1


def plugin_commands() -> dict[str, importlib.metadata.EntryPoint]:
    """The commands that installed packages add to ``hybrid``, by name."""
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def foreign_adapters() -> str | None:
    """One line naming the conflict when the importable ``adapters`` is not hybrid's; None
    when it is hybrid's or when there is no ``adapters`` package at all."""
    try:
        spec = importlib.util.find_spec("adapters")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.origin is None:  # a folder without __init__.py: another package removed ours
        where = ", ".join(spec.submodule_search_locations or ["?"])
        return (
            f"the 'adapters' package at {where} has no __init__.py (uninstalling another "
            f"'adapters' distribution removes it): reinstall {DISTRIBUTION}"
        )
    try:
        if ADAPTERS_MARKER in Path(spec.origin).read_text(errors="replace"):
            return None
    except OSError:
        return None
    return (
        f"the 'adapters' package at {spec.origin} is {_owner()}, not hybrid's: uninstall it "
        f"or use another virtualenv, then reinstall {DISTRIBUTION}"
    )


def _owner() -> str:
    others = sorted(
        set(importlib.metadata.packages_distributions().get("adapters", [])) - OUR_DISTRIBUTIONS
    )
    if others:
        return f"the {others[0]!r} distribution's"
    return "another distribution's (AdapterHub's 'adapters' uses the same name)"
