"""How many CPU threads a run computes with (``train.threads``), and when its steps ran far
slower than they can.

torch runs each operation on up to ``torch.get_num_threads()`` OpenMP threads (by default one
per physical core), which wait for each other at every barrier. When other processes hold a
core, the step waits for its descheduled thread at each of its hundreds of barriers: on the
shared, busy 2-core machine of docs/benchmarks.md (``python benchmarks/threads.py``) the steps
of the models ``flowforge train --data`` sizes took 3 to 55 times longer with 2 threads than
with 1, while a second thread can at best halve a step.

``train.threads: N`` uses ``N`` threads. ``0`` (the default, automatic) resolves to:

- the process's own count when ``OMP_NUM_THREADS`` is set: the environment chose (``torchrun``
  sets it to 1 per process, ``OMP_NUM_THREADS=1 flowforge ...`` is the usual way to ask);
- otherwise half the CPUs the process may run on (``os.sched_getaffinity``), at least 1 and
  at most the process's current count (what torch chose, or ``torch.set_num_threads`` before
  the run). On 2 CPUs that is 1 thread; a machine can then be half taken by other jobs before
  a thread of the run waits for a core. It depends on the machine, not on its momentary load,
  so the same command computes the same numbers on it (sums depend on the thread count).

:func:`torch_threads` sets the count for a run (training, its evaluation and figures) and
restores the previous one afterwards. :class:`StepPace` times the steps in windows and
:func:`slow_steps` says when a window ran far slower than the fastest one while the process
got a smaller share of the CPU (other processes took the cores the run's threads wait for):
there, with 2 threads, the process got 0.47, 0.32 and 0.24 CPU seconds per wall-clock second
and thread as 0, 1 and 2 busy processes were added to the machine's other jobs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch

__all__ = ["Pace", "StepPace", "auto_threads", "available_cpus", "slow_steps", "torch_threads"]

#: a window this many times slower than the fastest one is reported ...
SLOWER = 3.0
#: ... when the process got at most this fraction of the fastest window's CPU share
SHARE_DROP = 0.8


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity; all of them where that is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def auto_threads(
    cpus: int | None = None,
    current: int | None = None,
    environ: Mapping[str, str] = os.environ,
) -> int:
    """What ``train.threads: 0`` resolves to (module docstring): ``current`` (default: torch's
    count) when ``OMP_NUM_THREADS`` is set in ``environ``, else ``cpus // 2`` (default: the
    available CPUs) between 1 and ``current``."""
    current = torch.get_num_threads() if current is None else current
    if environ.get("OMP_NUM_THREADS"):
        return current
    cpus = available_cpus() if cpus is None else cpus
    return max(1, min(cpus // 2, current))


@contextmanager
def torch_threads(requested: int) -> Iterator[int]:
    """Uses ``requested`` threads (0: :func:`auto_threads`) inside the block; yields the count
    and restores the previous one on the way out."""
    previous = torch.get_num_threads()
    threads = requested if requested > 0 else auto_threads(current=previous)
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class Pace:
    """A window of steps: wall-clock milliseconds per step, and the CPU the process got per
    wall-clock second and thread (about 1 while every thread runs or spins throughout)."""

    ms: float
    share: float


def slow_steps(fastest: Pace, window: Pace, threads: int) -> str | None:
    """The warning when, with more than one thread, a window of steps took at least
    :data:`SLOWER` times as long per step as the fastest one **and** the process got at most
    :data:`SHARE_DROP` of the fastest window's CPU share: other processes took the cores that
    the run's threads wait for. ``None`` otherwise: steps that do more work (an adaptive ODE
    solver taking more evaluations as training goes on) keep their CPU share, and with one
    thread a busy machine slows the run only by its share of the core, with nothing to
    change in the run."""
    if threads <= 1 or not window.ms >= SLOWER * fastest.ms:
        return None
    if not window.share <= SHARE_DROP * fastest.share:
        return None
    return (
        f"warning: steps took {window.ms:.0f} ms, {window.ms / fastest.ms:.0f} times the "
        f"{fastest.ms:.0f} ms of earlier steps: the machine is busy or oversubscribed and "
        f"the run's {threads} threads wait for each other; try --threads 1"
    )


class StepPace:
    """The pace of the steps over windows of at least ``window`` seconds of steps, and the
    :func:`slow_steps` warning for a run with ``threads`` threads, once.

    :meth:`add` takes each step's wall-clock and CPU (``time.process_time``) seconds; when it
    closes a window for which :func:`slow_steps` warns against the fastest window so far, it
    returns the warning (the first time only). Windows of a few seconds average out a slow
    step (garbage collection, a page fault) that a short one would not; the first window,
    slowed by the first steps' allocations, can only make later ones look fast.
    """

    def __init__(self, threads: int, window: float = 2.0) -> None:
        self.threads, self.window = threads, window
        self.fastest = Pace(math.inf, 0.0)
        self.seconds, self.cpu, self.steps = 0.0, 0.0, 0
        self.warned = False

    def add(self, seconds: float, cpu: float) -> str | None:
        self.seconds += seconds
        self.cpu += cpu
        self.steps += 1
        if self.seconds < self.window:
            return None
        pace = Pace(1e3 * self.seconds / self.steps, self.cpu / self.seconds / self.threads)
        self.seconds, self.cpu, self.steps = 0.0, 0.0, 0
        self.fastest = min(self.fastest, pace, key=lambda p: p.ms)
        warning = None if self.warned else slow_steps(self.fastest, pace, self.threads)
        self.warned = self.warned or warning is not None
        return warning
