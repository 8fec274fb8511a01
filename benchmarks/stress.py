"""Numerics under hard parameters: the conformance kit's stress sweep, and peers side by side.

One command (see ``docs/reliability.md``, "Numerics under hard parameters")::

    PYTHONPATH=src .venv/bin/python benchmarks/stress.py            # peers + every case
    PYTHONPATH=src .venv/bin/python benchmarks/stress.py --cases 'spline|sos' --no-peers

Part 1 (peers): one layer of each kind shared with zuko and nflows (4 features, MLP/MADE 2x32,
rational-quadratic spline with 8 bins; flowforge and nflows on [-3, 3], zuko's fixed [-5, 5]),
every parameter perturbed by ``p`` (``perturb_parameters``, seed 1), 10,000 inputs from
N(0, 2^2), float32: the largest round-trip error ``|f^-1(f(x)) - x|`` and log-det mismatch
``|ladj_inv + ladj|``. Part 2: :func:`flowforge.testing.stress.stress` over the registered
cases, as a table.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowforge.nn import MLP
from flowforge.testing import perturb_parameters
from flowforge.testing.stress import format_stress, stress
from flowforge.transforms import (
    Affine,
    Coupling,
    MaskedAutoregressive,
    RationalQuadraticSpline,
    half_mask,
)

D, HIDDEN, BINS, BOUND = 4, 32, 8, 3.0
Pair = Callable[[Tensor], tuple[Tensor, Tensor, Tensor, Tensor]]  # x -> z, ladj, x2, ladj_inv


def _mlp(a: int, b: int) -> MLP:
    return MLP(a, b, (HIDDEN, HIDDEN), "relu")


def flowforge_layer(kind: str, raw_bound: float | None = 0.5 * 6.907755) -> tuple[nn.Module, Pair]:
    spline = RationalQuadraticSpline(BINS, BOUND, raw_bound=raw_bound)
    t = {
        "spline_coupling": lambda: Coupling(half_mask(D), _mlp, spline),
        "spline_ar": lambda: MaskedAutoregressive(D, spline, (HIDDEN, HIDDEN)),
        "affine_coupling": lambda: Coupling(half_mask(D), _mlp, Affine()),
        "maf": lambda: MaskedAutoregressive(D, Affine(), (HIDDEN, HIDDEN)),
    }[kind]()

    def run(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z, ladj = t(x)
        x2, ladj_inv = t.inverse(z)
        return z, ladj, x2, ladj_inv

    return t, run


def zuko_layer(kind: str) -> tuple[nn.Module, Pair]:
    import zuko

    h = (HIDDEN, HIDDEN)
    flow = {
        "spline_coupling": lambda: zuko.flows.NSF(
            D, transforms=1, bins=BINS, hidden_features=h, passes=2
        ),
        "spline_ar": lambda: zuko.flows.NSF(D, transforms=1, bins=BINS, hidden_features=h),
        "affine_coupling": lambda: zuko.flows.RealNVP(D, transforms=1, hidden_features=h),
        "maf": lambda: zuko.flows.MAF(D, transforms=1, hidden_features=h),
    }[kind]()

    def run(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        t = flow.transform()
        z, ladj = t.call_and_ladj(x)
        x2 = t.inv(z)
        return z, ladj, x2, t.inv.log_abs_det_jacobian(z, x2)

    return flow, run


def nflows_layer(kind: str) -> tuple[nn.Module, Pair]:
    from nflows import transforms
    from nflows.nn.nets import ResidualNet

    mask = (torch.arange(D) >= D // 2).int()  # 1 = transformed in nflows

    def net(i: int, o: int) -> nn.Module:
        return ResidualNet(i, o, HIDDEN, num_blocks=1)

    t = {
        "spline_coupling": lambda: transforms.PiecewiseRationalQuadraticCouplingTransform(
            mask, net, num_bins=BINS, tails="linear", tail_bound=BOUND
        ),
        "spline_ar": lambda: transforms.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
            D, HIDDEN, num_bins=BINS, tails="linear", tail_bound=BOUND, use_residual_blocks=False
        ),
        "affine_coupling": lambda: transforms.AffineCouplingTransform(mask, net),
        "maf": lambda: transforms.MaskedAffineAutoregressiveTransform(
            D, HIDDEN, use_residual_blocks=False
        ),
    }[kind]()

    def run(x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        z, ladj = t(x)
        x2, ladj_inv = t.inverse(z)
        return z, ladj, x2, ladj_inv

    return t, run


def measure(build: Callable[[], tuple[nn.Module, Pair]], p: float) -> str:
    torch.manual_seed(0)
    try:
        module, run = build()
    except ImportError:
        return "not installed"
    perturb_parameters(module, p, seed=1)
    module.eval()
    x = 2 * torch.randn(10000, D, generator=torch.Generator().manual_seed(2))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, ladj, x2, ladj_inv = run(x)
    except Exception as e:  # a peer's failure is reported, not fatal
        return type(e).__name__
    rt = (x2 - x).abs().nan_to_num(float("inf")).max().item()
    ld = (ladj + ladj_inv).abs().nan_to_num(float("inf")).max().item()
    return f"{rt:.1e} / {ld:.1e}"


def peers_table(perturbations: list[float]) -> str:
    rows = [
        "| layer | p | flowforge | flowforge, raw_bound=None (before) | zuko | nflows |",
        "|---|---|---|---|---|---|",
    ]
    for kind in ("spline_coupling", "spline_ar", "affine_coupling", "maf"):
        for p in perturbations:
            cells = [
                measure(lambda k=kind: flowforge_layer(k), p),
                measure(lambda k=kind: flowforge_layer(k, None), p) if "spline" in kind else "",
                measure(lambda k=kind: zuko_layer(k), p),
                measure(lambda k=kind: nflows_layer(k), p),
            ]
            rows.append(f"| {kind} | {p:g} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=None, help="regular expression on case names")
    parser.add_argument("--perturbations", default="0.1,0.3,0.5,1.0")
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-cases", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    perturbations = [float(p) for p in args.perturbations.split(",")]
    if not args.no_peers:
        print("float32, 10,000 inputs from N(0, 2^2): round trip / log-det mismatch (nats)\n")
        print(peers_table([p for p in perturbations if p >= 0.3]) + "\n")
    if not args.no_cases:
        start = time.perf_counter()
        results = stress(args.cases, perturbations, [float(s) for s in args.scales.split(",")])
        print(format_stress(results))
        print(f"\n{len(results)} runs in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
