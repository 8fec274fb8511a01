r"""The conformance checks: independent checks that any transform or flow must pass.

Public (re-exported by :mod:`flowforge.testing`), for users writing their own transforms, and
the backbone of flowforge's own test suite, which runs them over every entry of
:mod:`flowforge.testing.registry`.

Checks on a transform ``t`` at inputs ``x`` (run in float64 on the CPU unless ``dtype``/``device``
say otherwise):

- ``round_trip``: ``t.inverse(t(x)) == x`` and ``t(t.inverse(z)) == z``;
- ``log_det``: ``ladj`` equals ``log|det J|`` of the brute-force autograd Jacobian, per sample;
- ``inverse_log_det``: the inverse's ``ladj`` equals ``-ladj`` of the forward at the same pair;
- ``gradients``: a loss through both directions gives a finite, non-zero gradient to every
  parameter;
- ``state_dict``: a fresh instance loaded from the saved ``state_dict`` (``weights_only``)
  computes the same outputs;
- ``repr``: ``repr(t)`` works.

Checks on a 2-D flow: ``integrates_to_one`` (``exp(log_prob)`` summed over a grid) and
``samples_match_density`` (histogram of samples against the grid density, by total variation).

Parameters are first perturbed away from their (identity) initialisation, otherwise a
zero-initialised layer would pass the log-det check trivially.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowforge.flows import Flow
from flowforge.transforms.base import InverseNotAvailable, Transform

__all__ = [
    "CheckResult",
    "assert_conforms",
    "brute_force_ladj",
    "check_flow_2d",
    "check_transform",
    "perturb_parameters",
]


@dataclass
class CheckResult:
    """The outcome of one check: its name, whether it passed, and a human-readable detail."""

    name: str
    passed: bool
    detail: str = ""


def perturb_parameters(module: nn.Module, scale: float = 0.1, seed: int = 0) -> None:
    """Adds seeded Gaussian noise of standard deviation ``scale`` to every floating parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.dtype.is_floating_point:
                noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
                p.add_(noise.to(p.dtype).to(p.device) * scale)


