"""What the machine really gives this process: CPUs and memory, as cgroups and affinity say.

In a container or a systemd slice the physical totals are a lie: the scheduler applies the
cgroup's CPU quota and the process's affinity, and the kernel's OOM killer acts at the
cgroup's memory limit (``memory.max`` in cgroup v2, ``memory.limit_in_bytes`` in v1), which
may sit on any ancestor of this process's cgroup. :func:`usable_cpus` and
:func:`usable_cpu_ids` give the CPUs; :func:`memory_truth` finds the tightest memory limit
and :func:`memory_used_bytes` reads the usage it applies to.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
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


PROC_CGROUP = Path("/proc/self/cgroup")
# Both v1 mount layouts seen in the wild: a controller of its own, or joint mounts.
V1_MEMORY_MOUNTS = ("memory", "memory,memsw")


@dataclass(frozen=True)
class MemoryTruth:
    """The memory this process may use, and where that figure came from.

    Attributes:
        total_bytes: the tightest cgroup limit, or the physical RAM when there is none
            (a limit above the RAM is no limit).
        physical_bytes: the machine's RAM.
        cgroup_folder: the cgroup folder holding the limit; None without a limit.
        cgroup_version: 1 or 2 for a cgroup limit; None without a limit.
    """

    total_bytes: int
    physical_bytes: int
    cgroup_folder: Path | None = None
    cgroup_version: int | None = None

    @property
    def limited_by_cgroup(self) -> bool:
        return self.cgroup_folder is not None

    def describe(self) -> str:
        """Say where the total comes from, e.g. for ``hybrid info`` or a log line."""
        total_mb = self.total_bytes >> 20
        if self.cgroup_folder is None:
            return f"{total_mb} MB (physical RAM, no cgroup limit)"
        return f"{total_mb} MB (cgroup v{self.cgroup_version} limit at {self.cgroup_folder})"


def physical_memory_bytes() -> int:
    """The machine's RAM in bytes (0 where the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def memory_truth(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> MemoryTruth:
    """The memory this process may really use: the tightest cgroup limit over its cgroup
    and its ancestors (v2 and v1), else the physical RAM."""
    physical = physical_memory_bytes()
    best: tuple[int, Path, int] | None = None
    for folder, version in _memory_folders(root, proc_cgroup):
        limit = _read_limit(folder, version)
        if limit is None or (physical and limit >= physical):
            continue
        if best is None or limit < best[0]:
            best = (limit, folder, version)
    if best is None:
        return MemoryTruth(total_bytes=physical, physical_bytes=physical)
    limit, folder, version = best
    return MemoryTruth(limit, physical, cgroup_folder=folder, cgroup_version=version)


def memory_used_bytes(truth: MemoryTruth) -> int | None:
    """What counts against the cgroup limit now, less the page cache the kernel would
    drop before it kills (``inactive_file``, as ``docker stats`` does); None without
    a cgroup limit (ask the OS for the machine's figure then)."""
    folder, version = truth.cgroup_folder, truth.cgroup_version
    if folder is None:
        return None
    name = "memory.current" if version == 2 else "memory.usage_in_bytes"
    usage = _read_int(folder / name)
    if usage is None:
        return None
    stat_key = "inactive_file" if version == 2 else "total_inactive_file"
    return max(0, usage - _read_stat(folder / "memory.stat", stat_key))


def _memory_folders(root: Path, proc_cgroup: Path) -> list[tuple[Path, int]]:
    """Every existing folder that may hold this process's memory limit, innermost first."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return []
    folders: list[tuple[Path, int]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, relative = parts
        if controllers == "":
            bases, version = [root, root / "unified"], 2
        elif "memory" in controllers.split(","):
            bases, version = [root / mount for mount in V1_MEMORY_MOUNTS], 1
        else:
            continue
        for base in bases:
            folders.extend((folder, version) for folder in _ancestors(base, relative))
    return [(folder, version) for folder, version in folders if folder.is_dir()]


def _ancestors(base: Path, relative: str) -> list[Path]:
    # Inside a container the cgroup is often mounted at the root whatever /proc says,
    # so the base itself is always a candidate.
    parts = [part for part in relative.split("/") if part]
    return [base.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _read_limit(folder: Path, version: int) -> int | None:
    if version == 2:
        text = _read_text(folder / "memory.max")
        if text is None or text == "max":
            return None
        return int(text) if text.isdigit() else None
    # v1 writes "no limit" as a huge page-rounded number; the caller drops it against the RAM.
    return _read_int(folder / "memory.limit_in_bytes")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    return int(text) if text is not None and text.isdigit() else None


def _read_stat(path: Path, key: str) -> int:
    text = _read_text(path) or ""
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0
