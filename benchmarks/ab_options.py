"""A/B of speed options, interleaved, as ratios: fused AdamW against plain Adam for a
training step, in-place against out-of-place activations and a compiled against an eager
evaluation ``log_prob``; and for Residual Flows trained with the exact log-det, the Jacobian
built in the forward pass (``LipschitzMLP.forward_with_jacobian``) against one backward pass
per dimension (``rowwise_jacobian``); with ``--glow``, a compiled against an eager training
step of the MNIST Glow (``configs/images/glow-mnist-3h.yaml``'s model, batch 64).

    python benchmarks/ab_options.py [--rounds 12] [--threads 1] [--glow]

Models: ``maf(8, layers=5, hidden=(128, 128), batch_norm=False)`` and ``realnvp(8,
couplings=8, hidden=(128, 128))`` (the MAF and RealNVP 8-D rows of ``benchmarks/peers.py``).
Training batch 512, evaluation batch 4096. Residual Flows: ``configs/toy/resflow-checkerboard.yaml``
(2-D, 30 blocks of 2 x 128 ELU) and an 8-D ``resflow(8, blocks=10, hidden=(128, 128, 128))``,
batch 256. Prints the median per-round ratio (option / baseline; below 1 is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from flowforge.models import glow, maf, realnvp, resflow
from flowforge.nn.mlp import ACTIVATIONS, INPLACE_SAFE
from flowforge.transforms.residual import LipschitzMLP


def _set_inplace(module: torch.nn.Module, inplace: bool) -> None:
    """Switches the activations :func:`flowforge.nn.mlp.make_activation` made in place."""
    safe = tuple(ACTIVATIONS[name] for name in INPLACE_SAFE)
    for m in module.modules():
        if isinstance(m, safe):
            m.inplace = inplace


MODELS = {
    "maf8": lambda: maf(8, layers=5, hidden=(128, 128), batch_norm=False),
    "realnvp8": lambda: realnvp(8, couplings=8, hidden=(128, 128)),
}


RESFLOWS = {  # name: (features, builder); resflow2 is the checkerboard config's model
    "resflow2": (2, lambda: resflow(2, 30, (128, 128), activation="elu", exact_train=True)),
    "resflow8": (8, lambda: resflow(8, 10, (128, 128, 128), activation="elu", exact_train=True)),
}


class _RowwiseOnly(torch.nn.Module):
    """A ``LipschitzMLP`` seen without its ``forward_with_jacobian``: the generic path."""

    def __init__(self, g: LipschitzMLP) -> None:
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        return self.g(x, context)


def _rowwise(flow: torch.nn.Module) -> torch.nn.Module:
    blocks = [m for m in flow.modules() if isinstance(getattr(m, "g", None), LipschitzMLP)]
    for block in blocks:
        block.g = _RowwiseOnly(block.g)
    return flow


def _training_step(
    flow: torch.nn.Module,
    opt: torch.optim.Optimizer,
    x: torch.Tensor,
    log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Callable[[], None]:
    """A maximum-likelihood step on ``x`` through ``log_prob`` (default ``flow.log_prob``),
    run once to warm up (and to compile, for a compiled ``log_prob``)."""
    density = log_prob or flow.log_prob

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        (-density(x).mean()).backward()
        opt.step()

    step()
    return step


def _glow_compiled_ratio(rounds: int) -> float:
    """Compiled / eager training step of the MNIST Glow (``glow-mnist-3h.yaml``'s model)."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (64, 1, 28, 28)).float()  # 8-bit pixel values, as the loader's
    options = {"scales": 2, "depth": 8, "hidden_channels": 128, "alpha": 1e-6}
    eager_flow, compiled_flow = glow((1, 28, 28), **options), glow((1, 28, 28), **options)
    for f in (eager_flow, compiled_flow):
        f.log_prob(x)  # ActNorm's data-dependent start, before compiling
    fast = torch.compile(compiled_flow.log_prob, dynamic=False)
    eager = _training_step(eager_flow, _adamw(eager_flow), x)
    compiled = _training_step(compiled_flow, _adamw(compiled_flow), x, fast)
    return _ratio(eager, compiled, rounds, 3)


def _adamw(flow: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW(flow.parameters(), 1e-3, fused=True)


def _ratio(a: Callable[[], object], b: Callable[[], object], rounds: int, reps: int) -> float:
    """Median over rounds of time(b) / time(a), a and b run in turn."""
    ratios = []
    for _ in range(rounds):
        times = []
        for fn in (a, b):
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            times.append(time.perf_counter() - start)
        ratios.append(times[1] / times[0])
    return statistics.median(ratios)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled A/B")
    parser.add_argument("--glow", action="store_true", help="add the MNIST Glow's compiled step")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        "| model | fused AdamW / Adam (step) | in-place / out-of-place activations "
        "(eval log_prob) | compiled / eager (eval log_prob) |"
    )
    print("|---|---|---|---|")
    for name, make in MODELS.items():
        torch.manual_seed(0)
        x = torch.randn(512, 8)
        plain, fused = make(), make()
        steps = [
            _training_step(plain, torch.optim.Adam(plain.parameters(), 1e-3), x),
            _training_step(fused, torch.optim.AdamW(fused.parameters(), 1e-3, fused=True), x),
        ]
        adam = _ratio(steps[0], steps[1], args.rounds, 10)
        flow = make().eval()
        xe = torch.randn(4096, 8)

        def density(inplace: bool, flow=flow, xe=xe) -> None:
            _set_inplace(flow, inplace)
            with torch.no_grad():
                flow.log_prob(xe)

        inplace = _ratio(lambda: density(False), lambda: density(True), args.rounds, 5)
        compiled = "-"
        if not args.no_compile:
            flow = make().eval()
            xe = torch.randn(4096, 8)
            fast = torch.compile(flow.log_prob, dynamic=False)
            with torch.no_grad():
                fast(xe)
                eager, compiled_fn = flow.log_prob, fast
                ratio = _ratio(
                    lambda f=eager, v=xe: f(v), lambda f=compiled_fn, v=xe: f(v), args.rounds, 5
                )
            compiled = f"{ratio:.2f}"
        print(f"| {name} | {adam:.2f} | {inplace:.2f} | {compiled} |")
    print("\n| model | forward Jacobian / row-wise backward passes (exact log-det training step) |")
    print("|---|---|")
    for name, (dim, make) in RESFLOWS.items():
        torch.manual_seed(0)
        x = torch.randn(256, dim) * 2
        flows = (make(), _rowwise(make()))
        steps = [_training_step(f, torch.optim.Adam(f.parameters(), 1e-3), x) for f in flows]
        print(f"| {name} | {_ratio(steps[1], steps[0], args.rounds, 3):.2f} |")
    if args.glow:
        ratio = _glow_compiled_ratio(args.rounds)
        print("\n| model | compiled / eager (training step) |\n|---|---|")
        print(f"| glow-mnist | {ratio:.2f} |")


if __name__ == "__main__":
    main()
