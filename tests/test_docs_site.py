"""The docs site's code blocks marked ``<!-- run -->`` are executed, so they cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUN_MARKER = re.compile(r"<!-- run -->\n```python\n(.*?)```", re.DOTALL)


def runnable_blocks() -> list[tuple[str, str]]:
    """(page:n, code) for every marked block of every page."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for number, code in enumerate(RUN_MARKER.findall(page.read_text()), start=1):
            found.append((f"{page.relative_to(DOCS)}:{number}", code))
    return found


def test_the_guides_mark_blocks_to_run() -> None:
    pages = {name.split(":")[0] for name, _ in runnable_blocks()}
    assert {"index.md", "getting-started.md", "guides/web.md", "guides/messaging.md"} <= pages


@pytest.mark.parametrize(("name", "code"), runnable_blocks(), ids=lambda v: v.split("\n")[0])
def test_a_marked_block_runs(name: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, f"{name}:\n{result.stderr}"
    assert result.stdout.strip(), f"{name} printed nothing"
