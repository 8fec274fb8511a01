"""Side-by-side benchmark: flowforge against zuko, nflows, normflows and torchflows.

One command (see ``docs/benchmarks.md``)::

    .venv/bin/python benchmarks/peers.py --out benchmarks/results/peers.json

For every task the same architecture is built in every library as closely as each allows
(``ARCHITECTURE`` below says where they differ), from the same seed, and trained with Adam on
the same batches in the same order. "ref" is the practical floor: the same matrix products and
activations as a bare ``nn.Linear`` chain, the same loss shape and the same Adam step, with no
flow logic at all.

Figures, per task and library:
- training step: median wall time of ``steps_per_round`` steps per round, libraries interleaved
  in rounds (A B C ... then rotated), with the ratio to ref and to the fastest peer taken per
  round and then the median (and min-max spread) over rounds;
- log_prob and sampling throughput (points per second, ``torch.no_grad``), also interleaved;
- peak memory of one training step (parameters, gradients, Adam state, activations and
  temporaries), from ``torch.profiler``'s memory timeline;
- test NLL after the same number of steps on the same batches;
- NLL against steps (``--pace-steps``, default 100, 200 and 2,000): for every vector task a
  fresh model per library and seed (``--pace-seeds``), trained on the same batches, its test NLL
  and its cumulative training time (evaluations excluded) at each of those steps; mean and
  standard deviation over the seeds, and flowforge's difference to the best peer;
- for 2-D tasks, ``sum exp(log_prob) dA`` on a fine grid (a density must integrate to 1).
The CPU time used by other processes during every timed block is recorded (the machine is
shared): ``other_cpu`` is the share of the cores not used by this process, averaged per block.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from torch import Tensor, nn

PEERS = ("zuko", "nflows", "normflows", "torchflows")
LIBRARIES = ("ref", "flowforge", *PEERS)
COMPILED = "flowforge+compile"
HIDDEN = 128
BINS = 8
BOUND = 5.0  # spline interval [-5, 5] in every library (zuko's is fixed at 5)

ARCHITECTURE = {
    "maf8": "8-D gmm8, 5 affine MADE layers (2x128 ReLU), order reversed between layers",
    "realnvp2": "2-D moons, 8 affine couplings (MLP 2x128 ReLU), alternating masks",
    "realnvp8": "8-D gmm8, 8 affine couplings (MLP 2x128 ReLU), alternating (odd/even) masks",
    "nsf_c8": "8-D gmm8, 8 RQ-spline couplings (8 bins, B=5, MLP 2x128), halves alternating",
    "nsf_ar8": "8-D gmm8, 8 RQ-spline MADE layers (8 bins, B=5, MADE 2x128), reversed orders",
    "glow": "MNIST 1x28x28 (dequantized, logit), squeezed once to 4x14x14 in the data for "
    "both libraries, one level of K steps "
    "(actnorm, invertible 1x1 conv, affine coupling with a 3x3-1x1-3x3 conv net of C_h)",
}

DIFFERENCES = {
    "flowforge": "log-scale b*tanh(a/b), b=5; conditioners start at output 0 "
    "(antisymmetric last layers)",
    "zuko": "log-scale soft-clamped exp(a/(1+|a|/ln 1e3)); flow() rebuilt per call (included); "
    "PyTorch default init",
    "nflows": "MAF: scale softplus(a)+1e-3; coupling: scale sigmoid(a+2)+1e-3 (<= 1.001, "
    "contraction only, as released in 0.14); linear spline tails",
    "normflows": "coupling: unbounded exp(a); Glow: GlowBlock's default sigmoid(a+2) scale, < 1 "
    "towards the latent, so its coupling log-det is never positive (benchmarks/glow_nll_check.py); "
    "MAF: sigmoid(a+2)+1e-3, each layer wrapped in Reverse so that log_prob is one pass; "
    "non-residual MADE has one activation fewer; linear spline tails",
    "torchflows": "its architectures as shipped: an extra ActNorm per layer and ElementwiseAffine "
    "at both ends; Tanh in its MADE/MLP conditioners",
    "ref": "bare Linear-ReLU-Linear-ReLU-Linear chains of the same shapes, loss 0.5|h|^2",
    COMPILED: "the flowforge model, training step's log_prob through torch.compile (inductor)",
}


@dataclass
class Task:
    name: str
    dataset: str
    event_shape: tuple[int, ...]
    batch: int
    n_train: int = 20000
    n_test: int = 5000
    options: dict = field(default_factory=dict)


TASKS = {
    "maf8": Task("maf8", "gmm8", (8,), 512),
    "realnvp2": Task("realnvp2", "moons", (2,), 512),
    "realnvp8": Task("realnvp8", "gmm8", (8,), 512),
    "nsf_c8": Task("nsf_c8", "gmm8", (8,), 512),
    "nsf_ar8": Task("nsf_ar8", "gmm8", (8,), 512),
    "glow": Task("glow", "mnist", (4, 14, 14), 64, n_train=2048, n_test=512),
}


@dataclass
class Model:
    """What the harness needs from a library: parameters, a loss, a density and a sampler."""

    module: nn.Module
    log_prob: Callable[[Tensor], Tensor]
    sample: Callable[[int], Tensor]
    train_log_prob: Callable[[Tensor], Tensor] | None = None  # the loss's density, if not log_prob


# --------------------------------------------------------------------------------- builders


def _mlp(i: int, o: int, layers: int = 2, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    sizes = [i, *([HIDDEN] * layers), o]
    mods: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if k:
            mods.append(act())
        mods.append(nn.Linear(a, b))
    return nn.Sequential(*mods)


class _ContextMLP(nn.Module):
    """A plain MLP called as ``net(x, context)`` (the nflows/normflows coupling convention)."""

    def __init__(self, i: int, o: int) -> None:
        super().__init__()
        self.net = _mlp(i, o)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.net(x)


def _ref_shapes(task: str) -> list[tuple[int, int]]:
    """(in, out) of every conditioner of the task, in order."""
    d = TASKS[task].event_shape[0]
    half = d // 2
    return {
        "maf8": [(d, 2 * d)] * 5,
        "realnvp2": [(d - half, 2 * half), (half, 2 * (d - half))] * 4,
        "realnvp8": [(half, 2 * half)] * 8,
        "nsf_c8": [(half, half * (3 * BINS - 1))] * 8,
        "nsf_ar8": [(d, d * (3 * BINS - 1))] * 8,
    }[task]


class Ref(nn.Module):
    """The floor: the conditioners' matrix products and activations, chained through ``h``."""

    def __init__(self, task: str) -> None:
        super().__init__()
        self.d = TASKS[task].event_shape[0]
        self.nets = nn.ModuleList(_mlp(i, o) for i, o in _ref_shapes(task))

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for net in self.nets:
            i = net[0].in_features
            h = net(h[:, :i])[:, : self.d]  # every conditioner has at least d outputs
        return -0.5 * h.square().sum(1)


