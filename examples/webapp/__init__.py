"""An aiohttp service that offloads a CPU-heavy endpoint to hybrid: ``python -m examples.webapp``.

Endpoints: ``GET /cpu`` (about 20 ms of pure Python per call), ``GET /health`` and, with
metrics on, ``GET /metrics``. ``--mode inline`` and ``--mode executor`` run the same call on
the loop or in a stdlib ``ProcessPoolExecutor``, for comparison (see
``benchmarks/bench_webapp.py``). ``--worker-nice 10`` lowers the workers' CPU priority, so
that on a busy machine the process answering requests is scheduled first.
``grafana_dashboard.json`` charts the metrics; ``hybrid top http://127.0.0.1:8080/metrics``
shows them live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import build_app

__all__ = ["build_app"]


def __getattr__(name: str) -> Any:
    # A worker unpickles examples.webapp.work.crunch, which imports this package first: the
    # web stack (aiohttp, the app) loads only where it is asked for, never in a worker, where
    # its import (a third of a second, seconds on a loaded host) ran inside the call's timeout.
    if name == "build_app":
        from .app import build_app

        return build_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
