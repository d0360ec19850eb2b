"""Crawler benchmark: hybrid's example crawler vs Scrapy on the same local site.

Run: ``python -m benchmarks.bench_crawler`` (options: ``--pages 20000``, ``--delay-ms 20``,
``--page-kb 50``, ``--links 20``, ``--repeats 1``, ``--baselines scrapy,crawlee``,
``--skip-baselines``, ``--resume-only``, ``--site realworld``).

``--site realworld`` crawls ``examples/crawler/realsite.py`` instead (``--pages`` posts):
redirects into a disallowed area, aliases, legacy charsets, binary links, errors, a
calendar trap and hostile bytes, with robots.txt obeyed by both crawlers and a depth limit
of :data:`REALWORLD_DEPTH`. hybrid and Scrapy run side by side in two settings, each
crawler's own defaults for politeness (per host: 8 and 8) and one host at concurrency 64,
and a table gives pages/s and the ratio.

The synthetic site (``examples/crawler/site.py``) runs in its own process on 127.0.0.1
and counts the pages it serves; throughput is served pages over the crawler's wall time
(start-up included). Each crawler runs in a light variant and a heavy one (about 5 ms of
pure-Python extraction per page, ``crawler_baselines/heavy.py``). For hybrid it also
reports the crawler's own fetch latency p50 (vs the server's delay), the parent loop's
lag p99, the peak RSS of the parent plus its workers, and the resume cost (a run killed
with SIGKILL half way and resumed, against an uninterrupted run made just before it).

Scrapy is installed on first use into ``benchmarks/.venv-baselines`` (never into the
project's venv).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
BASELINES = Path(__file__).resolve().parent / "crawler_baselines"
BASELINE_VENV = Path(__file__).resolve().parent / ".venv-baselines"
BASELINE_PACKAGES = ["scrapy", "crawlee[parsel]"]
RSS_POLL_S = 0.1
REALWORLD_DEPTH = 8  # the calendar trap is endless: both crawlers stop at this depth
# (name, hybrid's options, Scrapy's settings) of each realworld setting.
REALWORLD_SETTINGS = (
    ("polite defaults", [], []),
    (
        "one host, 64",
        ["--concurrency", "64", "--per-host", "64"],
        ["-s", "CONCURRENT_REQUESTS=64", "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=64"],
    ),
)


def serve(
    port: int, pages: int, delay_s: float, page_bytes: int, links: int, kind: str = "synthetic"
) -> None:
    """Serve the site until killed, with /__served and /__reset for counting."""
    from aiohttp import web

    from examples.crawler.realsite import RealWorldSite
    from examples.crawler.site import SyntheticSite

    site: SyntheticSite | RealWorldSite
    if kind == "realworld":
        site = RealWorldSite(posts=pages, links=links, page_bytes=page_bytes, delay_s=delay_s)
    else:
        site = SyntheticSite(pages=pages, links=links, page_bytes=page_bytes, delay_s=delay_s)

    async def served(request: web.Request) -> web.Response:
        return web.json_response({"total": sum(site.served.values()), "unique": len(site.served)})

    async def reset(request: web.Request) -> web.Response:
        site.served.clear()
        return web.json_response({})

    app = site.app()
    app.router.add_get("/__served", served)
    app.router.add_get("/__reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _ensure_baselines(names: set[str] | None = None) -> Path:
    python = BASELINE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(BASELINE_VENV)], check=True)
    wanted = [p for p in BASELINE_PACKAGES if names is None or p.split("[")[0] in names]
    modules = ", ".join(p.split("[")[0] for p in wanted)
    probe = subprocess.run([str(python), "-c", f"import {modules}"], capture_output=True)
    if probe.returncode != 0:
        pip = [str(python), "-m", "pip", "install", "-q", *wanted]
        subprocess.run(pip, check=True)
    return python


def _run_measured(
    command: list[str],
    cwd: Path,
    kill_after_pages: int | None = None,
    site_url: str = "",
    python_path: Path = ROOT,
) -> dict[str, Any]:
    """Run a crawler process to its end; wall time and peak memory of its process tree.

    Memory is summed over the process and its children, as RSS (shared pages counted in
    every process) and as PSS (shared pages split between the processes sharing them).
    """
    started = time.monotonic()
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONPATH": str(python_path)},
        )
        peak_rss = peak_pss = 0
        peak_roles: dict[str, int] = {}
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            rss, pss, roles = _tree_memory(parent)
            if rss > peak_rss:
                peak_roles = roles
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            if kill_after_pages and _get(f"{site_url}/__served")["total"] >= kill_after_pages:
                process.send_signal(signal.SIGKILL)
            time.sleep(RSS_POLL_S)
        stderr.seek(0)
        tail = stderr.read()[-2000:].decode(errors="replace")
    return {
        "elapsed_s": time.monotonic() - started,
        "peak_rss_bytes": peak_rss,
        "peak_pss_bytes": peak_pss,
        "peak_rss_by_role": peak_roles,
        "code": process.returncode,
        "stderr": tail,
    }


def _tree_memory(parent: psutil.Process) -> tuple[int, int, dict[str, int]]:
    """RSS and PSS summed over the tree, and RSS by role (parent, workers, helpers)."""
    rss = pss = 0
    roles: dict[str, int] = {}
    try:
        tree = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return 0, 0, roles
    for process in tree:
        try:
            info = process.memory_full_info()
            role = "parent" if process.pid == parent.pid else _role(process.cmdline())
        except psutil.Error:
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        roles[role] = roles.get(role, 0) + info.rss
    return rss, pss, roles


def _role(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    helpers = ("resource_tracker", "forkserver import main; main(")
    if any(helper in text for helper in helpers) and "spawn_main" not in text:
        return "helpers"
    return "workers"


def _hybrid_command(seed: str, db: Path, pages: int, heavy: bool, stats: Path) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "examples.crawler",
        seed,
        "--db",
        str(db),
        "--concurrency",
        "64",
        "--per-host",
        "64",
        "--max-pages",
        str(pages),
        "--ignore-robots",
        "--stats-json",
        str(stats),
    ]
    if heavy:
        command += ["--hook", "benchmarks.crawler_baselines.heavy:extract"]
    return command


def run_hybrid(site: str, pages: int, heavy: bool, work: Path) -> dict[str, Any]:
    db, stats = work / f"hybrid-{heavy}.sqlite", work / f"hybrid-{heavy}.json"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # a fresh crawl, not a resume
    _get(f"{site}/__reset")
    result = _run_measured(_hybrid_command(f"{site}/p/0", db, pages, heavy, stats), ROOT)
    result["served"] = _get(f"{site}/__served")["total"]
    result.update(json.loads(stats.read_text()))
    return result


def run_resume(site: str, pages: int, work: Path) -> dict[str, Any]:
    """A light run killed with SIGKILL half way, then resumed with the same command."""
    db, stats = work / "resume.sqlite", work / "resume.json"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)  # a fresh crawl to kill half way
    _get(f"{site}/__reset")
    command = _hybrid_command(f"{site}/p/0", db, pages, False, stats)
    first = _run_measured(command, ROOT, kill_after_pages=pages // 2, site_url=site)
    second = _run_measured(command, ROOT)
    served = _get(f"{site}/__served")
    return {
        "elapsed_s": first["elapsed_s"] + second["elapsed_s"],
        "served": served["total"],
        "unique": served["unique"],
    }


def run_scrapy(python: Path, site: str, heavy: bool) -> dict[str, Any]:
    _get(f"{site}/__reset")
    command = [
        str(python),
        "-m",
        "scrapy",
        "runspider",
        "scrapy_spider.py",
        "-a",
        f"start={site}/p/0",
        "-a",
        f"heavy={int(heavy)}",
    ]
    result = _run_measured(command, BASELINES)
    result["served"] = _get(f"{site}/__served")["total"]
    return result


def run_crawlee(python: Path, site: str, heavy: bool, pages: int, work: Path) -> dict[str, Any]:
    _get(f"{site}/__reset")
    cwd = Path(tempfile.mkdtemp(dir=work))  # crawlee writes its storage/ here
    command = [
        str(python),
        str(BASELINES / "crawlee_crawler.py"),
        f"{site}/p/0",
        str(int(heavy)),
        str(pages),
    ]
    result = _run_measured(command, cwd, python_path=BASELINES)
    result["served"] = _get(f"{site}/__served")["total"]
    return result


def run_realworld(
    python: Path | None, site: str, setting: tuple[str, list[str], list[str]], work: Path
) -> dict[str, dict[str, Any]]:
    """hybrid, then Scrapy, on the realworld site with robots.txt obeyed and a depth limit."""
    name, ours, theirs = setting
    db, stats = work / "real.sqlite", work / "real.json"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    _get(f"{site}/__reset")
    command = [
        sys.executable, "-m", "examples.crawler", f"{site}/", "--db", str(db),
        "--max-depth", str(REALWORLD_DEPTH), "--stats-json", str(stats), *ours,
    ]  # fmt: skip
    results = {"hybrid": _run_measured(command, ROOT)}
    results["hybrid"]["served"] = _get(f"{site}/__served")["total"]
    results["hybrid"].update(json.loads(stats.read_text()))
    if python is not None:
        _get(f"{site}/__reset")
        command = [
            str(python), "-m", "scrapy", "runspider", "scrapy_spider.py",
            "-a", f"start={site}/", "-a", "heavy=0", "-s", "ROBOTSTXT_OBEY=True",
            "-s", f"DEPTH_LIMIT={REALWORLD_DEPTH}", "-s", "CONCURRENT_REQUESTS=16",
            "-s", "CONCURRENT_REQUESTS_PER_DOMAIN=8", *theirs,
        ]  # fmt: skip
        results["scrapy"] = _run_measured(command, BASELINES)
        results["scrapy"]["served"] = _get(f"{site}/__served")["total"]
    print(f"{name} done", file=sys.stderr)
    return results


def _report_realworld(args: argparse.Namespace, site: str, python: Path | None) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in REALWORLD_SETTINGS:
            rows.append((setting[0], run_realworld(python, site, setting, Path(tmp))))
    print(
        f"\nrealworld site: {args.pages} posts, {args.page_kb} KB, {args.links} links, "
        f"{args.delay_ms:g} ms server delay, depth {REALWORLD_DEPTH}, robots.txt obeyed, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"{'setting':16} {'hybrid/s':>9} {'scrapy/s':>9} {'ratio':>6}  notes")
    for name, results in rows:
        ours = results["hybrid"]
        theirs = results.get("scrapy")
        their_rate = _rate(theirs) if theirs else float("nan")
        notes = (
            f"hybrid: served {ours['served']}, stored {ours['pages_stored']}, "
            f"{_memory(ours)}"
            + (f"; scrapy: served {theirs['served']}, {_memory(theirs)}" if theirs else "")
        )
        print(
            f"{name:16} {_rate(ours):9.0f} {their_rate:9.0f} "
            f"{_rate(ours) / their_rate:6.2f}  {notes}"
        )


def _memory(result: dict[str, Any]) -> str:
    roles = result.get("peak_rss_by_role", {})
    detail = ", ".join(f"{role} {size / 2**20:.0f}" for role, size in sorted(roles.items()))
    return (
        f"peak RSS {result['peak_rss_bytes'] / 2**20:.0f} MB "
        f"(PSS {result['peak_pss_bytes'] / 2**20:.0f} MB"
        + (f"; RSS {detail})" if len(roles) > 1 else ")")
    )


def _rate(result: dict[str, Any]) -> float:
    return float(result["served"]) / float(result["elapsed_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=20_000)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--page-kb", type=int, default=50)
    parser.add_argument("--links", type=int, default=20)
    parser.add_argument("--port", type=int, default=8799)
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell; medians shown")
    parser.add_argument(
        "--baselines", default="scrapy,crawlee", help="comma-separated: scrapy, crawlee"
    )
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--resume-only", action="store_true", help="measure only the resume cost")
    parser.add_argument(
        "--site", choices=("synthetic", "realworld"), default="synthetic", help="site to crawl"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kb = args.page_kb * 1024
        serve(args.port, args.pages, args.delay_ms / 1000, kb, args.links, args.site)
        return
    names = {"scrapy"} if args.site == "realworld" else set(args.baselines.split(","))
    python = None if args.skip_baselines else _ensure_baselines(names)
    site = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_crawler",
            "--serve",
            "--port",
            str(args.port),
            "--pages",
            str(args.pages),
            "--delay-ms",
            str(args.delay_ms),
            "--page-kb",
            str(args.page_kb),
            "--links",
            str(args.links),
            "--site",
            args.site,
        ],
        cwd=ROOT,
    )
    try:
        _wait_for(site)
        if args.site == "realworld":
            _report_realworld(args, site, python)
        else:
            _report(args, site, python)
    finally:
        server.terminate()
        server.wait()


def _wait_for(site: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            _get(f"{site}/__served")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _median_run(runs: list[dict[str, Any]]) -> tuple[float, dict[str, Any]]:
    """The median throughput and the run that had it (the upper middle one)."""
    ordered = sorted(runs, key=_rate)
    return statistics.median(_rate(r) for r in runs), ordered[len(ordered) // 2]


def _hybrid_notes(run: dict[str, Any], delay_ms: float) -> str:
    return (
        f"fetch p50 {run['fetch_p50_ms']} ms (server {delay_ms:g} ms), "
        f"loop lag p99 {run['loop_lag_p99_ms']} ms, {_memory(run)}, served {run['served']}"
    )


def _report(args: argparse.Namespace, site: str, python: Path | None) -> None:
    rows: list[tuple[str, str, float, str]] = []
    baselines = set(args.baselines.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for heavy in () if args.resume_only else (False, True):
            variant = "heavy" if heavy else "light"
            runs: dict[str, list[dict[str, Any]]] = {"hybrid": [], "scrapy": [], "crawlee": []}
            for _ in range(args.repeats):  # interleaved, so drift hits every crawler alike
                runs["hybrid"].append(run_hybrid(site, args.pages, heavy, work))
                if python is not None and "scrapy" in baselines:
                    runs["scrapy"].append(run_scrapy(python, site, heavy))
                if python is not None and "crawlee" in baselines:
                    runs["crawlee"].append(run_crawlee(python, site, heavy, args.pages, work))
            ours_rate, ours = _median_run(runs["hybrid"])
            rows.append((variant, "hybrid", ours_rate, _hybrid_notes(ours, args.delay_ms)))
            for name in ("scrapy", "crawlee"):
                if runs[name]:
                    rate, mid = _median_run(runs[name])
                    notes = (
                        f"hybrid x{ours_rate / rate:.2f}; {_memory(mid)}, served {mid['served']}"
                    )
                    rows.append((variant, name, rate, notes))
            for row in rows[-sum(bool(r) for r in runs.values()) :]:
                print(f"{variant} done: {row[1]} {row[2]:.0f} pages/s  {row[3]}", file=sys.stderr)
        # Each resumed crawl is paired with an uninterrupted one run just before it: the
        # host's speed drifts over minutes, and the cost is a difference of a few percent.
        costs, resumes = [], []
        for _ in range(args.repeats):
            whole = _rate(run_hybrid(site, args.pages, False, work))
            resume = run_resume(site, args.pages, work)
            costs.append(1 - _rate(resume) / whole)
            resumes.append(resume)
    resume = _median_run(resumes)[1]
    notes = (
        f"killed at {args.pages // 2} pages and resumed: cost "
        f"{statistics.median(costs) * 100:.1f}% of throughput against the uninterrupted run "
        f"just before it (each pair: {', '.join(f'{c * 100:.1f}%' for c in costs)}); "
        f"served {resume['served']} ({resume['unique']} distinct)"
    )
    rows.append(("light", "hybrid resume", _rate(resume), notes))
    print(
        f"\n{args.pages} pages, {args.page_kb} KB, {args.links} links, "
        f"{args.delay_ms:g} ms server delay, {os.cpu_count()} CPUs, medians of {args.repeats}"
    )
    print(f"{'variant':8} {'crawler':14} {'pages/s':>9}  notes")
    for variant, who, rate, row_notes in rows:
        print(f"{variant:8} {who:14} {rate:9.0f}  {row_notes}")


if __name__ == "__main__":
    main()
