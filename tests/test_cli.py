"""Every command line documents itself: each ``--help`` runs, every option has a description,
``-V`` names the distribution, usage errors exit 2 on stderr in one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hybrid

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "hybrid": ["-m", "hybrid"],
    "hybrid info": ["-m", "hybrid", "info"],
    "hybrid top": ["-m", "hybrid", "top"],
    "hybrid worker": ["-m", "hybrid", "worker"],
    "crawler": ["-m", "examples.crawler"],
    "webapp": ["-m", "examples.webapp"],
    "fastapi app": ["-m", "examples.webapp.fastapi_app"],
}
WITH_VERSION = ["hybrid", "hybrid top", "hybrid worker", "crawler", "webapp", "fastapi app"]
# An entry of a help section: two spaces, the flags (single spaces inside), then its help
# after two or more spaces, or on the next, deeper-indented line.
ENTRY = re.compile(r"^  (?P<flags>\S(?:\S| (?! ))*)(?: {2,}(?P<help>\S.*))?$")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def undocumented(help_text: str) -> list[str]:
    """The flags listed in an argparse help page without a description."""
    lines = help_text.splitlines()
    found = []
    in_section = False
    for i, line in enumerate(lines):
        if line and not line.startswith(" "):
            in_section = line.endswith(":")
            continue
        entry = ENTRY.match(line) if in_section else None
        if entry is None or entry["help"]:
            continue
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if not (following.startswith("    ") and following.strip()):
            found.append(entry["flags"])
    return found


def test_undocumented_spots_an_option_without_help() -> None:
    page = "options:\n  -h, --help  show this\n  --host HOST\n  --port PORT\n      the port\n"
    assert undocumented(page) == ["--host HOST"]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_help_runs_and_describes_every_option(name: str) -> None:
    result = run(*COMMANDS[name], "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")
    assert undocumented(result.stdout) == []
    description = result.stdout.split("\n\n")[1]
    assert not description.startswith(("options:", "positional")), "no description"


@pytest.mark.parametrize("name", WITH_VERSION)
def test_dash_v_prints_the_distribution_and_its_version(name: str) -> None:
    result = run(*COMMANDS[name], "-V")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hybrid-engine {hybrid.__version__}\n"


def test_hybrid_help_says_what_each_command_does() -> None:
    shown = run("-m", "hybrid", "--help").stdout
    for command in ("info", "top", "worker"):
        line = next(line for line in shown.splitlines() if line.strip().startswith(command))
        assert len(line.split()) > 3, line


def test_worker_help_gives_defaults_and_environment_variables() -> None:
    shown = run("-m", "hybrid", "worker", "--help").stdout
    for said in ("HYBRID_REDIS_URL", "HYBRID_SECRET", "(default: WARNING)", "(default: 256)"):
        assert said in shown


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["--bogus"], "unknown option '--bogus'"),
        (["teleport"], "unknown command 'teleport'"),
        (["worker", "--import", "json", "--log-level", "foo"], "invalid choice: 'FOO'"),
        (["top", "--interval", "0"], "must be > 0"),
    ],
)
def test_usage_errors_exit_2_with_one_line_on_stderr(argv: list[str], said: str) -> None:
    result = run("-m", "hybrid", *argv)
    assert result.returncode == 2
    assert result.stdout == ""
    assert said in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr


def test_runtime_failures_exit_1_on_stderr() -> None:
    result = run("-m", "examples.webapp", "--host", "192.0.2.1", "--port", "1")  # TEST-NET-1
    assert result.returncode == 1
    assert "cannot listen on 192.0.2.1:1" in result.stderr
    assert "Traceback" not in result.stderr
