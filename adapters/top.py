"""``hybrid top``: a running engine's workers, queue, throughput and latencies, live.

Reads the engine's Prometheus endpoint (see ``adapters.prometheus``) and redraws in place
with rich::

    hybrid top http://127.0.0.1:8080/metrics            # refresh every second
    hybrid top http://127.0.0.1:8080/metrics --once     # print one view and exit

Throughput is the completed-task rate between two scrapes (``--once`` takes two scrapes
``--interval`` apart). Peers appear when the endpoint exports ``hybrid_peer_*`` series.
"""

from __future__ import annotations

from . import _identity  # noqa: F401  (first: one clear line if `adapters` is not ours)

# isort: split

import argparse
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

import hybrid

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "hybrid top needs prometheus_client: pip install 'hybrid-engine[monitor]'", name=exc.name
    ) from exc

DEFAULT_URL = "http://127.0.0.1:8080/metrics"
FETCH_TIMEOUT_S = 5.0

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """One scrape of a metrics endpoint: sample values by name, then by label set."""

    taken_at: float
    values: dict[str, dict[Labels, float]] = field(default_factory=lambda: defaultdict(dict))

    def total(self, name: str) -> float:
        return sum(self.values.get(name, {}).values())

    def first(self, name: str) -> float | None:
        """The value of a single-series metric, or None when the endpoint lacks it."""
        return next(iter(self.values.get(name, {}).values()), None)

    def by(self, name: str, label: str, **where: str) -> dict[str, float]:
        """The samples of ``name`` keyed by one label's value (summed over the others),
        of the series whose labels match ``where``."""
        found: dict[str, float] = defaultdict(float)
        for labels, value in self.values.get(name, {}).items():
            named = dict(labels)
            if all(named.get(key) == wanted for key, wanted in where.items()):
                found[named.get(label, "")] += value
        return dict(found)

    def outcomes(self, outcome: str) -> float:
        """Calls that ended with ``outcome``, over every pool and function."""
        return sum(self.by("hybrid_tasks_total", "outcome", outcome=outcome).values())

    def quantile(self, histogram: str, q: float) -> float | None:
        """The ``q`` quantile of a histogram over all its series (the upper bound of the
        bucket it falls in, as ``histogram_quantile`` would round it); None when empty."""
        buckets = sorted(
            (float(le), count)
            for le, count in self.by(f"{histogram}_bucket", "le").items()
            if le != "+Inf"
        )
        total = sum(self.values.get(f"{histogram}_count", {}).values())
        if not total:
            return None
        for upper, count in buckets:
            if count >= q * total:
                return upper
        return buckets[-1][0] if buckets else None


