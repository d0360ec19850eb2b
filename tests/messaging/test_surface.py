"""The package's public surface is complete, and the benchmark cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import hybrid.messaging

ROOT = Path(__file__).resolve().parents[2]


def test_all_lists_every_public_name() -> None:
    public = {
        name
        for name, value in vars(hybrid.messaging).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("hybrid.")
    }
    assert public == set(hybrid.messaging.__all__)
    assert hybrid.messaging.__all__ == sorted(hybrid.messaging.__all__)


@pytest.mark.slow  # a whole benchmark program, if a short one
def test_the_detector_benchmark_runs_in_quick_mode() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_detector", "--quick"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for expected in ("T1", "T5", "hybrid", "celery 2s/4s", "akka phi 8", "zero false DEAD"):
        assert expected in result.stdout
