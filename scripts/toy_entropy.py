r"""True entropies of the 2-D toy data sets in :mod:`flowforge.data.toy` (issue 2).

The entropy :math:`H = -\mathbb{E}_p[\log p(x)]` (nats per point) is the best expected test NLL
any model can reach. Every density below is derived from the generator definitions in
``src/flowforge/data/toy.py`` (in the limit n -> infinity, where ``linspace`` over an angle
becomes the uniform law and the class sizes become equal).

Gaussian-noise sets (moons, circles, rings, swissroll, 8gaussians, 2spirals). The last step adds
noise, so :math:`p(x) = \int N(x; g(z), \sigma^2 I)\, \pi(dz)` with ``z`` the generator's latent
(the angle of each half-moon or circle, the swiss-roll ``t``, the spiral ``t`` with its uniform
jitter, the Gaussian's centre). The latent is one-dimensional (or discrete), so the integral is
done by composite Gauss-Legendre quadrature over ``z``; the spirals' uniform jitter on a square
of side ``a`` convolved with the noise is exact per coordinate,
:math:`(\Phi((d + a/2)/\sigma) - \Phi((d - a/2)/\sigma)) / a`. The kernel is separable, so on a
tensor grid ``p = K_1 \operatorname{diag}(w) K_2^T`` is one matrix product.

Pinwheel has no final noise: ``x = 2 R(-a_k(f_0)) f`` with ``f ~ N((1, 0), diag(0.3^2, 0.1^2))``,
arm ``k`` uniform in 0..4 and ``a_k(f_0) = 2 pi k / 5 + 0.25 exp(f_0)``. In polar coordinates
``f = rho (cos b, sin b)`` the map keeps ``rho`` and sends ``b`` to
``psi = b - 0.25 exp(rho cos b) - 2 pi k / 5``, so
:math:`p(x) = \frac{1}{4} \cdot \frac{1}{5} \sum_{\text{preimages}} N(f) / |1 + 0.25 e^{f_0} f_1|`.
All preimages (over the five arms, where arms overlap near the origin, and across folds of
the map) are the roots of ``b - 0.25 exp(rho cos b) = psi (mod 2 pi / 5)`` on ``b`` in
``[-pi, pi]``: bracketed on a fine grid of ``b``, then bisected. This replaces the biased
histogram estimator with the exact density.

Two independent estimates per set:

* **quadrature** (the stored value): :math:`H = -\int p \log p\, dx` by the trapezoid rule on a
  grid of step ``h = width / res`` over a box where ``p`` is below ``e^{-40}`` at the edges. The
  integrand is smooth (analytic), so the rule converges exponentially; the error is
  estimated by repeating at ``1.5 res`` (grid and latent nodes) and taking the difference.
* **Monte Carlo check**: ``-mean log p(x)`` over ``N`` points drawn from ``toy.sample`` itself,
  with standard error ``std / sqrt(N)``. The check uses the real generator, so a wrong density
  (for instance a wrong noise scale) would show as a gap of many standard errors between the
  two: the Monte Carlo mean is then a cross-entropy ``H(p) + KL(p || q)``, not ``H(q)``.

The three closed forms (checkerboard = ln 32, parabola = ln(2 pi e) + ln 4, 25gaussians =
ln 25 + ln(2 pi e 0.05^2)) are checked by Monte Carlo from the generator (and, for
checkerboard, a histogram estimate with Miller-Madow correction).

Usage::

    nice -n 10 .venv/bin/python scripts/toy_entropy.py           # print the table
    nice -n 10 .venv/bin/python scripts/toy_entropy.py --write   # and write toy_entropy.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowforge.data import toy

JSON_PATH = Path(__file__).resolve().parents[1] / "src" / "flowforge" / "data" / "toy_entropy.json"
DTYPE = torch.float64
CHUNK = 4_000_000  # elements per (points x nodes) block
TAIL = 9.0  # box margin in kernel widths: a Gaussian's density there is e^{-40.5} of its peak
GL_ORDER = 8

# The values of reference-results.md section 3.2 that toy.py first carried, with their errors.
PUBLISHED = {
    "8gaussians": (2.834, 0.002),
    "moons": (2.39, 0.01),
    "circles": (3.27, 0.01),
    "rings": (2.63, 0.01),
    "swissroll": (2.67, 0.01),
    "2spirals": (2.66, 0.01),
    "pinwheel": (2.32, 0.01),
}


# ----------------------------------------------------------------------------- kernels
@dataclass(frozen=True)
class Gaussian:
    """1-D factor of the isotropic noise N(0, sigma^2 I)."""

    sigma: float

    @property
    def reach(self) -> float:
        return TAIL * self.sigma

    def __call__(self, d: Tensor) -> Tensor:
        return torch.exp(-0.5 * (d / self.sigma) ** 2) / (self.sigma * math.sqrt(2 * math.pi))


@dataclass(frozen=True)
class BoxGaussian:
    """1-D factor of U[-side/2, side/2]^2 convolved with N(0, sigma^2 I).

    ``(Phi((side/2 - |d|) / sigma) - Phi((-side/2 - |d|) / sigma)) / side``: with ``|d|`` both
    arguments sit on the lower side, so the difference does not cancel in the tails.
    """

    sigma: float
    side: float

    @property
    def reach(self) -> float:
        return TAIL * self.sigma + self.side / 2

    def __call__(self, d: Tensor) -> Tensor:
        u = d.abs()
        upper = torch.special.ndtr((self.side / 2 - u) / self.sigma)
        lower = torch.special.ndtr((-self.side / 2 - u) / self.sigma)
        return (upper - lower) / self.side


Kernel = Gaussian | BoxGaussian


# ----------------------------------------------------------------------------- densities
def gauss_legendre(lo: float, hi: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre rule of at least ``n`` nodes on [lo, hi]; weights sum to hi-lo."""
    if not hi > lo or n < 1:
        raise ValueError(f"need lo < hi and n >= 1, got lo={lo}, hi={hi}, n={n}")
    panels = math.ceil(n / GL_ORDER)
    x, w = np.polynomial.legendre.leggauss(GL_ORDER)
    edges = np.linspace(lo, hi, panels + 1)
    half = np.diff(edges)[:, None] / 2  # (panels, 1)
    nodes = (edges[:-1, None] + half * (x + 1)).ravel()
    return nodes, (half * w).ravel()


