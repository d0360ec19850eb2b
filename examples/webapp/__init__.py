"""An aiohttp service that offloads a CPU-heavy endpoint to hybrid: ``python -m examples.webapp``.

Endpoints: ``GET /cpu`` (about 20 ms of pure Python per call), ``GET /health`` and, with
metrics on, ``GET /metrics``. ``--mode inline`` and ``--mode executor`` run the same call on
the loop or in a stdlib ``ProcessPoolExecutor``, for comparison (see
``benchmarks/bench_webapp.py``). ``--worker-nice 10`` lowers the workers' CPU priority, so
that on a busy machine the process answering requests is scheduled first.
``grafana_dashboard.json`` charts the metrics; ``hybrid top http://127.0.0.1:8080/metrics``
shows them live.
"""

from .app import build_app

__all__ = ["build_app"]
