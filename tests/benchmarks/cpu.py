"""CPU accounting of a measurement: who used how much of the machine's cores while it ran.

On a 2-core machine shared with other work, a figure means little without knowing whether a
core was saturated, and by whom. `CpuMeter` takes the CPU seconds of named processes (and of
the Postgres backends serving one database, and of children this process waited for, such as
wrk) before and after a measurement, and the machine's busy time over the same interval;
`others` is what neither of those used: the noise of everything else on the machine.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import psutil


def _cpu_seconds(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def _tree_seconds(pid: int) -> dict[int, float]:
    """CPU seconds of a process and its descendants, by pid (gone processes are skipped)."""
    out: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            out[p.pid] = _cpu_seconds(p)
        except psutil.Error:
            continue
    return out


def postgres_backends(database: str) -> dict[int, float]:
    """CPU seconds of the Postgres backends connected to `database`, by pid."""
    out: dict[int, float] = {}
    for p in psutil.process_iter(["cmdline"]):
        try:
            title = " ".join(p.info["cmdline"] or [])
            if title.startswith("postgres:") and f" {database} " in title:
                out[p.pid] = _cpu_seconds(p)
        except psutil.Error:
            continue
    return out


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _children_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class CpuMeter:
    """Cores used during a `with` block: per named process tree, Postgres backends, waited-for
    children (`waited_label`), this process itself, the whole machine and everything else."""

    processes: dict[str, Callable[[], Iterable[int]]] = field(default_factory=dict)
    """label -> the root pids to account (each with its descendants)."""
    database: str | None = None
    waited_label: str | None = None
    """Label of the CPU of children reaped during the block (e.g. 'wrk'), or None."""
    self_label: str | None = None
    cores: dict[str, float] = field(default_factory=dict)
    """label -> average cores used over the block (filled on exit)."""

    def _sample(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for label, pids in self.processes.items():
            merged: dict[int, float] = {}
            for pid in pids():
                merged.update(_tree_seconds(pid))
            out[label] = merged
        if self.database:
            out["postgres"] = postgres_backends(self.database)
        return out

    def __enter__(self) -> CpuMeter:
        self._t = time.monotonic()
        self._busy = _busy_seconds()
        self._children = _children_seconds()
        self._self = time.process_time()
        self._before = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._sample()
        wall = max(time.monotonic() - self._t, 1e-9)
        used: dict[str, float] = {}
        for label, now in after.items():
            before = self._before.get(label, {})
            used[label] = sum(max(0.0, s - before.get(pid, 0.0)) for pid, s in now.items())
        if self.waited_label:
            used[self.waited_label] = _children_seconds() - self._children
        if self.self_label:
            used[self.self_label] = time.process_time() - self._self
        machine = _busy_seconds() - self._busy
        self.cores = {k: round(v / wall, 2) for k, v in used.items()}
        self.cores["machine"] = round(machine / wall, 2)
        self.cores["others"] = round(max(0.0, machine - sum(used.values())) / wall, 2)
        self.cores["available"] = float(psutil.cpu_count() or 1)