@dataclass
class Curve:
    """One piece of the latent law: ``z`` with density ``pdf`` on [lo, hi], mass ``weight``."""

    g: Callable[[np.ndarray], np.ndarray]  # (K,) latent -> (K, 2) centres
    lo: float
    hi: float
    weight: float
    pdf: Callable[[np.ndarray], np.ndarray] | None = None  # None: uniform

    def rule(self, nodes_per_width: float, width: float) -> tuple[np.ndarray, np.ndarray]:
        """Centres (K, 2) and weights (K,) with about ``nodes_per_width`` nodes per ``width``."""
        fine = self.g(np.linspace(self.lo, self.hi, 20_001))
        arc = float(np.linalg.norm(np.diff(fine, axis=0), axis=1).sum())
        z, w = gauss_legendre(self.lo, self.hi, math.ceil(nodes_per_width * arc / width))
        density = np.full_like(z, 1 / (self.hi - self.lo)) if self.pdf is None else self.pdf(z)
        return self.g(z), self.weight * w * density


@dataclass
class NoisyLatent:
    r"""``p(x) = sum_j w_j k(x_1 - c_j1) k(x_2 - c_j2)``: a latent law blurred by a kernel.

    The latent law is a list of curves (integrated by quadrature) and atoms (exact).
    """

    curves: list[Curve]
    kernel: Kernel
    atoms: tuple[np.ndarray, np.ndarray] | None = None  # centres (A, 2), weights (A,)

    @property
    def width(self) -> float:
        """Smallest feature width of ``p``: sets the grid step and the latent node spacing."""
        return self.kernel.sigma

    def nodes(self, res: float) -> tuple[Tensor, Tensor]:
        parts = [c.rule(res, self.width) for c in self.curves]
        if self.atoms is not None:
            parts.append(self.atoms)
        centres = np.concatenate([c for c, _ in parts])
        weights = np.concatenate([w for _, w in parts])
        if abs(weights.sum() - 1) > 1e-9:
            raise ValueError(f"latent weights sum to {weights.sum()}, not 1")
        return torch.as_tensor(centres, dtype=DTYPE), torch.as_tensor(weights, dtype=DTYPE)

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        centres, _ = self.nodes(1.0)
        c = centres.numpy()
        return c.min(0) - self.kernel.reach, c.max(0) + self.kernel.reach

    def density(self, x: Tensor, res: float) -> Tensor:
        """``p(x)`` at points ``x`` (N, 2) -> (N,)."""
        c, w = self.nodes(res)
        step = max(1, CHUNK // len(w))
        out = [
            (self.kernel(xb[:, :1] - c[:, 0]) * self.kernel(xb[:, 1:] - c[:, 1])) @ w
            for xb in x.split(step)
        ]
        return torch.cat(out)

    def grid_density(self, xs: Tensor, ys: Tensor, res: float) -> Tensor:
        """``p`` on the tensor grid ``xs x ys`` -> (len(xs), len(ys)), one matrix product."""
        c, w = self.nodes(res)
        kx = self.kernel(xs[:, None] - c[:, 0])  # (Gx, K)
        ky = self.kernel(ys[:, None] - c[:, 1])  # (Gy, K)
        return (kx * w) @ ky.T


def _circle(radius: float, weight: float) -> Curve:
    return Curve(lambda t: radius * np.stack([np.cos(t), np.sin(t)], 1), 0.0, 2 * np.pi, weight)


def moons() -> NoisyLatent:
    """Half circles at angle ~ U[0, pi], noise 0.1, then x 2 + (-1, -0.2): sigma = 0.2."""
    shift = np.array([-1.0, -0.2])
    upper = Curve(lambda t: 2 * np.stack([np.cos(t), np.sin(t)], 1) + shift, 0.0, np.pi, 0.5)
    lower = Curve(
        lambda t: 2 * np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1) + shift, 0.0, np.pi, 0.5
    )
    return NoisyLatent([upper, lower], Gaussian(0.2))


