"""How many cores this process may use: CPU affinity and the cgroup CPU quota (containers).

``os.cpu_count()`` reports the host's cores even inside a container limited to two, which
would start too many workers; the affinity mask (taskset, cpusets) and the cgroup quota
(``docker --cpus``, Kubernetes limits) are what the scheduler actually allows.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _quota(root: Path) -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max``, else v1 ``cfs_quota_us``), None if unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def available_cores(cgroup_root: Path = CGROUP) -> tuple[int, str]:
    """(cores, how they were found), at least 1."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    quota = _quota(cgroup_root)
    cores = max(1, min(affinity, math.ceil(quota) if quota else affinity))
    return cores, f"affinity {affinity}, cgroup quota {f'{quota:g}' if quota else 'none'}"


def auto_workers(cgroup_root: Path = CGROUP) -> tuple[int, int, str]:
    """(worker processes, torch threads each, reason): one single-threaded worker per core.

    Small CNNs are bound by per-request Python work (HTTP, decoding), which only more processes
    spread over cores; intra-op threads would mostly wait on each other at these batch sizes.
    """
    cores, how = available_cores(cgroup_root)
    return cores, 1, f"{cores} core(s): {how}"
