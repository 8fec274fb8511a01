r"""Unnormalised target densities for variational inference: :math:`\tilde p(z) = Z\, p(z)`.

A :class:`Target` wraps ``log_p(z) -> (batch,)`` (the log of the *unnormalised* density) with
its dimension, its log normaliser ``log Z`` where known, and the box that holds its mass (for
plots and grid integration). Then :math:`\mathrm{KL}(q \| p) = \mathbb{E}_q[\log q - \log
\tilde p] + \log Z`.

The four 2-D energies of Rezende and Mohamed (2015, https://arxiv.org/abs/1505.05770, Table 1),
:math:`\tilde p(z) = e^{-U(z)}`, with :math:`w_1 = \sin(\pi z_1 / 2)`,
:math:`w_2 = 3 e^{-\frac12 ((z_1 - 1)/0.6)^2}`, :math:`w_3 = 3\sigma((z_1 - 1)/0.3)`:

- ``U1`` :math:`= \frac12 ((\|z\| - 2)/0.4)^2 - \log(e^{-\frac12((z_1 - 2)/0.6)^2} +
  e^{-\frac12((z_1 + 2)/0.6)^2})`, a ring with two lobes; proper, ``log Z = 1.8775``.
- ``U2`` :math:`= \frac12 ((z_2 - w_1)/0.4)^2`;
  ``U3`` :math:`= -\log(e^{-\frac12((z_2 - w_1)/0.35)^2} + e^{-\frac12((z_2 - w_1 + w_2)/0.35)^2})`;
  ``U4`` :math:`= -\log(e^{-\frac12((z_2 - w_1)/0.4)^2} + e^{-\frac12((z_2 - w_1 + w_3)/0.35)^2})`.

**U2, U3 and U4 do not decay along** :math:`z_1` (their integral over the plane is infinite, and
reverse KL to them is unbounded below). flowforge restricts them to the strip
:math:`|z_1| \le 4` (the box ``[-4, 4]^2`` in which the paper and its reproductions plot them)
with a Gaussian edge: :math:`\log \tilde p = -U(z) - \frac12 (\max(|z_1| - 4, 0) / 0.1)^2`, a
proper density whose ``log Z`` is integrated on a grid.

Also: Neal's funnel (Neal 2003, "Slice sampling", https://arxiv.org/abs/physics/0009028),
:math:`v \sim \mathcal N(0, 3^2)`, :math:`x_i \mid v \sim \mathcal N(0, e^{v})`; and a banana,
:math:`z_1 \sim \mathcal N(0, 2^2)`, :math:`z_2 \mid z_1 \sim \mathcal N(z_1^2/4 - 1, 1)`. Both
are normalised (``log Z = 0``). Any function becomes a target with :class:`Target` directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "TARGETS",
    "Target",
    "banana",
    "energy",
    "funnel",
    "grid_log_z",
    "make_target",
    "register_target",
]

_LOG_2PI = math.log(2 * math.pi)
_EDGE = 0.1  # width of the Gaussian edge of the z1-strip of U2-U4


@dataclass(frozen=True)
class Target:
    """An unnormalised log-density ``log_p(z)`` over ``(batch, dim)``.

    Attributes:
        name: a label for reports and plots.
        log_p: the unnormalised log-density, ``(batch, dim) -> (batch,)``.
        dim: the dimension of ``z``.
        log_z: the log normaliser when known (exact, or from :func:`grid_log_z`), else ``None``.
        bounds: half-widths of the box holding (almost all) the mass, per dimension; for plots
            and grid integration.
    """

    name: str
    log_p: Callable[[Tensor], Tensor]
    dim: int
    log_z: float | None = None
    bounds: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.dim < 1:
            raise ValueError(f"'dim' should be positive, got {self.dim}")
        if self.bounds is not None and len(self.bounds) != self.dim:
            raise ValueError(f"'bounds' should have {self.dim} entries, got {len(self.bounds)}")

    def __call__(self, z: Tensor) -> Tensor:
        if z.dim() != 2 or z.shape[1] != self.dim:
            raise ValueError(f"'z' should have shape (batch, {self.dim}), got {tuple(z.shape)}")
        return self.log_p(z)


def _w1(z1: Tensor) -> Tensor:
    return torch.sin(math.pi * z1 / 2)


def _u1(z: Tensor) -> Tensor:
    z1 = z[:, 0]
    ring = 0.5 * ((torch.linalg.vector_norm(z, dim=1) - 2) / 0.4) ** 2
    lobes = torch.stack([-0.5 * ((z1 - 2) / 0.6) ** 2, -0.5 * ((z1 + 2) / 0.6) ** 2], 1)
    return ring - torch.logsumexp(lobes, 1)


def _u2(z: Tensor) -> Tensor:
    return 0.5 * ((z[:, 1] - _w1(z[:, 0])) / 0.4) ** 2


def _u3(z: Tensor) -> Tensor:
    z1, z2 = z[:, 0], z[:, 1]
    w2 = 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)
    a = -0.5 * ((z2 - _w1(z1)) / 0.35) ** 2
    b = -0.5 * ((z2 - _w1(z1) + w2) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b], 1), 1)


def _u4(z: Tensor) -> Tensor:
    z1, z2 = z[:, 0], z[:, 1]
    w3 = 3 * torch.sigmoid((z1 - 1) / 0.3)
    a = -0.5 * ((z2 - _w1(z1)) / 0.4) ** 2
    b = -0.5 * ((z2 - _w1(z1) + w3) / 0.35) ** 2
    return -torch.logsumexp(torch.stack([a, b], 1), 1)


def _strip(energy: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``-U(z)`` restricted to ``|z1| <= 4`` with a Gaussian edge of width 0.1."""

    def log_p(z: Tensor) -> Tensor:
        outside = (z[:, 0].abs() - 4).clamp_min(0)
        return -energy(z) - 0.5 * (outside / _EDGE) ** 2

    return log_p


