"""Training steps with 1 and 2 torch threads, on a quiet machine and under load, side by side.

    python benchmarks/threads.py [--threads 1,2] [--loads 0,1,2] [--rounds 5] [--steps 10]

Times the training step of the models ``flowforge train --data FILE`` sizes for 7 features
(:func:`flowforge.models.sizing.sized_options`): ``maf`` and ``nsf`` for 2,000 training rows
(5 layers of width 64), ``nsf-large`` for 50,000 rows (8 layers of width 256, 2 residual
blocks), at batch 256; a step is what the trainer does (``zero_grad``, ``-log_prob(x).mean()``,
``backward``, gradient clipping at 5, fused AdamW). Load ``k`` is ``k`` busy background
processes (a Python loop each), started before and stopped after the load's block, each
ending by itself after ``--max-load-seconds`` whatever happens to this one.

Within a load's block, every round times ``--steps`` steps of each model with each thread
count (after 2 untimed steps), the thread counts in turn (reversed every other round). Prints
the median ms/step over rounds, the median per-round ratio to the first thread count, the CPU
seconds the process got per wall-clock second and thread (median; about 1 while every thread
runs or spins throughout; what the trainer's slow-step warning reads) and the share of the
machine's CPU that other processes (the load included) used during the block (from
``/proc/stat``; "-" where it is not available), after a line with the machine, the load
average and the thread count ``train.threads: 0`` resolves to on it
(:func:`flowforge.train.threads.auto_threads`). Returns the rows.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from flowforge.models import RECIPES
from flowforge.models.sizing import sized_options
from flowforge.train.threads import auto_threads

FEATURES, BATCH = 7, 256
#: model name -> (recipe, training rows it is sized for)
MODELS = {"maf": ("maf", 2000), "nsf": ("nsf", 2000), "nsf-large": ("nsf", 50000)}
SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


@contextmanager
def busy_processes(n: int, seconds: float) -> Iterator[None]:
    """``n`` processes spinning on a core each, for at most ``seconds``; stopped on exit."""
    code = SPIN.format(seconds=seconds)
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]
    try:
        time.sleep(0.5 if n else 0.0)  # let them start spinning
        yield
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def machine_busy() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from ``/proc/stat``."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return None
    fields = [float(v) for v in stat.read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return (sum(fields) - idle) / tick, sum(fields) / tick


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def make_step(name: str) -> tuple[Callable[[], None], int]:
    """A training step of model ``name`` on a fixed batch, and its parameter count."""
    recipe, rows = MODELS[name]
    torch.manual_seed(0)
    flow = RECIPES[recipe](FEATURES, **sized_options(recipe, FEATURES, rows))
    params = list(flow.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, fused=True)
    x = torch.randn(BATCH, FEATURES)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (-flow.log_prob(x).mean()).backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()

    return step, sum(p.numel() for p in params)


def timed(step: Callable[[], None], threads: int, n: int) -> tuple[float, float]:
    """Milliseconds per step over ``n`` steps with ``threads`` threads, and the CPU seconds
    the process got per wall-clock second and thread (what the trainer's warning reads)."""
    torch.set_num_threads(threads)
    for _ in range(2):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        step()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return wall / n * 1e3, cpu / wall / threads


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1,2", help="thread counts, the first the reference")
    parser.add_argument("--loads", default="0,1,2", help="busy background processes per block")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--max-load-seconds", type=float, default=900.0)
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    loads = [int(k) for k in args.loads.split(",")]
    names = args.models.split(",")
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    steps = {name: make_step(name) for name in names}
    previous = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{cores} cores, torch {torch.__version__} (default {previous} threads), batch {BATCH}, "
        f"{FEATURES} features, {args.rounds} rounds of {args.steps} steps, "
        f"load average at the start {os.getloadavg()[0]:.2f}; train.threads: 0 resolves to "
        f"{auto_threads(current=previous)} here"
    )
    head = " | ".join(f"{t} thr (ms/step)" for t in threads)
    ratios = " | ".join(f"{t}/{threads[0]} thr" for t in threads[1:])
    shares = " | ".join(f"CPU/thread, {t} thr" for t in threads)
    print(f"| load | others' CPU | model | parameters | {head} | {ratios} | {shares} |")
    print("|---" * (3 + 3 * len(threads)) + "|")
    rows = []
    try:
        for load in loads:
            times: dict[tuple[str, int], list[float]] = {}
            cpu: dict[tuple[str, int], list[float]] = {}
            with busy_processes(load, args.max_load_seconds):
                machine0, own0, wall0 = machine_busy(), own_cpu(), time.perf_counter()
                for r in range(args.rounds):
                    for name, (step, _) in steps.items():
                        for t in threads if r % 2 == 0 else threads[::-1]:
                            ms, share = timed(step, t, args.steps)
                            times.setdefault((name, t), []).append(ms)
                            cpu.setdefault((name, t), []).append(share)
                machine1, own1, wall1 = machine_busy(), own_cpu(), time.perf_counter()
            others = "-"
            if machine0 is not None and machine1 is not None:
                busy = machine1[0] - machine0[0] - (own1 - own0)
                others = f"{100 * busy / ((wall1 - wall0) * (cores or 1)):.0f} %"
            for name, (_, n_params) in steps.items():
                ms = {t: statistics.median(times[name, t]) for t in threads}
                share = {t: statistics.median(cpu[name, t]) for t in threads}
                ratio = {
                    t: statistics.median(
                        a / b for a, b in zip(times[name, t], times[name, threads[0]], strict=True)
                    )
                    for t in threads[1:]
                }
                rows.append(
                    {"load": load, "model": name, "parameters": n_params, "ms": ms,
                     "ratio": ratio, "cpu_per_thread": share, "others": others}
                )  # fmt: skip
                cells = " | ".join(f"{ms[t]:.1f}" for t in threads)
                rcells = " | ".join(f"{ratio[t]:.2f}x" for t in threads[1:])
                scells = " | ".join(f"{share[t]:.2f}" for t in threads)
                lead = f"| {load} | {others} | {name} | {n_params:,}"
                print(f"{lead} | {cells} | {rcells} | {scells} |", flush=True)
    finally:
        torch.set_num_threads(previous)
    return rows


if __name__ == "__main__":
    main()