def circles() -> NoisyLatent:
    """Circles of radii 1 and 0.5 (angle ~ U[0, 2 pi)), noise 0.08, then x 3: sigma = 0.24."""
    return NoisyLatent([_circle(3.0, 0.5), _circle(1.5, 0.5)], Gaussian(0.24))


def rings() -> NoisyLatent:
    """Four circles of radii 0.75, 1.5, 2.25 and 3, equal weights, noise 0.08 after scaling."""
    return NoisyLatent([_circle(3.0 * r, 0.25) for r in (0.25, 0.5, 0.75, 1.0)], Gaussian(0.08))


def swissroll() -> NoisyLatent:
    """t ~ U[1.5 pi, 4.5 pi], (t cos t, t sin t) + N(0, I), all / 5: sigma = 0.2."""
    roll = Curve(
        lambda t: np.stack([t * np.cos(t), t * np.sin(t)], 1) / 5, 1.5 * np.pi, 4.5 * np.pi, 1.0
    )
    return NoisyLatent([roll], Gaussian(0.2))


def eight_gaussians() -> NoisyLatent:
    """Eight equally likely centres 4 u_k / 1.414 with sigma = 0.5 / 1.414."""
    s = 1 / math.sqrt(2)
    unit = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)])
    atoms = (4 * unit / 1.414, np.full(8, 1 / 8))
    return NoisyLatent([], Gaussian(0.5 / 1.414), atoms)


def two_spirals() -> NoisyLatent:
    """t = 3 pi sqrt(U) (density 2t / (3 pi)^2); centre (-t cos t, t sin t) / 3 plus a jitter
    uniform on [0, 1/6]^2, the mirror image for the second spiral; then noise 0.1.

    The jitter square is centred by moving the centre to its middle (+-1/12 per coordinate)."""
    top = 3 * np.pi
    half = 0.5 / 3 / 2

    def pdf(t: np.ndarray) -> np.ndarray:
        return 2 * t / top**2

    def spiral(sign: float) -> Curve:
        return Curve(
            lambda t: sign * (np.stack([-t * np.cos(t), t * np.sin(t)], 1) / 3 + half),
            0.0,
            top,
            0.5,
            pdf,
        )

    return NoisyLatent([spiral(1.0), spiral(-1.0)], BoxGaussian(0.1, 2 * half))