def build_ref(task: str) -> Model:
    m = Ref(task)
    d = m.d
    return Model(m, m, lambda n: m(torch.randn(n, d)))


def build_flowforge(task: str) -> Model:
    from flowforge.distributions import StandardNormal
    from flowforge.flows import Flow
    from flowforge.models import maf, realnvp
    from flowforge.nn.mlp import MLP
    from flowforge.transforms import (
        Compose,
        Coupling,
        MaskedAutoregressive,
        RationalQuadraticSpline,
        half_mask,
    )

    d = TASKS[task].event_shape[0]
    if task == "maf8":
        flow = maf(d, layers=5, hidden=(HIDDEN, HIDDEN), order="alternate", batch_norm=False)
    elif task in ("realnvp2", "realnvp8"):
        flow = realnvp(d, couplings=8, hidden=(HIDDEN, HIDDEN), mask="alternating")
    elif task == "nsf_c8":
        # the nsf recipe adds LU linear layers between steps; the peers' do not, so the same
        # spline couplings are assembled here without them
        flow = Flow(
            Compose(
                Coupling(
                    half_mask(d, first=i % 2 == 0),
                    lambda a, b: MLP(a, b, (HIDDEN, HIDDEN)),
                    RationalQuadraticSpline(BINS, BOUND),
                )
                for i in range(8)
            ),
            StandardNormal(d),
        )
    elif task == "nsf_ar8":
        flow = Flow(
            Compose(
                MaskedAutoregressive(
                    d,
                    RationalQuadraticSpline(BINS, BOUND),
                    (HIDDEN, HIDDEN),
                    "natural" if i % 2 == 0 else "reversed",
                )
                for i in range(8)
            ),
            StandardNormal(d),
        )
    elif task == "glow":
        flow = _flowforge_glow()
    else:
        raise ValueError(f"unknown task {task!r}")
    return Model(flow, flow.log_prob, flow.sample)


