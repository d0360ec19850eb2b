"""The example in adapters.psutil's docstring runs, so it cannot rot."""

from __future__ import annotations

import contextlib
import io
import textwrap

import adapters.psutil


def literal_block(docstring: str | None) -> str:
    """The first ``::`` block of a docstring, dedented."""
    assert docstring
    _, _, after = docstring.partition("::\n")
    lines = []
    for line in after.splitlines()[1:]:
        if line and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_the_psutil_monitor_example_runs() -> None:
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        exec(literal_block(adapters.psutil.__doc__), {})
    *decisions, last = output.getvalue().splitlines()
    assert last.startswith("CPU ")
    assert "memory" in last
    assert all(line.split()[0].count(".") == 1 for line in decisions)  # "action.cause why"
