"""Tasks that take down the whole worker node that runs them (nodes --import this module)."""

from __future__ import annotations

import os
import signal


def kill_node(path: str) -> None:
    """Note this delivery in ``path``, then kill -9 every process of the node's session."""
    with open(path, "a") as file:
        file.write(f"{os.getpid()}\n")
    os.killpg(os.getpgid(0), signal.SIGKILL)