def build_flowforge_compiled(task: str) -> Model:
    """flowforge with its training density under ``torch.compile`` (static shapes: one
    compilation for the training batch). Evaluation and sampling stay eager, so their figures
    repeat flowforge's; the compilation time is excluded (it happens in the warm-up steps)."""
    model = build_flowforge(task)
    model.train_log_prob = torch.compile(model.log_prob, dynamic=False)
    return model


def build_zuko(task: str) -> Model:
    import zuko

    d = TASKS[task].event_shape[0]
    hidden = (HIDDEN, HIDDEN)
    if task == "maf8":
        flow = zuko.flows.MAF(d, transforms=5, hidden_features=hidden)
    elif task in ("realnvp2", "realnvp8"):
        flow = zuko.flows.RealNVP(d, transforms=8, hidden_features=hidden)
    elif task == "nsf_c8":
        flow = zuko.flows.NSF(d, transforms=8, bins=BINS, hidden_features=hidden, passes=2)
    elif task == "nsf_ar8":
        flow = zuko.flows.NSF(d, transforms=8, bins=BINS, hidden_features=hidden)
    else:
        raise NotImplementedError(f"zuko has no {task} model")
    return Model(flow, lambda x: flow().log_prob(x), lambda n: flow().sample((n,)))


def build_nflows(task: str) -> Model:
    from nflows import distributions, flows, transforms
    from nflows.utils import create_alternating_binary_mask

    d = TASKS[task].event_shape[0]

    def half(i: int) -> Tensor:  # 1 = transformed in nflows
        m = torch.zeros(d)
        m[d // 2 :] = 1
        return m if i % 2 == 0 else 1 - m

    layers: list[nn.Module] = []
    if task == "maf8":
        for _ in range(5):
            layers += [
                transforms.MaskedAffineAutoregressiveTransform(
                    d, HIDDEN, num_blocks=1, use_residual_blocks=False
                ),
                transforms.ReversePermutation(d),
            ]
    elif task in ("realnvp2", "realnvp8"):
        layers = [
            transforms.AffineCouplingTransform(
                create_alternating_binary_mask(d, even=i % 2 == 0), _ContextMLP
            )
            for i in range(8)
        ]
    elif task == "nsf_c8":
        layers = [
            transforms.PiecewiseRationalQuadraticCouplingTransform(
                half(i), _ContextMLP, num_bins=BINS, tails="linear", tail_bound=BOUND
            )
            for i in range(8)
        ]
    elif task == "nsf_ar8":
        for _ in range(8):
            layers += [
                transforms.MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    d,
                    HIDDEN,
                    num_bins=BINS,
                    tails="linear",
                    tail_bound=BOUND,
                    num_blocks=1,
                    use_residual_blocks=False,
                ),
                transforms.ReversePermutation(d),
            ]
    else:
        raise NotImplementedError(f"nflows has no {task} model")
    flow = flows.Flow(transforms.CompositeTransform(layers), distributions.StandardNormal([d]))
    return Model(flow, flow.log_prob, flow.sample)


def _normflows_reverse(d: int) -> nn.Module:
    import normflows as nf

    p = nf.flows.Permute(d, mode="shuffle")
    p.perm.copy_(torch.arange(d - 1, -1, -1))
    p.inv_perm.copy_(torch.arange(d - 1, -1, -1))
    return p


