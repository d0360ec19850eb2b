"""Fail in one clear line when the ``adapters`` package Python found is not hybrid's.

``adapters`` is also the import name of an unrelated distribution on PyPI (AdapterHub's
``adapters``, for transformer models). Both install into the same ``site-packages/adapters/``
folder, so whichever was installed last owns ``__init__.py``. Every module of ours that can
be imported on its own imports this one first: when the package's ``__init__`` is not ours,
the import fails with :data:`CONFLICT` instead of an error deep inside someone else's code.
"""

from __future__ import annotations

import sys

CONFLICT = (
    "the 'adapters' package at {where} is not hybrid's (AdapterHub's 'adapters' distribution "
    "uses the same name): uninstall that one or use another virtualenv, then reinstall "
    "hybrid-engine"
)


def require_hybrid_adapters() -> None:
    """Raise ImportError naming the conflict unless ``adapters`` is hybrid's package."""
    package = sys.modules.get("adapters")
    if getattr(package, "HYBRID_ADAPTERS", None) is not True:
        where = getattr(package, "__file__", None) or "?"
        raise ImportError(CONFLICT.format(where=where), name="adapters")


require_hybrid_adapters()
