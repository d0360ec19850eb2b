"""The distribution's metadata: one version source, and extras that match the imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import hybrid

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRA_IN_MESSAGE = re.compile(r"hybrid-engine\[([\w,]+)\]")


def requirements(extra: str) -> set[str]:
    """The distribution names an extra pulls in, through the extras it names."""
    found = set()
    for requirement in PROJECT["optional-dependencies"][extra]:
        name = re.split(r"[<>=\[; ]", requirement, maxsplit=1)[0].lower().replace("-", "_")
        if name == "hybrid_engine":
            inner = requirement.partition("[")[2].partition("]")[0]
            for other in inner.split(","):
                found |= requirements(other.strip())
        else:
            found.add(name)
    return found


def third_party_imports(paths: list[Path]) -> set[str]:
    """Top-level names of what these files import from outside the stdlib and this project."""
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"hybrid", "adapters"}


def adapter_files() -> dict[Path, set[str]]:
    """Each adapter file, with the extras its messages and docstrings name (a package's
    files fall back on those its ``__init__.py`` names)."""

    def named(path: Path) -> set[str]:
        return {e for found in EXTRA_IN_MESSAGE.findall(path.read_text()) for e in found.split(",")}

    files = {}
    for path in sorted((ROOT / "adapters").rglob("*.py")):
        package_init = path.parent / "__init__.py"
        inside_a_package = path.parent != ROOT / "adapters"
        files[path] = named(path) or (named(package_init) if inside_a_package else set())
    return files


def test_the_version_has_one_source() -> None:
    assert "version" not in PROJECT
    assert PROJECT["dynamic"] == ["version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+(\w+\d*)?", hybrid.__version__)


def test_the_extra_each_adapter_names_brings_everything_it_imports() -> None:
    checked = 0
    for path, extras in adapter_files().items():
        imported = third_party_imports([path])
        if not imported:
            continue
        assert extras, f"{path.name} imports {imported} but names no extra to install"
        brought = set().union(*(requirements(extra) for extra in extras))
        assert imported <= brought, (path.name, extras)
        checked += 1
    assert checked >= 8


def test_all_brings_every_adapter_and_nothing_for_the_examples() -> None:
    imported = third_party_imports(list(adapter_files()))
    assert imported <= requirements("all")
    assert "selectolax" not in requirements("all")  # the crawler example's: not in the wheel
    assert not any(extra in PROJECT["optional-dependencies"] for extra in ("crawler", "webapp"))