def build_normflows(task: str) -> Model:
    import normflows as nf
    from normflows.flows.neural_spline.autoregressive import (
        MaskedPiecewiseRationalQuadraticAutoregressive,
    )
    from normflows.flows.neural_spline.coupling import PiecewiseRationalQuadraticCoupling

    if task == "glow":
        return _normflows_glow()
    d = TASKS[task].event_shape[0]
    layers: list[nn.Module] = []
    if task == "maf8":
        for _ in range(5):
            layers += [
                nf.flows.Reverse(
                    nf.flows.MaskedAffineAutoregressive(
                        d, HIDDEN, num_blocks=1, use_residual_blocks=False
                    )
                ),
                _normflows_reverse(d),
            ]
    elif task in ("realnvp2", "realnvp8"):
        for i in range(8):
            n_in = (d + 1) // 2 if i % 2 == 0 else d // 2
            n_out = d - n_in
            layers.append(
                nf.flows.AffineCouplingBlock(
                    nf.nets.MLP([n_in, HIDDEN, HIDDEN, 2 * n_out], init_zeros=True),
                    split_mode="checkerboard" if i % 2 == 0 else "checkerboard_inv",
                )
            )
    elif task == "nsf_c8":
        for i in range(8):
            m = torch.zeros(d)
            m[d // 2 :] = 1
            layers.append(
                nf.flows.Reverse(
                    PiecewiseRationalQuadraticCoupling(
                        m if i % 2 == 0 else 1 - m,
                        _ContextMLP,
                        num_bins=BINS,
                        tails="linear",
                        tail_bound=BOUND,
                    )
                )
            )
    elif task == "nsf_ar8":
        for _ in range(8):
            layers += [
                nf.flows.Reverse(
                    MaskedPiecewiseRationalQuadraticAutoregressive(
                        d,
                        HIDDEN,
                        num_bins=BINS,
                        tails="linear",
                        tail_bound=BOUND,
                        num_blocks=1,
                        use_residual_blocks=False,
                    )
                ),
                _normflows_reverse(d),
            ]
    else:
        raise NotImplementedError(f"normflows has no {task} model")
    flow = nf.NormalizingFlow(nf.distributions.DiagGaussian(d, trainable=False), layers)
    return Model(flow, flow.log_prob, lambda n: flow.sample(n)[0])


def build_torchflows(task: str) -> Model:
    from torchflows.bijections.finite.autoregressive import architectures as arch
    from torchflows.flows import Flow

    d = TASKS[task].event_shape[0]
    # its MADE and its coupling MLP both count linear layers: 3 = 2 hidden layers
    made = {"n_hidden": HIDDEN, "n_layers": 3}
    mlp = {"n_hidden": HIDDEN, "n_layers": 3}
    if task == "maf8":
        bij = arch.MAF(d, n_layers=5, conditioner_kwargs=made)
    elif task in ("realnvp2", "realnvp8"):
        bij = arch.RealNVP(d, n_layers=8, conditioner_kwargs=mlp)
    elif task == "nsf_c8":
        bij = arch.CouplingRQNSF(d, n_layers=8, conditioner_kwargs=mlp)
    elif task == "nsf_ar8":
        bij = arch.MaskedAutoregressiveRQNSF(d, n_layers=8, conditioner_kwargs=made)
    else:
        raise NotImplementedError(f"torchflows has no {task} model")
    flow = Flow(bij)
    return Model(flow, flow.log_prob, lambda n: flow.sample(n))


GLOW = {"depth": 4, "hidden": 64}


def _glow_shape() -> tuple[int, int]:
    return GLOW["depth"], GLOW["hidden"]


def _flowforge_glow() -> nn.Module:
    from flowforge.distributions import StandardNormal
    from flowforge.flows import Flow
    from flowforge.models.glow import glow_step
    from flowforge.transforms import Compose

    depth, hidden = _glow_shape()
    return Flow(Compose(glow_step(4, hidden) for _ in range(depth)), StandardNormal((4, 14, 14)))


class _NormflowsGlow(nn.Module):
    """normflows' Glow blocks on the squeezed input, standard normal base (no split)."""

    def __init__(self) -> None:
        import normflows as nf

        super().__init__()
        depth, hidden = _glow_shape()
        flows = [nf.flows.GlowBlock(4, hidden, split_mode="channel") for _ in range(depth)]
        base = nf.distributions.DiagGaussian((4, 14, 14), trainable=False)
        self.flow = nf.NormalizingFlow(base, flows)


def _normflows_glow() -> Model:
    m = _NormflowsGlow()
    return Model(m, m.flow.log_prob, lambda n: m.flow.sample(n)[0])


BUILDERS: dict[str, Callable[[str], Model]] = {
    "ref": build_ref,
    "flowforge": build_flowforge,
    "zuko": build_zuko,
    "nflows": build_nflows,
    "normflows": build_normflows,
    "torchflows": build_torchflows,
    "flowforge+compile": build_flowforge_compiled,
}

SUPPORTED = {
    "glow": ("flowforge", "normflows"),
}


def libraries_for(task: str, wanted: list[str]) -> list[str]:
    allowed = SUPPORTED.get(task, (*LIBRARIES, COMPILED))
    return [lib for lib in wanted if lib in allowed]


def available(lib: str) -> bool:
    if lib in ("ref", "flowforge", "flowforge+compile"):
        return True
    try:
        __import__(lib)
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------ data


def load_task_data(task: Task, seed: int) -> tuple[Tensor, Tensor]:
    from flowforge.data.registry import load_dataset

    if task.dataset == "mnist":
        splits = load_dataset("mnist", task.n_train, 16, task.n_test, seed=seed)

        # dequantize and take the logit once, so every library sees the same real-valued data
        def logit(x: Tensor, g: torch.Generator) -> Tensor:
            u = (x + torch.rand(x.shape, generator=g)) / 256  # x: integers 0..255
            u = 0.05 + 0.9 * u
            return torch.log(u) - torch.log1p(-u)

        def squeeze(x: Tensor) -> Tensor:  # (B, 1, 28, 28) -> (B, 4, 14, 14)
            b = x.shape[0]
            return x.reshape(b, 1, 14, 2, 14, 2).permute(0, 1, 3, 5, 2, 4).reshape(b, 4, 14, 14)

        g = torch.Generator().manual_seed(seed)
        return squeeze(logit(splits.train, g)), squeeze(logit(splits.test, g))
    splits = load_dataset(task.dataset, task.n_train, 16, task.n_test, seed=seed)
    return splits.train.float(), splits.test.float()


def scaled_task_data(task: Task, args: argparse.Namespace) -> tuple[Tensor, Tensor]:
    """The task's data, vector tasks multiplied by ``--data-scale`` (the NLL then shifts by
    ``-D log(scale)`` for every library alike)."""
    train, test = load_task_data(task, args.seed)
    if len(task.event_shape) == 1 and args.data_scale != 1.0:
        train, test = train * args.data_scale, test * args.data_scale
    return train, test


def batch_indices(n: int, batch: int, steps: int, seed: int) -> list[Tensor]:
    """The same sequence of minibatches for every library: epochs of a seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    out: list[Tensor] = []
    perm = torch.randperm(n, generator=g)
    pos = 0
    while len(out) < steps:
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=g), 0
        out.append(perm[pos : pos + batch])
        pos += batch
    return out


# ------------------------------------------------------------------------------ measurement


class CpuMeter:
    """Share of the machine's CPU used by other processes during a block of work."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.cores = psutil.cpu_count() or 1

    def __enter__(self) -> CpuMeter:
        self.t0 = time.perf_counter()
        self.sys0 = self.psutil.cpu_times()
        self.me0 = self.me.cpu_times()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        sys1, me1 = self.psutil.cpu_times(), self.me.cpu_times()

        def busy(t: object) -> float:
            return sum(getattr(t, k) for k in ("user", "nice", "system", "irq", "softirq"))

        mine = (me1.user - self.me0.user) + (me1.system - self.me0.system)
        total = busy(sys1) - busy(self.sys0)
        # share of all cores, in [0, 1]; 1 - mine/wall/cores is what was left to us
        self.other = max(total - mine, 0.0) / max(wall * self.cores, 1e-9)
        self.wall = wall


def make_step(model: Model, opt: torch.optim.Optimizer) -> Callable[[Tensor], float]:
    def step(x: Tensor) -> float:
        opt.zero_grad(set_to_none=True)
        loss = -(model.train_log_prob or model.log_prob)(x).mean()
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def summary(values: list[float]) -> dict:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def test_nll(model: Model, test: Tensor, chunk: int = 4096) -> float:
    with torch.no_grad():
        lps = [model.log_prob(test[i : i + chunk]) for i in range(0, len(test), chunk)]
    return float(-torch.cat(lps).mean())


def grid_mass(model: Model, lim: float = 6.0, n: int = 481) -> tuple[float, int]:
    """``sum exp(log_prob) dA`` on ``[-lim, lim]^2`` (midpoint rule) over the finite values, and
    the number of grid points whose log_prob is not finite (a density must have none)."""
    h = 2 * lim / n
    u = -lim + h / 2 + h * torch.arange(n, dtype=torch.float32)
    pts = torch.cartesian_prod(u, u)
    with torch.no_grad():
        lp = torch.cat([model.log_prob(pts[i : i + 8192]) for i in range(0, len(pts), 8192)])
    finite = torch.isfinite(lp)
    return float(torch.exp(lp[finite].double()).sum() * h * h), int((~finite).sum())


def run_task(task_name: str, libs: list[str], args: argparse.Namespace) -> dict:
    task = TASKS[task_name]
    train, test = scaled_task_data(task, args)
    total = args.warmup + args.rounds * args.steps_per_round
    batches = batch_indices(len(train), task.batch, total, args.seed)
    models: dict[str, Model] = {}
    steps: dict[str, Callable[[Tensor], float]] = {}
    for lib in libs:
        torch.manual_seed(args.seed)
        models[lib] = BUILDERS[lib](task_name)
        opt = torch.optim.Adam(models[lib].module.parameters(), lr=args.lr)
        steps[lib] = make_step(models[lib], opt)
    cursor = dict.fromkeys(libs, 0)
    losses: dict[str, list[float]] = {lib: [] for lib in libs}

    def train_block(lib: str, n: int) -> list[float]:
        times = []
        for _ in range(n):
            x = train[batches[cursor[lib]]]
            cursor[lib] += 1
            t0 = time.perf_counter()
            losses[lib].append(steps[lib](x))
            times.append(time.perf_counter() - t0)
        return times

    for lib in libs:
        train_block(lib, args.warmup)
    step_ms: dict[str, list[float]] = {lib: [] for lib in libs}
    other: list[float] = []
    for r in range(args.rounds):
        order = libs[r % len(libs) :] + libs[: r % len(libs)]
        for lib in order:
            with CpuMeter() as meter:
                times = train_block(lib, args.steps_per_round)
            step_ms[lib].append(1e3 * statistics.median(times))
            other.append(meter.other)

    result: dict = {"libraries": {}, "other_cpu": summary(other), "steps": total}
    peers = [lib for lib in libs if lib in PEERS]
    for lib in libs:
        row: dict = {"step_ms": summary(step_ms[lib])}
        row["params"] = sum(p.numel() for p in models[lib].module.parameters())
        if "ref" in libs:
            ratios = [a / b for a, b in zip(step_ms[lib], step_ms["ref"], strict=True)]
            row["ratio_ref"] = summary(ratios)
        if peers:
            best = [min(step_ms[p][r] for p in peers) for r in range(args.rounds)]
            row["ratio_best_peer"] = summary(
                [a / b for a, b in zip(step_ms[lib], best, strict=True)]
            )
        row["final_train_loss"] = statistics.fmean(losses[lib][-args.steps_per_round :])
        result["libraries"][lib] = row

    if args.memory:  # after the timed rounds, on the first batch again
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for lib in libs:
                mib = peak_memory_mib(steps[lib], train[batches[0]])
                result["libraries"][lib]["peak_mem_mb"] = mib

    # evaluation: NLL, throughputs (interleaved), 2-D mass
    flows = [lib for lib in libs if lib != "ref"]
    for lib in flows:
        models[lib].module.eval()
        row = result["libraries"][lib]
        row["test_nll"] = test_nll(models[lib], test)
        if len(task.event_shape) == 1 and task.event_shape[0] == 2:
            row["grid_mass"], row["grid_nonfinite"] = grid_mass(models[lib], n=args.grid)
    eval_x = test[: args.eval_batch]
    lp_rate: dict[str, list[float]] = {lib: [] for lib in flows}
    smp_rate: dict[str, list[float]] = {lib: [] for lib in flows}
    eval_other: list[float] = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r in range(args.eval_rounds):
            order = flows[r % len(flows) :] + flows[: r % len(flows)]
            for lib in order:
                m = models[lib]
                with CpuMeter() as meter:
                    t0 = time.perf_counter()
                    m.log_prob(eval_x)
                    t1 = time.perf_counter()
                    m.sample(len(eval_x))
                    t2 = time.perf_counter()
                lp_rate[lib].append(len(eval_x) / (t1 - t0))
                smp_rate[lib].append(len(eval_x) / (t2 - t1))
                eval_other.append(meter.other)
    result["eval_other_cpu"] = summary(eval_other)
    for lib in flows:
        row = result["libraries"][lib]
        row["log_prob_per_s"] = summary(lp_rate[lib])
        row["sample_per_s"] = summary(smp_rate[lib])
        if peers:
            best_lp = [max(lp_rate[p][r] for p in peers) for r in range(args.eval_rounds)]
            best_s = [max(smp_rate[p][r] for p in peers) for r in range(args.eval_rounds)]
            row["log_prob_vs_best_peer"] = summary(
                [a / b for a, b in zip(lp_rate[lib], best_lp, strict=True)]
            )
            row["sample_vs_best_peer"] = summary(
                [a / b for a, b in zip(smp_rate[lib], best_s, strict=True)]
            )
    return result


def pace_task(task_name: str, libs: list[str], args: argparse.Namespace) -> dict:
    """Test NLL against steps: for each seed and library a fresh model (``torch.manual_seed``
    of the seed), Adam at ``--lr`` on the seed's batches, evaluated at every step count of
    ``--pace-steps``; the training time to each step count is summed over the steps alone."""
    task = TASKS[task_name]
    train, test = scaled_task_data(task, args)
    marks = sorted(set(args.pace_steps))
    runs: dict[str, dict[str, list[list[float]]]] = {
        lib: {"test_nll": [], "train_s": []} for lib in libs
    }
    for seed in args.pace_seeds:
        batches = batch_indices(len(train), task.batch, marks[-1], seed)
        for lib in libs:
            torch.manual_seed(seed)
            model = BUILDERS[lib](task_name)
            step = make_step(model, torch.optim.Adam(model.module.parameters(), lr=args.lr))
            nll, secs, elapsed = [], [], 0.0
            for i, idx in enumerate(batches, 1):
                x = train[idx]
                t0 = time.perf_counter()
                step(x)
                elapsed += time.perf_counter() - t0
                if i in marks:
                    model.module.eval()
                    nll.append(test_nll(model, test))
                    model.module.train()
                    secs.append(elapsed)
            runs[lib]["test_nll"].append(nll)
            runs[lib]["train_s"].append(secs)

    def stats(rows: list[list[float]]) -> list[dict]:
        cols = list(zip(*rows, strict=True))
        return [
            {"mean": statistics.fmean(c), "sd": statistics.stdev(c) if len(c) > 1 else 0.0}
            for c in cols
        ]

    result: dict = {"steps": marks, "seeds": list(args.pace_seeds), "libraries": {}}
    for lib in libs:
        result["libraries"][lib] = {
            "test_nll": stats(runs[lib]["test_nll"]),
            "train_s": stats(runs[lib]["train_s"]),
            "runs": runs[lib],
        }
    peers = [lib for lib in libs if lib in PEERS]
    if "flowforge" in libs and peers:
        rows = result["libraries"]
        diffs = []
        for k in range(len(marks)):
            best = min(peers, key=lambda p: rows[p]["test_nll"][k]["mean"])
            ff, bp = rows["flowforge"]["test_nll"][k], rows[best]["test_nll"][k]
            diffs.append(
                {
                    "best_peer": best,
                    "minus_best_peer": ff["mean"] - bp["mean"],
                    "sd": math.hypot(ff["sd"], bp["sd"]),
                }
            )
        result["flowforge_vs_best_peer"] = diffs
    return result


def format_pace(name: str, res: dict, scale: float) -> str:
    marks = res["steps"]
    lines = [
        f"## {name}: test NLL against steps (mean ± sd over seeds {res['seeds']}; data scale "
        f"{scale:g}; in brackets the training seconds to that step, mean)",
        "| library | " + " | ".join(f"{m} steps" for m in marks) + " |",
        "|---|" + "---|" * len(marks),
    ]
    for lib, row in res["libraries"].items():
        cells = [
            f"{n['mean']:.3f} ± {n['sd']:.3f} [{t['mean']:.1f} s]"
            for n, t in zip(row["test_nll"], row["train_s"], strict=True)
        ]
        lines.append(f"| {lib} | " + " | ".join(cells) + " |")
    if "flowforge_vs_best_peer" in res:
        cells = [
            f"{d['minus_best_peer']:+.3f} ± {d['sd']:.3f} ({d['best_peer']})"
            for d in res["flowforge_vs_best_peer"]
        ]
        lines.append("| flowforge − best peer | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peak_memory_mib(step: Callable[[Tensor], float], x: Tensor) -> float:
    """Peak of the memory torch tracks during one training step, MiB.

    ``torch.profiler`` with ``profile_memory`` records every CPU allocation and free of the
    step; its memory timeline sums them by category (parameters, gradients, optimizer state,
    activations, temporaries) and the peak of the total over the step is returned.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(
        activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True
    ) as prof:
        step(x)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "memory.json")
        prof.export_memory_timeline(path, device="cpu")
        _, sizes = json.loads(Path(path).read_text())
    return max(sum(v) for v in sizes) / 2**20


def versions() -> dict:
    out = {"python": platform.python_version(), "machine": platform.processor()}
    for name in ("torch", "flowforge", *PEERS):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 0, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", default="maf8,realnvp2,realnvp8,nsf_c8,nsf_ar8,glow")
    p.add_argument("--libs", default=",".join(LIBRARIES))
    p.add_argument("--warmup", type=int, default=20, help="untimed steps per library first")
    p.add_argument("--rounds", type=int, default=20, help="interleaved timing rounds")
    p.add_argument("--steps-per-round", type=int, default=25)
    p.add_argument("--eval-rounds", type=int, default=5)
    p.add_argument("--eval-batch", type=int, default=4096)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--grid", type=int, default=481, help="grid points per axis of the 2-D check")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--pace-steps",
        type=_int_list,
        default=[100, 200, 2000],
        help="step counts of the NLL-against-steps comparison (vector tasks); '' skips it",
    )
    p.add_argument("--pace-seeds", type=_int_list, default=[0, 1, 2])
    p.add_argument(
        "--data-scale",
        type=float,
        default=1.0,
        help="multiply the vector tasks' data by this (0.3: data the flows must stretch)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help=f"add a {COMPILED!r} row: flowforge's training density under torch.compile",
    )
    p.add_argument("--no-memory", dest="memory", action="store_false")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    if any(n < 1 for n in args.pace_steps):
        p.error(f"--pace-steps: step counts should be positive, got {args.pace_steps}")
    if args.pace_steps and not args.pace_seeds:
        p.error("--pace-seeds: at least one seed is needed for --pace-steps")
    if not args.data_scale > 0:
        p.error(f"--data-scale: should be positive, got {args.data_scale}")
    warnings.filterwarnings("ignore", module="torchflows")
    torch.set_num_threads(args.threads)
    wanted = [lib for lib in args.libs.split(",") if lib]
    if args.compile:
        wanted.insert(wanted.index("flowforge") + 1 if "flowforge" in wanted else 0, COMPILED)
    unknown = sorted(set(wanted) - set(LIBRARIES) - {COMPILED})
    if unknown:
        p.error(f"--libs: unknown {unknown}; choose from {list(LIBRARIES)}")
    missing = [lib for lib in wanted if not available(lib)]
    if missing:
        print(f"skipping {missing}: not installed (pip install -e '.[bench]')", file=sys.stderr)
    wanted = [lib for lib in wanted if lib not in missing]
    report: dict = {
        "args": vars(args),
        "versions": versions(),
        "threads": torch.get_num_threads(),
        "loadavg_start": os.getloadavg(),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "architecture": ARCHITECTURE,
        "differences": DIFFERENCES,
        "tasks": {},
    }
    for name in [t for t in args.tasks.split(",") if t]:
        if name not in TASKS:
            p.error(f"--tasks: unknown {name!r}; choose from {sorted(TASKS)}")
        libs = libraries_for(name, wanted)
        t0 = time.perf_counter()
        report["tasks"][name] = run_task(name, libs, args)
        report["tasks"][name]["loadavg_end"] = os.getloadavg()
        report["tasks"][name]["wall_s"] = time.perf_counter() - t0
        print(format_task(name, report["tasks"][name]), flush=True)
        pace_libs = [lib for lib in libs if lib not in ("ref", COMPILED)]
        if args.pace_steps and len(TASKS[name].event_shape) == 1 and pace_libs:
            t0 = time.perf_counter()
            pace = pace_task(name, pace_libs, args)
            pace["wall_s"] = time.perf_counter() - t0
            report["tasks"][name]["pace"] = pace
            print(format_pace(name, pace, args.data_scale), flush=True)
    report["loadavg_end"] = os.getloadavg()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    return report


def _fmt(row: dict, key: str, spec: str) -> str:
    if key not in row or row[key] is None:
        return "-"
    v = row[key]
    if isinstance(v, dict):
        return f"{v['median']:{spec}} [{v['min']:{spec}}-{v['max']:{spec}}]"
    return f"{v:{spec}}"


def format_task(name: str, res: dict) -> str:
    lines = [
        f"## {name}: {ARCHITECTURE[name]} ({res['steps']} steps; other processes used "
        f"{100 * res['other_cpu']['median']:.0f}% of the CPU, median per block)",
        "| library | params | step ms | x ref | x best peer | log_prob/s | x best peer | sample/s "
        "| x best peer | peak MiB | test NLL | grid mass | non-finite |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lib, row in res["libraries"].items():
        lines.append(
            f"| {lib} | {_fmt(row, 'params', 'd')} | {_fmt(row, 'step_ms', '.2f')} "
            f"| {_fmt(row, 'ratio_ref', '.2f')} "
            f"| {_fmt(row, 'ratio_best_peer', '.2f')} | {_fmt(row, 'log_prob_per_s', '.3g')} "
            f"| {_fmt(row, 'log_prob_vs_best_peer', '.2f')} | {_fmt(row, 'sample_per_s', '.3g')} "
            f"| {_fmt(row, 'sample_vs_best_peer', '.2f')} | {_fmt(row, 'peak_mem_mb', '.1f')} "
            f"| {_fmt(row, 'test_nll', '.3f')} | {_fmt(row, 'grid_mass', '.4f')} "
            f"| {_fmt(row, 'grid_nonfinite', 'd')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
