"""Why the ``glow`` row of ``benchmarks/peers.py`` reports such different test NLLs.

flowforge's ``glow_step`` and normflows' ``GlowBlock`` are checked in two ways::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/glow_nll_check.py [--steps 170]

1. **Oracle.** On tiny 4x2x2 images (16 dimensions), in float64, each library's ``log_prob``
   is compared with ``log N(f(x)) + log|det J_f(x)|``, where ``f`` is the library's own map
   to the latent and ``J_f`` comes from ``torch.autograd.functional.jacobian``. This is done
   after the actnorm data-dependent initialisation and again after every parameter (the
   zero-initialised last convolutions included) is perturbed, so that every log-determinant
   term is exercised.
2. **Training.** The peers.py glow task itself (same data, batches, seed, Adam, lr) for
   ``--steps`` steps, with the test NLL at a few checkpoints, for flowforge, normflows as in
   peers.py (``scale_map="sigmoid"``) and normflows with ``scale_map="exp"``. At the end the
   test log-density is split into the base term and the actnorm, 1x1-convolution and coupling
   log-determinants (nats per image), which shows where the libraries differ.

The data are the logit of dequantized MNIST, evaluated in logit space (the logit's own
log-determinant is not added), so NLLs can be negative: a background pixel's values lie in an
interval of width 0.072, a density of up to +2.6 nats per dimension.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402

DEPTH, HIDDEN = peers.GLOW["depth"], peers.GLOW["hidden"]


def build(lib: str, shape: tuple[int, int, int], hidden: int = HIDDEN) -> nn.Module:
    """A K = DEPTH Glow level on ``shape`` with a standard normal base, as in peers.py.

    ``lib``: ``"flowforge"``, ``"normflows"`` (sigmoid scale, the peers.py model) or
    ``"normflows-exp"`` (the same with ``scale_map="exp"``)."""
    if lib == "flowforge":
        from flowforge.distributions import StandardNormal
        from flowforge.flows import Flow
        from flowforge.models.glow import glow_step
        from flowforge.transforms import Compose

        steps = Compose(glow_step(shape[0], hidden) for _ in range(DEPTH))
        return Flow(steps, StandardNormal(shape))
    import normflows as nf

    scale_map = {"normflows": "sigmoid", "normflows-exp": "exp"}[lib]
    blocks = [
        nf.flows.GlowBlock(shape[0], hidden, scale_map=scale_map, split_mode="channel")
        for _ in range(DEPTH)
    ]
    base = nf.distributions.DiagGaussian(shape, trainable=False)
    return nf.NormalizingFlow(base, blocks)


def parts(model: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The latent ``f(x)`` and the log-determinant of each kind of layer, per point."""
    ladj = {k: x.new_zeros(x.shape[0]) for k in ("actnorm", "conv1x1", "coupling")}
    if hasattr(model, "transform"):  # flowforge: each step is [ActNorm, LULinear, Coupling]
        z = x
        for step in model.transform:
            for name, t in zip(("actnorm", "conv1x1", "coupling"), step, strict=True):
                z, l = t(z)
                ladj[name] = ladj[name] + l
        return z, ladj
    z = x  # normflows: each GlowBlock is [coupling, 1x1 conv, actnorm] in the sampling direction
    for block in reversed(model.flows):
        for name, t in reversed(
            list(zip(("coupling", "conv1x1", "actnorm"), block.flows, strict=True))
        ):
            z, l = t.inverse(z)
            ladj[name] = ladj[name] + l
    return z, ladj


def std_normal_log_prob(z: Tensor) -> Tensor:
    z = z.flatten(1)
    return -0.5 * (z.square().sum(1) + z.shape[1] * math.log(2 * math.pi))


