"""The README's code and commands are executed, so they cannot rot."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def block_after(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\n```[a-z]*\n(.*?)```", README, re.DOTALL)
    assert match, f"README.md has no code block after <!-- {marker} -->"
    return match.group(1)


def run_python(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow  # a whole program
def test_the_readme_quick_start_runs(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(block_after("quickstart"))
    result = run_python(script)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines[0]) == 16
    assert "too slow" in result.stdout
    assert "EngineStats(" in result.stdout


@pytest.mark.slow  # a whole program
def test_the_quickstart_example_runs() -> None:
    result = run_python(ROOT / "examples" / "quickstart.py")
    assert result.returncode == 0, result.stderr
    assert "timed out" in result.stdout
    assert "1 worker(s) replaced" in result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    command = block_after("test-command").strip()
    assert command.endswith("pytest")
    assert "test-command" in (ROOT / ".ci" / "run").read_text()


def test_hybrid_info_reports_the_machine() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hybrid", "info"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "usable CPUs" in result.stdout
    unknown = subprocess.run(
        [sys.executable, "-m", "hybrid", "teleport"], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 2
    assert "unknown command 'teleport'" in unknown.stderr


def test_adapter_commands_are_reached_through_the_hybrid_command() -> None:
    for command in ("worker", "top"):
        result = subprocess.run(
            [sys.executable, "-m", "hybrid", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert f"usage: hybrid {command}" in result.stdout


@pytest.mark.slow  # a whole program: the crawler's demo site and a crawl of it
def test_the_readme_demo_command_runs_the_crawler_demo(tmp_path: Path) -> None:
    command = block_after("demo-command").strip()
    demo = command.split("&&")[-1].strip()
    assert demo == ".venv/bin/python -m examples.crawler --demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.crawler",
            "--demo",
            "--db",
            str(tmp_path / "demo.sqlite"),
            "--demo-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert "failed 0" in result.stdout


def test_hybrid_worker_names_a_module_it_cannot_import() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hybrid",
            "worker",
            "--redis",
            "redis://127.0.0.1:6379/0",
            "--import",
            "no_such_module_here",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot import --import 'no_such_module_here'" in result.stderr
    assert "Traceback" not in result.stderr
