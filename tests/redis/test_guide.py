"""The Redis guide's application block runs, against a real Redis and a real node."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, Node, PrivateRedis

pytestmark = pytest.mark.redis

GUIDE = ROOT / "docs/guides/redis.md"
BLOCK = re.compile(r"<!-- run-with-redis -->\n```python\n(.*?)```", re.DOTALL)


async def test_the_guides_application_block_runs(
    private_redis: PrivateRedis, start_node: Callable[..., Node], tmp_path: Path
) -> None:
    match = BLOCK.search(GUIDE.read_text())
    assert match, "docs/guides/redis.md has no block marked <!-- run-with-redis -->"
    private_redis.start()
    # The guide's cluster uses the default prefix; the node serves it on the private server.
    start_node("--prefix", "hybrid", url=private_redis.url)
    code = (
        match.group(1)
        .replace("redis://host:6379/0", private_redis.url)
        .replace("import myapp.tasks", "import tests.redis.tasks")
        .replace("myapp.tasks.score", "tests.redis.tasks.noop")
    )
    namespace: dict[str, Any] = {}
    exec(compile(code, str(GUIDE), "exec"), namespace)
    await namespace["main"]()