def oracle_gap(model: nn.Module, x: Tensor) -> float:
    """max |log_prob(x) - (log N(f(x)) + log|det J_f(x)|)| over the points of ``x``."""
    with torch.no_grad():
        lp = model.log_prob(x)
    gaps = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]

        def f(v: Tensor, shape: torch.Size = xi.shape) -> Tensor:
            return parts(model, v.reshape(shape))[0].flatten()

        jac = torch.autograd.functional.jacobian(f, xi.flatten())
        with torch.no_grad():
            z = f(xi.flatten())
        ref = std_normal_log_prob(z[None])[0] + torch.linalg.slogdet(jac)[1]
        gaps.append(float((lp[i] - ref).abs()))
    return max(gaps)


def check_oracle(seed: int = 0) -> dict[str, tuple[float, float]]:
    """Oracle gaps (after actnorm init, after perturbing every parameter) per library."""
    shape = (4, 2, 2)
    out = {}
    for lib in ("flowforge", "normflows", "normflows-exp"):
        torch.manual_seed(seed)
        model = build(lib, shape, hidden=8).double()
        x = torch.randn(32, *shape, dtype=torch.float64) * 0.5 + 1.0
        model.train()
        model.log_prob(x)  # the actnorm data-dependent initialisation, as in training
        model.eval()
        init = oracle_gap(model, x[:4])
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        out[lib] = (init, oracle_gap(model, x[:4]))
    return out


def train_compare(steps: int, checkpoints: list[int], seed: int = 0, lr: float = 1e-3) -> dict:
    """The peers.py glow task for ``steps`` steps: test NLL at ``checkpoints`` and the final
    split of the test log-density into its terms."""
    task = peers.TASKS["glow"]
    train, test = peers.load_task_data(task, seed)
    batches = peers.batch_indices(len(train), task.batch, steps, seed)
    out: dict = {}
    for lib in ("flowforge", "normflows", "normflows-exp"):
        torch.manual_seed(seed)
        module = build(lib, task.event_shape)
        model = peers.Model(module, module.log_prob, lambda n: None)
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        step = peers.make_step(model, opt)
        module.train()
        with torch.no_grad():  # actnorm init on the first training batch, no parameter step
            module.log_prob(train[batches[0]])
        curve = {}
        t0 = time.perf_counter()
        for k in range(steps + 1):
            if k in checkpoints:
                module.eval()
                curve[k] = peers.test_nll(model, test)
                module.train()
            if k < steps:
                step(train[batches[k]])
        module.eval()
        with torch.no_grad():
            z, ladj = parts(module, test)
            terms = {"base": float(std_normal_log_prob(z).mean())}
            terms |= {k: float(v.mean()) for k, v in ladj.items()}
        out[lib] = {"nll": curve, "terms": terms, "seconds": time.perf_counter() - t0}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=170)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-train", dest="train", action="store_false")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    print("oracle: max |log_prob - (log N(f(x)) + log|det J|)|, 4x2x2 images, float64")
    for lib, (init, perturbed) in check_oracle(args.seed).items():
        print(f"  {lib:14s} after actnorm init {init:.2e}   after perturbing {perturbed:.2e}")
    if not args.train:
        return
    checkpoints = sorted({0, 1, 10, 20, 50, 100, args.steps} & set(range(args.steps + 1)))
    res = train_compare(args.steps, checkpoints, args.seed)
    print("\ntest NLL (nats per 4x14x14 image, logit space) after k steps of batch 64, lr 1e-3")
    print("  step " + "".join(f"{lib:>15s}" for lib in res))
    for k in checkpoints:
        print(f"  {k:4d} " + "".join(f"{res[lib]['nll'][k]:15.1f}" for lib in res))
    print(f"\nmean test log-density after {args.steps} steps, by term (nats per image)")
    print("  term     " + "".join(f"{lib:>15s}" for lib in res))
    for term in ("base", "actnorm", "conv1x1", "coupling"):
        print(f"  {term:8s} " + "".join(f"{res[lib]['terms'][term]:15.1f}" for lib in res))
    print("  seconds  " + "".join(f"{res[lib]['seconds']:15.1f}" for lib in res))


if __name__ == "__main__":
    main()