_ENERGIES = {"U1": _u1, "U2": _u2, "U3": _u3, "U4": _u4}


def energy(name: str) -> Target:
    """The energy ``U1`` to ``U4`` of Rezende and Mohamed as a target (``U2``-``U4`` on the
    strip ``|z1| <= 4``); ``log Z`` by :func:`grid_log_z` (U1: 1.8775)."""
    if name not in _ENERGIES:
        raise ValueError(f"'name' should be one of {sorted(_ENERGIES)}, got {name!r}")
    if name == "U1":
        log_p, bounds = (lambda z: -_u1(z)), (4.0, 4.0)
    else:
        log_p, bounds = _strip(_ENERGIES[name]), (4.5, 6.0)
    target = Target(name, log_p, 2, None, bounds)
    return Target(name, log_p, 2, grid_log_z(target), bounds)


def funnel(dim: int = 2, scale: float = 3.0) -> Target:
    r"""Neal's funnel in ``dim`` dimensions: :math:`v = z_1 \sim \mathcal N(0, s^2)`,
    :math:`z_{i>1} \mid v \sim \mathcal N(0, e^{v})`; normalised, ``log Z = 0``. Its ``bounds``
    are a plotting box: the mass at large ``v`` spreads far beyond it."""
    if dim < 2:
        raise ValueError(f"'dim' should be at least 2, got {dim}")
    if not scale > 0:
        raise ValueError(f"'scale' should be positive, got {scale}")

    def log_p(z: Tensor) -> Tensor:
        v, x = z[:, 0], z[:, 1:]
        lp_v = -0.5 * (v / scale) ** 2 - math.log(scale) - 0.5 * _LOG_2PI
        lp_x = -0.5 * x**2 * torch.exp(-v)[:, None] - 0.5 * v[:, None] - 0.5 * _LOG_2PI
        return lp_v + lp_x.sum(1)

    return Target(f"funnel{dim}d", log_p, dim, 0.0, (3 * scale,) + (8.0,) * (dim - 1))


def banana(curvature: float = 0.25, scale: float = 2.0) -> Target:
    r"""A banana: :math:`z_1 \sim \mathcal N(0, s^2)`, :math:`z_2 \mid z_1 \sim
    \mathcal N(b z_1^2 - b s^2, 1)` (``b = curvature``); normalised, ``log Z = 0``."""
    if not scale > 0:
        raise ValueError(f"'scale' should be positive, got {scale}")

    def log_p(z: Tensor) -> Tensor:
        z1, z2 = z[:, 0], z[:, 1]
        lp1 = -0.5 * (z1 / scale) ** 2 - math.log(scale) - 0.5 * _LOG_2PI
        lp2 = -0.5 * (z2 - curvature * (z1**2 - scale**2)) ** 2 - 0.5 * _LOG_2PI
        return lp1 + lp2

    return Target("banana", log_p, 2, 0.0, (4 * scale, 4 + 16 * abs(curvature) * scale**2))


@torch.no_grad()
def grid_log_z(target: Target, n: int = 1000, bounds: tuple[float, ...] | None = None) -> float:
    """``log Z`` of a 2-D target by the midpoint rule on an ``n x n`` grid over its box, in
    float64 (the box must hold the mass; U1 on ``[-4, 4]^2`` with ``n = 1000`` gives 1.8775)."""
    bounds = bounds or target.bounds
    if target.dim != 2 or bounds is None:
        raise ValueError("grid_log_z needs a 2-D target with 'bounds'")
    axes = [(torch.arange(n, dtype=torch.float64) + 0.5) / n * 2 * b - b for b in bounds]
    zz = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 2)
    cell = math.log(4 * bounds[0] * bounds[1] / n**2)
    return float(torch.logsumexp(target(zz), 0)) + cell


TARGETS: dict[str, Callable[[], Target]] = {
    "U1": lambda: energy("U1"),
    "U2": lambda: energy("U2"),
    "U3": lambda: energy("U3"),
    "U4": lambda: energy("U4"),
    "funnel": funnel,
    "banana": banana,
}


def register_target(
    name: str,
) -> Callable[[Callable[[], Target]], Callable[[], Target]]:
    """Decorator registering a target factory ``() -> Target`` under ``name``, so configs can
    name it (``objective: {name: reverse_kl, target: NAME}``)."""

    def add(factory: Callable[[], Target]) -> Callable[[], Target]:
        if name in TARGETS:
            raise ValueError(f"a target named {name!r} is already registered")
        TARGETS[name] = factory
        return factory

    return add


def make_target(name: str) -> Target:
    """A registered target by name (see :data:`TARGETS`)."""
    if name not in TARGETS:
        raise ValueError(f"target: unknown {name!r}; choose one of {sorted(TARGETS)}")
    return TARGETS[name]()
