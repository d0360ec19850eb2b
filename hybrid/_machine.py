"""What the machine really gives this process: CPUs by affinity and cgroup quota."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus() -> int:
    """CPUs this process may really use: the fewest of its affinity and its cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def usable_cpu_ids() -> list[int]:
    """The ids of the CPUs this process may run on, in order (for pinning workers)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def cgroup_cpu_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The tightest CPU quota over this process's cgroup and its ancestors, in CPUs."""
    quotas = []
    for relative in _cgroup_paths(proc_cgroup):
        for folder in _candidate_folders(root, relative):
            quota = _read_v2_quota(folder / "cpu.max")
            if quota is None:
                quota = _read_v1_quota(folder)
            if quota is not None:
                quotas.append(quota)
    return min(quotas, default=None)


def _cgroup_paths(proc_cgroup: Path) -> list[str]:
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    paths = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3 and (parts[1] == "" or "cpu" in parts[1].split(",")):
            paths.append(parts[2].lstrip("/"))
    return paths


def _candidate_folders(root: Path, relative: str) -> list[Path]:
    # A quota may sit on any ancestor; inside a container the cgroup is often mounted
    # at the root, whatever /proc says. Both v1 layouts are tried.
    parts = [part for part in relative.split("/") if part]
    ancestors = ["/".join(parts[:depth]) for depth in range(len(parts), -1, -1)]
    bases = [root, root / "cpu", root / "cpu,cpuacct"]
    return [base / ancestor if ancestor else base for base in bases for ancestor in ancestors]


def _read_v2_quota(path: Path) -> float | None:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _read_v1_quota(folder: Path) -> float | None:
    try:
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        period_us = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return quota_us / period_us
