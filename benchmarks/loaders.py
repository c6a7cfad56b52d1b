"""Measuring a ``DataLoader`` (``benchmarks.bench_patches``): patches/s, CPU time and the workers' peak RSS.

Each worker reports its pid and resets its RSS high-water mark when it starts (``worker_init_fn``);
after the last batch, before the workers exit, the parent reads each worker's ``VmHWM`` and CPU time
from ``/proc`` (a forked worker's RSS includes the parent's pages it maps, hence the growth too).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.queues import SimpleQueue
from typing import Any

from torch.utils.data import DataLoader, Dataset

from benchmarks import measure

BATCH = 16
WORKERS = 2
TIMEOUT_S = 120.0
"""A loader that delivers no batch for this long has hung (reported as an error)."""


@dataclass
class Run:
    """One case's run."""

    patches: int
    seconds: float
    setup_s: float
    workers_peak: list[int] = field(default_factory=list)
    """Peak RSS (VmHWM) of each DataLoader worker, bytes."""
    workers_growth: list[int] = field(default_factory=list)
    """Each worker's peak minus its RSS when it started, bytes."""
    cpu_s: float = 0.0
    """CPU seconds (user + system) of the benchmark process and of the workers during the run."""

    @property
    def rate(self) -> float:
        return self.patches / self.seconds


def status_bytes(pid: int, key: str) -> int:
    """A byte count (``VmRSS``, ``VmHWM``, ...) of process ``pid`` from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    raise KeyError(f"{key} not in /proc/{pid}/status")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_started(queue: SimpleQueue[tuple[int, int]], worker_id: int) -> None:
    """``worker_init_fn``: reset this worker's RSS high-water mark and report (pid, RSS now)."""
    measure.reset_peak_rss()
    queue.put((os.getpid(), status_bytes(os.getpid(), "VmRSS")))


def _count(batch: Any) -> int:
    if isinstance(batch, dict):
        batch = batch["x"]
    if isinstance(batch, list | tuple):
        batch = batch[0]
    return int(batch.shape[0])


def iterate(dataset: Dataset[Any], setup_s: float) -> Run:
    """Iterate a 2-worker, batch-16 ``DataLoader`` over ``dataset`` once; workers' peaks included."""
    queue: SimpleQueue[tuple[int, int]] = multiprocessing.SimpleQueue()
    loader = DataLoader(
        dataset, batch_size=BATCH, num_workers=WORKERS, timeout=TIMEOUT_S,
        worker_init_fn=partial(worker_started, queue),
    )  # fmt: skip
    t0, cpu0 = time.perf_counter(), time.process_time()
    it = iter(loader)
    patches = 0
    for _ in range(len(loader)):
        patches += _count(next(it))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    started = [queue.get() for _ in range(WORKERS)]  # every worker has run by now
    # before the workers exit: their peaks, and their CPU time since they were forked
    peaks = [status_bytes(pid, "VmHWM") for pid, _ in started]
    cpu += sum(process_cpu_s(pid) for pid, _ in started)
    del it
    growth = [p - s for p, (_, s) in zip(peaks, started, strict=True)]
    return Run(patches, seconds, setup_s, peaks, growth, cpu)