def scrape(url: str) -> Scrape:
    """Fetch and parse the endpoint."""
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
        text = response.read().decode()
    result = Scrape(taken_at=time.monotonic())
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result.values[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return result


def render(now: Scrape, before: Scrape | None, url: str) -> Group:
    """The whole view: a summary line, the workers, the task functions and the peers."""
    return Group(
        _summary(now, before, url),
        _workers_table(now),
        _functions_table(now),
        _peers(now),
        _redis(now),
        _redis_peers(now),
    )


def _summary(now: Scrape, before: Scrape | None, url: str) -> Text:
    completed = now.outcomes("completed")
    rate = "n/a"
    if before is not None and now.taken_at > before.taken_at:
        delta = completed - before.outcomes("completed")
        rate = f"{delta / (now.taken_at - before.taken_at):.1f}/s"
    p50, p99 = (now.quantile("hybrid_task_run_seconds", q) for q in (0.5, 0.99))
    lines = [
        f"hybrid top  {url}",
        f"workers {now.total('hybrid_workers'):.0f} (busy {now.total('hybrid_workers_busy'):.0f})"
        f"  queued {now.total('hybrid_tasks_queued'):.0f}"
        f"  restarts {now.total('hybrid_worker_restarts_total'):.0f}",
        f"completed {completed:.0f}  failed {now.outcomes('failed'):.0f}"
        f"  crashed {now.outcomes('crashed'):.0f}"
        f"  timed out {now.outcomes('timed_out'):.0f}"
        f"  throughput {rate}",
        f"task time p50 ≤{_ms(p50)}  p99 ≤{_ms(p99)}"
        f"  loop lag {_ms(now.first('hybrid_loop_lag_seconds'))}"
        f" (max {_ms(now.first('hybrid_loop_lag_max_seconds'))})",
    ]
    return Text("\n".join(lines))


def _workers_table(now: Scrape) -> Table:
    table = Table(title="workers", title_justify="left")
    for column in ("slot", "pid", "state", "tasks", "busy s", "RSS MiB"):
        table.add_column(column, justify="right")
    busy = now.by("hybrid_worker_busy", "worker")
    tasks = now.by("hybrid_worker_tasks_total", "worker")
    busy_s = now.by("hybrid_worker_busy_seconds_total", "worker")
    rss = now.by("hybrid_worker_resident_memory_bytes", "worker")
    for labels, alive in sorted(now.values.get("hybrid_worker_info", {}).items()):
        info = dict(labels)
        slot = info.get("worker", "")
        state = "dead" if not alive else "busy" if busy.get(slot) else "idle"
        table.add_row(
            slot,
            info.get("pid", ""),
            state,
            f"{tasks.get(slot, 0):.0f}",
            f"{busy_s.get(slot, 0):.1f}",
            f"{rss[slot] / 2**20:.0f}" if slot in rss else "-",
        )
    return table


def _functions_table(now: Scrape) -> Table:
    table = Table(title="tasks by function", title_justify="left")
    for column in ("function", "submitted", "completed", "failed", "mean wait ms", "mean run ms"):
        table.add_column(column, justify="right")
    submitted = now.by("hybrid_tasks_submitted_total", "function")
    completed = now.by("hybrid_tasks_total", "function", outcome="completed")
    failed = now.by("hybrid_tasks_total", "function", outcome="failed")
    for function in sorted(submitted):
        table.add_row(
            function,
            f"{submitted[function]:.0f}",
            f"{completed.get(function, 0):.0f}",
            f"{failed.get(function, 0):.0f}",
            _mean_ms(now, "hybrid_task_queue_wait_seconds", function),
            _mean_ms(now, "hybrid_task_run_seconds", function),
        )
    return table


def _peers(now: Scrape) -> Table | Text:
    states = now.values.get("hybrid_peer_state", {})
    pairs = sorted({(dict(labels)["endpoint"], dict(labels)["peer"]) for labels in states})
    if not pairs:
        return Text("peers: none reported")
    table = Table(title="peers", title_justify="left")
    for column in ("endpoint", "peer", "state", "transit p99", "offset", "beat every", "messages"):
        table.add_column(column, justify="right")
    for endpoint, peer in pairs:
        where = {"endpoint": endpoint, "peer": peer}
        table.add_row(
            endpoint,
            peer,
            _state(now, "hybrid_peer_state", where),
            _ms(_value(now, "hybrid_peer_transit_seconds", {**where, "quantile": "0.99"})),
            _ms(_value(now, "hybrid_peer_clock_offset_seconds", where)),
            _ms(_value(now, "hybrid_peer_heartbeat_interval_seconds", where)),
            f"{_value(now, 'hybrid_peer_messages_total', where) or 0:.0f}",
        )
    return table


def _redis(now: Scrape) -> Text:
    pending = now.by("hybrid_redis_pending", "prefix")
    if not pending:
        return Text("")
    dead = now.by("hybrid_redis_dead_letters", "prefix")
    redelivered = now.by("hybrid_redis_redeliveries_total", "prefix")
    return Text(
        "\n".join(
            f"redis {prefix}: {count:.0f} pending, {redelivered.get(prefix, 0):.0f} "
            f"redelivered here, {dead.get(prefix, 0):.0f} dead letters"
            for prefix, count in sorted(pending.items())
        )
    )


def _redis_peers(now: Scrape) -> Table | Text:
    """Nodes and clients as each local node or client judges them."""
    states = now.values.get("hybrid_redis_peer_state", {})
    rows = sorted({(found["local"], found["peer"], found["role"]) for found in map(dict, states)})
    if not rows:
        return Text("")
    table = Table(title="scale-out peers", title_justify="left")
    for column in ("seen from", "peer", "role", "state", "offset", "transit", "beat every"):
        table.add_column(column, justify="right")
    for local, peer, role in rows:
        where = {"local": local, "peer": peer, "role": role}
        table.add_row(
            local, peer, role, _state(now, "hybrid_redis_peer_state", where),
            _ms(_value(now, "hybrid_redis_peer_clock_offset_seconds", where)),
            _ms(_value(now, "hybrid_redis_peer_transit_seconds", where)),
            _ms(_value(now, "hybrid_redis_peer_heartbeat_interval_seconds", where)),
        )  # fmt: skip
    return table


def _state(now: Scrape, name: str, where: dict[str, str]) -> str:
    """The state a state-set family reports for the series matching ``where``."""
    for labels, value in now.values.get(name, {}).items():
        found = dict(labels)
        if value and all(found.get(key) == wanted for key, wanted in where.items()):
            return found.get(name, "?")
    return "?"


def _value(now: Scrape, name: str, where: dict[str, str]) -> float | None:
    for labels, value in now.values.get(name, {}).items():
        found = dict(labels)
        if all(found.get(key) == wanted for key, wanted in where.items()):
            return value
    return None


def _mean_ms(now: Scrape, histogram: str, function: str) -> str:
    count = now.by(f"{histogram}_count", "function").get(function, 0.0)
    total = now.by(f"{histogram}_sum", "function").get(function, 0.0)
    return f"{1000 * total / count:.1f}" if count else "-"


def _ms(value_s: float | None) -> str:
    return "-" if value_s is None else f"{1000 * value_s:.1f} ms"


def top_command(argv: list[str]) -> int:
    """``hybrid top [URL] [--interval S] [--once]``; returns the process exit status."""
    parser = argparse.ArgumentParser(
        prog="hybrid top",
        description="Live view of a hybrid engine's metrics endpoint: workers, queue, "
        "throughput, latencies and messaging peers, redrawn in place.",
        epilog="Exit status: 0 ok, 1 the endpoint cannot be read or is not metrics, 2 usage error.",
    )
    parser.add_argument(
        "url",
        nargs="?",
        type=_metrics_url,
        default=DEFAULT_URL,
        help="the engine's Prometheus endpoint (adapters.aiohttp_web.setup(metrics=True) "
        "serves one; default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=_positive_s,
        default=1.0,
        help="seconds between refreshes (default: %(default)s)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="print one view (two scrapes --interval apart) and exit",
    )
    parser.add_argument(
        "-V",
        "--version",
        action="version",
        version=f"hybrid-engine {hybrid.__version__}",
        help="print the distribution's name and version, then exit",
    )
    args = parser.parse_args(argv)
    console = Console()
    errors = Console(stderr=True)
    try:
        if args.once:
            before = scrape(args.url)
            time.sleep(args.interval)
            console.print(render(scrape(args.url), before, args.url))
            return 0
        _watch(console, args.url, args.interval)
    except urllib.error.URLError as exc:
        return _fail(errors, f"cannot read {args.url}: {exc.reason}")
    except OSError as exc:
        return _fail(errors, f"cannot read {args.url}: {exc}")
    except ValueError as exc:  # prometheus_client's parser on a page that is not metrics
        return _fail(errors, f"{args.url} is not a metrics page: {exc}")
    except KeyboardInterrupt:
        pass
    return 0


def _fail(console: Console, message: str) -> int:
    console.print(f"hybrid top: {message}", style="red", soft_wrap=True)  # one line, unwrapped
    return 1


def _metrics_url(text: str) -> str:
    if urllib.parse.urlsplit(text).scheme not in ("http", "https") or "//" not in text:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {text!r}")
    return text


def _positive_s(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return seconds


def _watch(console: Console, url: str, interval_s: float) -> None:
    before = scrape(url)
    with Live(render(before, None, url), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval_s)
            now = scrape(url)
            live.update(render(now, before, url), refresh=True)
            before = now
