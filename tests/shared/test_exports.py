"""hybrid.shared's public surface is complete, and the examples in its docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hybrid.shared

MODULES = sorted(info.name for info in pkgutil.iter_modules(hybrid.shared.__path__))


def test_all_lists_every_public_name_and_only_those() -> None:
    public = {name for name in vars(hybrid.shared) if not name.startswith("_")}
    public -= set(MODULES)  # submodules appear as attributes once imported
    assert sorted(hybrid.shared.__all__) == sorted(public)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(f"hybrid.shared.{module_name}")
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0
