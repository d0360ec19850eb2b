"""The example in adapters.psutil's docstring runs, so it cannot rot."""

from __future__ import annotations

import contextlib
import io

import adapters.psutil
from tests.helpers import literal_block


def test_the_psutil_monitor_example_runs() -> None:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(literal_block(adapters.psutil.__doc__), {})
    *decisions, last = output.getvalue().splitlines()
    assert last.startswith("CPU ")
    assert "memory" in last
    assert all(line.split()[0].count(".") == 1 for line in decisions)  # "action.cause why"
