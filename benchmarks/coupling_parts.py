"""Where an eager affine flow's time goes beyond the bare matrix products (issue 31, item 1).

    python benchmarks/coupling_parts.py [--task realnvp8] [--rounds 7]

Times, with the process's own CPU clock (``time.process_time``, 1 thread: robust to other
processes on a shared machine), the pieces of one coupling layer of the task's flowforge model
from ``benchmarks/peers.py`` without gradients: the conditioner (the same MLP as the floor's),
the reshape of its output, the affine transformer, the gathers of the two halves, the scatter of
the output and the log-determinant sum; then the whole flow's ``log_prob`` against the floor's
(``Ref``: the conditioners' matrix products alone) without gradients, and forward plus backward.
Medians over rounds of many calls, in microseconds; the last column is the share of one
coupling's time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import peers  # noqa: E402


def per_call_us(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Median over ``rounds`` of the process CPU time per call, in microseconds."""
    for _ in range(max(calls // 10, 5)):
        fn()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            fn()
        times.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="realnvp8", choices=("realnvp2", "realnvp8"))
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    task = peers.TASKS[args.task]
    flow = peers.build_flowforge(args.task).module
    ref = peers.build_ref(args.task).module
    coupling = flow.transform.transforms[0]
    x = torch.randn(task.batch, *task.event_shape)
    x_a, x_b = x[:, coupling.idx_a], x[:, coupling.idx_b]
    raw = coupling.conditioner(x_a, None)
    params = coupling._params(x_a, None)

    def scatter() -> None:
        y = torch.empty_like(x)
        y[:, coupling.idx_a] = x_a
        y[:, coupling.idx_b] = x_b

    parts = {
        "conditioner (MLP)": lambda: coupling.conditioner(x_a, None),
        "reshape of its output": lambda: raw.reshape(x.shape[0], -1, 2).movedim(2, -1),
        "affine transformer": lambda: coupling.transformer(x_b, params),
        "gather of the halves": lambda: (x[:, coupling.idx_a], x[:, coupling.idx_b]),
        "scatter of the output": scatter,
        "log-det sum": lambda: x_b.reshape(x.shape[0], -1).sum(1),
        "whole coupling": lambda: coupling(x),
    }
    print(f"{args.task}: one coupling, batch {task.batch}, no gradients, 1 thread")
    with torch.no_grad():
        times = {name: per_call_us(fn, 2000, args.rounds) for name, fn in parts.items()}
    whole = times["whole coupling"]
    print("| part | us | share |\n|---|---|---|")
    for name, us in times.items():
        print(f"| {name} | {us:.1f} | {us / whole:.0%} |")

    def step(model: Callable[[torch.Tensor], torch.Tensor]) -> None:
        (-model(x).mean()).backward()

    print(f"\n{args.task}: the whole flow against the floor (ref), 1 thread")
    print("| pass | flowforge us | ref us | ratio |\n|---|---|---|---|")
    with torch.no_grad():
        nograd = [per_call_us(lambda m=m: m(x), 200, args.rounds) for m in (flow.log_prob, ref)]
    train = [per_call_us(lambda m=m: step(m), 100, args.rounds) for m in (flow.log_prob, ref)]
    for name, (a, b) in (("log_prob, no gradients", nograd), ("forward + backward", train)):
        print(f"| {name} | {a:.0f} | {b:.0f} | {a / b:.2f} |")


if __name__ == "__main__":
    main()