def brute_force_ladj(
    fn: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]],
    x: Tensor,
    context: Tensor | None = None,
) -> Tensor:
    """``log|det J|`` of ``fn`` at each sample of ``x``, from the full autograd Jacobian.

    ``fn`` maps ``(batch, *event)`` to ``(output, ladj)``; each sample is differentiated alone,
    so the result is independent of how the transform computes its own ``ladj``.
    """
    out = []
    for i in range(x.shape[0]):
        ctx = None if context is None else context[i : i + 1]

        def flat(v: Tensor, ctx: Tensor | None = ctx) -> Tensor:
            return fn(v.reshape(1, *x.shape[1:]), ctx)[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(flat, x[i].reshape(-1))
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def _close(a: Tensor, b: Tensor, atol: float, rtol: float) -> tuple[bool, str]:
    if a.shape != b.shape:
        return False, f"shape {tuple(a.shape)} != {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    ok = bool(torch.allclose(a, b, atol=atol, rtol=rtol)) and bool(torch.isfinite(a).all())
    return ok, f"max abs error {err:.2e}"


def _run(name: str, check: Callable[[], tuple[bool, str]]) -> CheckResult:
    try:
        passed, detail = check()
    except InverseNotAvailable as e:
        return CheckResult(name, True, f"skipped: {e}")
    except Exception as e:  # a crash is a failed check, reported with its message
        return CheckResult(name, False, f"{type(e).__name__}: {e}")
    return CheckResult(name, passed, detail)


def _prepare(transform: Transform, x: Tensor, context: Tensor | None) -> None:
    """Perturbs parameters, then runs one training-mode pass (data-dependent initialisation,
    running statistics) and switches to eval mode, where every map is a fixed function."""
    perturb_parameters(transform)
    transform.train()
    with torch.no_grad():
        transform(x, context)
    transform.eval()


def check_transform(
    make: Callable[[], Transform],
    x: Tensor,
    context: Tensor | None = None,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    *,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> list[CheckResult]:
    """Runs every transform check on a fresh ``make()`` at ``x`` (and ``context``), by default
    in float64 on the CPU.

    Arguments:
        make: builds the transform (called twice: the second copy checks ``state_dict``).
        x: inputs ``(batch, *event)`` in the transform's domain; a small batch suffices.
        context: optional ``(batch, context_features)``.
        atol, rtol: tolerances of the comparisons (numerical inverses may need looser ones);
            the defaults suit float64, float32 needs looser ones.
        dtype, device: where the transform, its inputs and every check run (e.g. float32 on
            ``"cuda"``); the brute-force Jacobian is taken in the same dtype.
    """
    torch.manual_seed(0)
    t = make().to(device=device, dtype=dtype)
    x = x.to(device=device, dtype=dtype)
    context = None if context is None else context.to(device=device, dtype=dtype)
    _prepare(t, x, context)
    results = [CheckResult("repr", bool(repr(t)), "")]

    def forward_pair() -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return t(x, context)

    def round_trip() -> tuple[bool, str]:
        z, _ = forward_pair()
        with torch.no_grad():
            x2, _ = t.inverse(z, context)
            z2, _ = t(x2, context)
        ok1, d1 = _close(x2, x, atol, rtol)
        ok2, d2 = _close(z2, z, atol, rtol)
        return ok1 and ok2, f"x: {d1}; z: {d2}"

    def log_det() -> tuple[bool, str]:
        _, ladj = forward_pair()
        if ladj.shape != (x.shape[0],):
            return False, f"ladj has shape {tuple(ladj.shape)}, expected ({x.shape[0]},)"
        return _close(ladj, brute_force_ladj(t, x, context), atol * 10, rtol)

    def inverse_log_det() -> tuple[bool, str]:
        z, ladj = forward_pair()
        with torch.no_grad():
            _, ladj_inv = t.inverse(z, context)
        ok, d = _close(ladj_inv, -ladj, atol * 10, rtol)
        brute = brute_force_ladj(t.inverse, z, context)
        ok2, d2 = _close(ladj_inv, brute, atol * 10, rtol)
        return ok and ok2, f"vs -forward: {d}; vs autograd: {d2}"

    def gradients() -> tuple[bool, str]:
        t.zero_grad()
        t.train()
        xg = x.clone().requires_grad_(True)
        try:
            z, ladj = t(xg, context)
            loss = z.pow(2).mean() - ladj.mean()
            try:
                x2, ladj2 = t.inverse(z.detach() * 0.9, context)
                loss = loss + x2.pow(2).mean() + ladj2.mean()
            except InverseNotAvailable:
                pass
            loss.backward()
        finally:
            t.eval()
        grads = {"<input x>": xg.grad, **{n: p.grad for n, p in t.named_parameters()}}
        missing = [
            n
            for n, g in grads.items()
            if g is None or not bool(torch.isfinite(g).all()) or g.abs().sum() == 0
        ]
        return not missing, f"no or zero gradient: {missing}" if missing else "all parameters"

    def state_dict() -> tuple[bool, str]:
        buffer = io.BytesIO()
        torch.save(t.state_dict(), buffer)
        buffer.seek(0)
        torch.manual_seed(12345)  # a different random initialisation
        fresh = make().to(device=device, dtype=dtype)
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        fresh.eval()
        with torch.no_grad():
            z, ladj = t(x, context)
            z2, ladj2 = fresh(x, context)
        ok1, d1 = _close(z2, z, 1e-12, 1e-12)
        ok2, d2 = _close(ladj2, ladj, 1e-12, 1e-12)
        return ok1 and ok2, f"z: {d1}; ladj: {d2}"

    for name, check in [
        ("round_trip", round_trip),
        ("log_det", log_det),
        ("inverse_log_det", inverse_log_det),
        ("gradients", gradients),
        ("state_dict", state_dict),
    ]:
        results.append(_run(name, check))
    return results


def _grid(bounds: float, n: int, dtype: torch.dtype) -> tuple[Tensor, float]:
    edges = torch.linspace(-bounds, bounds, n + 1, dtype=dtype)
    centers = (edges[1:] + edges[:-1]) / 2
    xx, yy = torch.meshgrid(centers, centers, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], 1), (2 * bounds / n) ** 2


def check_flow_2d(
    flow: Flow,
    bounds: float = 8.0,
    grid: int = 400,
    samples: int = 20000,
    mass_tol: float = 0.01,
    tv_tol: float = 0.08,
) -> list[CheckResult]:
    """Density checks for a flow over 2-D vectors (in float64, eval mode).

    - ``integrates_to_one``: the midpoint rule over ``[-bounds, bounds]^2`` with ``grid^2``
      cells gives ``1 +- mass_tol`` (the box must hold the flow's mass);
    - ``samples_match_density``: the total-variation distance between the histogram of
      ``samples`` draws and the density's mass on a 20 x 20 grid is below ``tv_tol``.
    """
    flow = copy.deepcopy(flow).double().eval()
    if tuple(flow.event_shape) != (2,):
        raise ValueError(f"check_flow_2d needs a flow over (2,), got {tuple(flow.event_shape)}")

    def integrates() -> tuple[bool, str]:
        pts, area = _grid(bounds, grid, torch.float64)
        with torch.no_grad():
            mass = sum(flow.log_prob(chunk).exp().sum().item() for chunk in pts.split(40000)) * area
        return abs(mass - 1) < mass_tol, f"mass {mass:.4f}"

    def samples_match() -> tuple[bool, str]:
        torch.manual_seed(0)
        xs = flow.sample(samples)
        n = 20
        pts, area = _grid(bounds, 10 * n, torch.float64)
        with torch.no_grad():
            dens = torch.cat([flow.log_prob(c).exp() for c in pts.split(40000)]) * area
        # sum fine cells into the coarse 20 x 20 histogram
        p = dens.reshape(n, 10, n, 10).sum((1, 3)).flatten()
        idx = ((xs + bounds) / (2 * bounds) * n).floor().long()
        inside = ((idx >= 0) & (idx < n)).all(1)
        counts = torch.bincount(idx[inside, 0] * n + idx[inside, 1], minlength=n * n)
        q = counts.double() / samples
        tv = 0.5 * ((p - q).abs().sum().item() + abs(1 - inside.double().mean().item()))
        return tv < tv_tol, f"total variation {tv:.3f}"

    return [_run("integrates_to_one", integrates), _run("samples_match_density", samples_match)]


def assert_conforms(results: list[CheckResult]) -> None:
    """Raises an ``AssertionError`` listing every failed check."""
    failed = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    if failed:
        raise AssertionError("conformance checks failed:\n  " + "\n  ".join(failed))
