"""When ``import adapters`` finds another distribution's package (AdapterHub's ``adapters``
installs into the same folder), users get one line naming the conflict, not a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from hybrid._plugins import foreign_adapters

ROOT = Path(__file__).resolve().parent.parent
# AdapterHub's __init__.py imports torch and transformers; one that imports fine and one that
# fails stand in for both cases.
FOREIGN_INIT_THAT_IMPORTS = '"""Another distribution\'s adapters package."""\n__version__ = "1.0"\n'
FOREIGN_INIT_THAT_FAILS = "import torch_is_not_installed_here  # noqa: F401\n"


def shadowed_adapters(tmp_path: Path, init: str) -> dict[str, str]:
    """Our adapters' modules under another package's ``__init__.py``, first on the path."""
    shutil.copytree(ROOT / "adapters", tmp_path / "adapters")
    (tmp_path / "adapters" / "__init__.py").write_text(init)
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}


def run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    # Not from the repository's root, where ``-m`` and ``-c`` would find our adapters first.
    cwd = env["PYTHONPATH"].split(os.pathsep)[0]
    return subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


def test_our_adapters_package_is_recognised() -> None:
    assert foreign_adapters() is None


def test_an_adapter_module_under_a_foreign_package_names_the_conflict(tmp_path: Path) -> None:
    env = shadowed_adapters(tmp_path, FOREIGN_INIT_THAT_IMPORTS)
    result = run(env, "-c", "import adapters.prometheus")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: the 'adapters' package at ")
    assert "is not hybrid's" in last
    assert "reinstall hybrid-engine" in last


def test_hybrid_commands_print_the_conflict_instead_of_a_traceback(tmp_path: Path) -> None:
    for init in (FOREIGN_INIT_THAT_IMPORTS, FOREIGN_INIT_THAT_FAILS):
        env = shadowed_adapters(tmp_path, init)
        result = run(env, "-m", "hybrid", "top", "--help")
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith("hybrid top: the 'adapters' package at ")
        assert "not hybrid's" in line
        shutil.rmtree(tmp_path / "adapters")


def test_hybrid_info_reports_the_conflict(tmp_path: Path) -> None:
    env = shadowed_adapters(tmp_path, FOREIGN_INIT_THAT_FAILS)
    result = run(env, "-m", "hybrid", "info")
    assert result.returncode == 1
    assert "adapters: the 'adapters' package at " in result.stdout