@dataclass
class Pinwheel:
    """Exact pinwheel density by summing over all preimages (see the module docstring)."""

    beta_grid: int = 2048  # bracketing grid over b in [-pi, pi]
    bisections: int = 60
    arms: int = 5
    radial_sd: float = 0.3
    tangential_sd: float = 0.1
    rate: float = 0.25
    scale: float = 2.0

    @property
    def width(self) -> float:
        return self.scale * self.tangential_sd

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        # |f| <= 1 + 10 radial sd covers all but e^{-50} of the mass
        edge = self.scale * (1 + 10 * self.radial_sd)
        return np.array([-edge, -edge]), np.array([edge, edge])

    def _h(self, rho: Tensor, b: Tensor) -> Tensor:
        return b - self.rate * torch.exp(rho * torch.cos(b))

    def _density_chunk(self, y: Tensor) -> Tensor:
        rho, psi = y.norm(dim=1), torch.atan2(y[:, 1], y[:, 0])
        period = 2 * math.pi / self.arms
        b = torch.linspace(-math.pi, math.pi, self.beta_grid + 1, dtype=DTYPE)
        level = torch.floor((self._h(rho[:, None], b) - psi[:, None]) / period)  # (C, G+1)
        # each cell [b_i, b_i+1] crosses the levels lo+1 .. lo+count of h - psi = m * period
        lo = torch.minimum(level[:, :-1], level[:, 1:])
        count = (level[:, 1:] - level[:, :-1]).abs().long()
        row, cell = count.nonzero(as_tuple=True)
        reps = count[row, cell]
        row, cell, lo = (t.repeat_interleave(reps) for t in (row, cell, lo[row, cell]))
        start = torch.cumsum(reps, 0) - reps
        offset = torch.arange(len(row)) - start.repeat_interleave(reps)
        target = psi[row] + (lo + 1 + offset) * period
        r, a, c = rho[row], b[cell], b[cell + 1]
        sign_a = torch.sign(self._h(r, a) - target)
        for _ in range(self.bisections):
            mid = (a + c) / 2
            left = torch.sign(self._h(r, mid) - target) == sign_a
            a, c = torch.where(left, mid, a), torch.where(left, c, mid)
        root = (a + c) / 2
        f0, f1 = r * torch.cos(root), r * torch.sin(root)
        z0, z1 = (f0 - 1) / self.radial_sd, f1 / self.tangential_sd
        p_f = torch.exp(-0.5 * (z0**2 + z1**2)) / (
            2 * math.pi * self.radial_sd * self.tangential_sd
        )
        jac = (1 + self.rate * torch.exp(f0) * f1).abs()
        return torch.zeros_like(rho).index_add_(0, row, p_f / jac) / self.arms

    def density(self, x: Tensor, res: float = 0.0) -> Tensor:
        """``p(x)`` at points ``x`` (N, 2) -> (N,); ``res`` is unused (no latent quadrature)."""
        step = max(1, CHUNK // (self.beta_grid + 1))
        y = x / self.scale
        return torch.cat([self._density_chunk(yb) for yb in y.split(step)]) / self.scale**2

    def grid_density(self, xs: Tensor, ys: Tensor, res: float = 0.0) -> Tensor:
        gx, gy = torch.meshgrid(xs, ys, indexing="ij")
        return self.density(torch.stack([gx.ravel(), gy.ravel()], 1)).reshape(len(xs), -1)

    def no_overlap_entropy(self, nodes: int = 20) -> float:
        """H if arms never overlapped: ln(scale^2) + ln 5 + H(f) + E log|1 + rate e^f0 f1|."""
        z, w = np.polynomial.hermite_e.hermegauss(nodes)
        w = w / w.sum()
        f0 = 1 + self.radial_sd * z[:, None]
        f1 = self.tangential_sd * z[None, :]
        e_log_jac = float(
            (w[:, None] * w[None, :] * np.log(np.abs(1 + self.rate * np.exp(f0) * f1))).sum()
        )
        h_f = math.log(2 * math.pi * math.e * self.radial_sd * self.tangential_sd)
        return 2 * math.log(self.scale) + math.log(self.arms) + h_f + e_log_jac


Model = NoisyLatent | Pinwheel

MODELS: dict[str, Callable[[], Model]] = {
    "8gaussians": eight_gaussians,
    "moons": moons,
    "circles": circles,
    "rings": rings,
    "swissroll": swissroll,
    "2spirals": two_spirals,
    "pinwheel": Pinwheel,
}


# ----------------------------------------------------------------------------- estimators
def grid_entropy(model: Model, res: float) -> tuple[float, float]:
    """Trapezoid rule for ``-int p log p`` with step ``width / res``; returns (H, total mass)."""
    lo, hi = model.box()
    h = model.width / res
    xs, ys = (torch.arange(lo[i], hi[i] + h, h, dtype=DTYPE) for i in range(2))  # (Gx,), (Gy,)
    p = model.grid_density(xs, ys, res)
    p = p[p > 0]
    return float(-(p * p.log()).sum() * h * h), float(p.sum() * h * h)


def mc_entropy(
    log_p: Callable[[Tensor], Tensor], name: str, n: int, seed: int
) -> tuple[float, float]:
    """``-mean log p`` over ``n`` draws of ``toy.sample(name)``; returns (mean, std / sqrt(n))."""
    x = torch.as_tensor(toy.sample(name, n, seed=seed), dtype=DTYPE)
    nll = -log_p(x)
    if not bool(torch.isfinite(nll).all()):
        raise ValueError(
            f"{name}: log p is not finite at {int((~torch.isfinite(nll)).sum())} draws"
        )
    return float(nll.mean()), float(nll.std() / math.sqrt(n))


@dataclass
class Row:
    name: str
    value: float
    error: float  # quadrature error estimate (0 for closed forms)
    mc: float
    mc_se: float
    method: str


def numeric_row(name: str, res: float, n_mc: int, seed: int) -> Row:
    """Quadrature value (error from a 1.5x refinement) and its Monte-Carlo check."""
    model = MODELS[name]()
    coarse, _ = grid_entropy(model, res)
    fine, mass = grid_entropy(model, 1.5 * res)
    if abs(mass - 1) > 1e-6:
        raise ValueError(f"{name}: the density integrates to {mass} on the grid, not 1")
    mc, se = mc_entropy(lambda x: model.density(x, 1.5 * res).log(), name, n_mc, seed)
    h = model.width / (1.5 * res)
    method = f"grid quadrature, step {h:.3g}"
    if isinstance(model, NoisyLatent):
        method += f", {len(model.nodes(1.5 * res)[1])} latent nodes"
    else:
        method += f", exact density from all preimages ({model.beta_grid}-cell bracketing)"
    return Row(name, fine, abs(fine - coarse), mc, se, method)


def exact_rows(n_mc: int, seed: int) -> list[Row]:
    """Monte-Carlo checks of the three closed forms against draws of their generators."""

    def log_p_checkerboard(x: Tensor) -> Tensor:
        u = x / 2
        inside = (u.abs() <= 2).all(1) & ((u.floor().sum(1) % 2) == 0)
        return torch.where(inside, -math.log(32.0), -math.inf)

    def log_p_parabola(x: Tensor) -> Tensor:
        x1, x2 = x[:, 0], x[:, 1]
        log_n = -0.5 * math.log(2 * math.pi)
        return (log_n - math.log(4.0) - 0.5 * (x2 / 4) ** 2) + (log_n - 0.5 * (x1 - x2**2 / 4) ** 2)

    def log_p_grid(x: Tensor) -> Tensor:  # the whole mixture, every mode's tail included
        centers, sd = toy.MODES["25gaussians"]
        d2 = torch.cdist(x, torch.as_tensor(centers, dtype=x.dtype)) ** 2
        log_n = -math.log(2 * math.pi * sd**2) - d2 / (2 * sd**2)
        return torch.logsumexp(log_n, 1) - math.log(len(centers))

    rows = []
    closed = (("checkerboard", log_p_checkerboard), ("parabola", log_p_parabola))
    for name, log_p in (*closed, ("25gaussians", log_p_grid)):
        mc, se = mc_entropy(log_p, name, n_mc, seed)
        rows.append(Row(name, toy.ENTROPY[name].value, 0.0, mc, se, toy.ENTROPY[name].how))
    return rows


def checkerboard_histogram(n: int, seed: int, bins: int = 64) -> float:
    """Plug-in entropy of a ``bins^2`` histogram on [-4, 4]^2 plus the Miller-Madow term."""
    x = toy.sample("checkerboard", n, seed=seed)
    counts, _, _ = np.histogram2d(x[:, 0], x[:, 1], bins=bins, range=[[-4, 4], [-4, 4]])
    q = counts[counts > 0] / n
    area = (8 / bins) ** 2
    return float(-(q * np.log(q / area)).sum() + (len(q) - 1) / (2 * n))


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {JSON_PATH.name}")
    parser.add_argument(
        "--res", type=float, default=4.0, help="grid points and latent nodes per kernel width"
    )
    parser.add_argument("--mc", type=int, default=100_000, help="Monte-Carlo check draws per set")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--only", nargs="*", choices=sorted(MODELS), help="numeric sets to run")
    args = parser.parse_args()
    if args.res <= 0 or args.mc < 2:
        raise ValueError("--res must be positive and --mc at least 2")

    if args.write and args.only:
        raise ValueError("--write needs every data set: drop --only")
    torch.set_num_threads(1)
    wall, cpu = time.time(), time.process_time()

    rows: list[Row] = []
    for i, name in enumerate(MODELS):
        if args.only and name not in args.only:
            continue
        t0 = time.time()
        # one seed per set, so that the checks' Monte-Carlo errors are independent
        rows.append(numeric_row(name, args.res, args.mc, args.seed + i))
        print(f"  {name}: {time.time() - t0:.1f} s", flush=True)
    rows += exact_rows(10 * args.mc, args.seed + len(MODELS))

    print(
        f"\n| data set | H (nats) | error | MC check ({args.mc} draws) | z | published | method |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        # checkerboard's -log p is constant: its standard error is rounding noise
        z = f"{(r.mc - r.value) / r.mc_se:+.1f}" if r.mc_se > 1e-12 else "n/a"
        pub = PUBLISHED.get(r.name)
        pub_text = f"{pub[0]} ± {pub[1]}" if pub else "exact"
        err = f"{r.error:.1e}" if r.name in MODELS else "exact"
        print(
            f"| {r.name} | {r.value:.6f} | {err} | {r.mc:.4f} ± {r.mc_se:.4f} | {z} "
            f"| {pub_text} | {r.method} |"
        )
    hist = checkerboard_histogram(10 * args.mc, args.seed)
    print(
        f"\ncheckerboard histogram (64^2 bins, Miller-Madow): {hist:.5f}, "
        f"ln 32 = {math.log(32):.5f}"
    )
    print(f"pinwheel no-overlap formula: {Pinwheel().no_overlap_entropy():.5f}")
    sigma = 0.5 / 1.414
    print(f"8gaussians no-overlap formula: {math.log(16 * math.pi * math.e * sigma**2):.5f}")
    print(f"total: {time.time() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU")
    print("\nPublished values more than 2 of their standard errors away:")
    for r in rows:
        if r.name in PUBLISHED:
            value, se = PUBLISHED[r.name]
            if abs(r.value - value) > 2 * se:
                print(f"  {r.name}: {r.value:.4f} vs {value} ({(r.value - value) / se:+.1f} se)")

    if args.write:
        table = {
            r.name: {
                "value": round(r.value, 6),
                "stderr": max(float(f"{r.error:.1g}"), 1e-6),
                "how": f"{r.method}; Monte-Carlo check {r.mc:.4f} ± {r.mc_se:.4f} "
                f"({args.mc} draws); scripts/toy_entropy.py",
            }
            for r in rows
            if r.name in MODELS
        }
        doc = {
            "command": "scripts/toy_entropy.py --write "
            f"--res {args.res:g} --mc {args.mc} --seed {args.seed}",
            "note": "stderr is the numerical error bound of the quadrature (1.5x refinement), "
            "at least 1e-6 (the rounding of value)",
            "entropies": table,
        }
        JSON_PATH.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {JSON_PATH}")


if __name__ == "__main__":
    main()
