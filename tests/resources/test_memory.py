"""Memory truth: the tightest cgroup limit (v2 or v1, on this cgroup or an ancestor) wins
over the physical RAM, read from fake cgroup trees laid out like the kernel's."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid.machine import (
    MemoryTruth,
    memory_truth,
    memory_used_bytes,
    physical_memory_bytes,
)

MIB = 1 << 20
V1_UNLIMITED = "9223372036854771712"  # what cgroup v1 writes for "no limit"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return tmp_path / "cgroup"


def proc_cgroup(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "proc_self_cgroup"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_v2_limit_on_an_ancestor_applies(tmp_path: Path, tree: Path) -> None:
    write(tree / "user.slice" / "memory.max", str(512 * MIB))
    write(tree / "user.slice" / "app.scope" / "memory.max", "max")
    truth = memory_truth(tree, proc_cgroup(tmp_path, "0::/user.slice/app.scope"))
    assert truth.total_bytes == 512 * MIB
    assert (truth.cgroup_folder, truth.cgroup_version) == (tree / "user.slice", 2)
    assert truth.physical_bytes == physical_memory_bytes()
    assert "cgroup v2 limit" in truth.describe()


def test_the_tightest_of_nested_v2_limits_wins(tmp_path: Path, tree: Path) -> None:
    write(tree / "a" / "memory.max", str(1024 * MIB))
    write(tree / "a" / "b" / "memory.max", str(256 * MIB))
    write(tree / "a" / "b" / "c" / "memory.max", str(768 * MIB))
    truth = memory_truth(tree, proc_cgroup(tmp_path, "0::/a/b/c"))
    assert truth.total_bytes == 256 * MIB
    assert truth.cgroup_folder == tree / "a" / "b"


def test_v1_memory_controller_limit(tmp_path: Path, tree: Path) -> None:
    write(tree / "memory" / "memory.limit_in_bytes", V1_UNLIMITED)
    write(tree / "memory" / "docker" / "abc" / "memory.limit_in_bytes", str(300 * MIB))
    lines = ("5:cpu,cpuacct:/docker/abc", "4:memory:/docker/abc", "0::/")
    truth = memory_truth(tree, proc_cgroup(tmp_path, *lines))
    assert truth.total_bytes == 300 * MIB
    assert (truth.cgroup_folder, truth.cgroup_version) == (tree / "memory" / "docker" / "abc", 1)


def test_v1_unlimited_is_no_limit(tmp_path: Path, tree: Path) -> None:
    write(tree / "memory" / "x" / "memory.limit_in_bytes", V1_UNLIMITED)
    truth = memory_truth(tree, proc_cgroup(tmp_path, "4:memory:/x"))
    assert truth == MemoryTruth(physical_memory_bytes(), physical_memory_bytes())
    assert not truth.limited_by_cgroup
    assert "physical RAM" in truth.describe()


def test_a_container_sees_its_own_cgroup_at_the_mount_root(tmp_path: Path, tree: Path) -> None:
    # /proc names the host's path, but inside the container only the root is mounted.
    write(tree / "memory.max", str(128 * MIB))
    truth = memory_truth(tree, proc_cgroup(tmp_path, "0::/kubepods/pod1/container9"))
    assert (truth.total_bytes, truth.cgroup_folder) == (128 * MIB, tree)


def test_hybrid_hosts_read_the_unified_mount(tmp_path: Path, tree: Path) -> None:
    write(tree / "unified" / "svc" / "memory.max", str(64 * MIB))
    truth = memory_truth(tree, proc_cgroup(tmp_path, "4:memory:/", "0::/svc"))
    assert (truth.total_bytes, truth.cgroup_version) == (64 * MIB, 2)


def test_a_limit_above_the_ram_is_no_limit(tmp_path: Path, tree: Path) -> None:
    write(tree / "memory.max", str(physical_memory_bytes() * 2))
    truth = memory_truth(tree, proc_cgroup(tmp_path, "0::/"))
    assert not truth.limited_by_cgroup
    assert truth.total_bytes == physical_memory_bytes()


@pytest.mark.parametrize("garbage", ["", "lots", "-1", "12 34"])
def test_unreadable_limits_are_ignored(tmp_path: Path, tree: Path, garbage: str) -> None:
    write(tree / "memory.max", garbage)
    assert not memory_truth(tree, proc_cgroup(tmp_path, "0::/")).limited_by_cgroup


def test_no_cgroup_information_falls_back_to_the_ram(tmp_path: Path, tree: Path) -> None:
    truth = memory_truth(tree, tmp_path / "missing")
    assert truth.total_bytes == physical_memory_bytes() > 0


def test_v2_usage_leaves_out_reclaimable_page_cache(tmp_path: Path, tree: Path) -> None:
    write(tree / "app" / "memory.max", str(1024 * MIB))
    write(tree / "app" / "memory.current", str(600 * MIB))
    write(tree / "app" / "memory.stat", f"anon {400 * MIB}\ninactive_file {150 * MIB}\n")
    truth = memory_truth(tree, proc_cgroup(tmp_path, "0::/app"))
    assert memory_used_bytes(truth) == 450 * MIB


def test_v1_usage_leaves_out_reclaimable_page_cache(tmp_path: Path, tree: Path) -> None:
    folder = tree / "memory" / "job"
    write(folder / "memory.limit_in_bytes", str(1024 * MIB))
    write(folder / "memory.usage_in_bytes", str(700 * MIB))
    write(folder / "memory.stat", f"inactive_file 1\ntotal_inactive_file {200 * MIB}\n")
    truth = memory_truth(tree, proc_cgroup(tmp_path, "4:memory:/job"))
    assert memory_used_bytes(truth) == 500 * MIB


def test_without_a_cgroup_limit_usage_is_left_to_the_os() -> None:
    assert memory_used_bytes(MemoryTruth(1024, 1024)) is None


def test_this_machine_reports_a_sane_total() -> None:
    truth = memory_truth()
    assert 0 < truth.total_bytes <= truth.physical_bytes
    if truth.limited_by_cgroup:
        used = memory_used_bytes(truth)
        assert used is not None
        assert 0 < used <= truth.total_bytes
