r"""2-D toy data sets as pure seeded functions, each with its true entropy.

The generators are the standard ones of FFJORD (Grathwohl et al. 2019,
https://arxiv.org/abs/1810.01367) and BNAF, written here with numpy only (moons, circles and
the swiss roll follow scikit-learn's definitions), plus the parabola of the MAF paper's
Figure 1 (Papamakarios et al. 2017), which is also the data of the classic RealNVP toy
experiment, and the 25-Gaussian grid of the mode-collapse studies (VEEGAN, Srivastava et al.
2017, https://arxiv.org/abs/1705.07761; PacGAN, Lin et al. 2018,
https://arxiv.org/abs/1712.04086). ``sample(name, n, seed)`` returns ``(n, 2)`` float32.
:data:`MODES` holds the centres and sd of the Gaussian mixtures, which
:data:`flowforge.metrics.KNOWN_MODES` counts modes with.

A data set's entropy :math:`H = -\mathbb{E}_p[\log p(x)]` is the best test NLL (nats per
point) any model can reach. Three have closed forms; the others are computed by
``scripts/toy_entropy.py`` from each generator's exact density (quadrature over its latent,
checked against a Monte-Carlo average), with their numerical error in :data:`ENTROPY`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DATASETS", "ENTROPY", "MODES", "Entropy", "sample"]


@dataclass(frozen=True)
class Entropy:
    """True entropy in nats; ``stderr = 0`` means exact."""

    value: float
    stderr: float
    how: str


def _shuffle(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x[rng.permutation(len(x))]


def moons(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two interleaved half circles (scikit-learn ``make_moons``, noise 0.1), x 2 + (-1, -0.2)."""
    n_out = n // 2
    n_in = n - n_out
    a, b = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n_in)
    x = np.concatenate(
        [np.stack([np.cos(a), np.sin(a)], 1), np.stack([1 - np.cos(b), 1 - np.sin(b) - 0.5], 1)]
    )
    x = _shuffle(x, rng) + rng.normal(scale=0.1, size=x.shape)
    return x * 2 + np.array([-1.0, -0.2])


def circles(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two concentric circles of radii 1 and 0.5 (``make_circles``, noise 0.08), x 3."""
    n_out = n // 2
    n_in = n - n_out
    a = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    b = np.linspace(0, 2 * np.pi, n_in, endpoint=False)
    x = np.concatenate(
        [np.stack([np.cos(a), np.sin(a)], 1), 0.5 * np.stack([np.cos(b), np.sin(b)], 1)]
    )
    x = _shuffle(x, rng) + rng.normal(scale=0.08, size=x.shape)
    return x * 3


def rings(n: int, rng: np.random.Generator) -> np.ndarray:
    """Four concentric circles of radii 3, 2.25, 1.5 and 0.75 with Gaussian noise 0.08."""
    sizes = [n - 3 * (n // 4)] + [n // 4] * 3
    parts = []
    for radius, m in zip((0.25, 0.5, 0.75, 1.0), sizes, strict=True):
        t = np.linspace(0, 2 * np.pi, m, endpoint=False)
        parts.append(radius * np.stack([np.cos(t), np.sin(t)], 1))
    x = _shuffle(np.concatenate(parts) * 3.0, rng)
    return x + rng.normal(scale=0.08, size=x.shape)


def swissroll(n: int, rng: np.random.Generator) -> np.ndarray:
    """The swiss roll (``make_swiss_roll``, noise 1) seen in its x-z plane, / 5."""
    t = 1.5 * np.pi * (1 + 2 * rng.random(n))
    x = np.stack([t * np.cos(t), t * np.sin(t)], 1)
    return (x + rng.normal(size=x.shape)) / 5


_S = 1 / math.sqrt(2)
_EIGHT = 4 * np.array(
    [(1, 0), (-1, 0), (0, 1), (0, -1), (_S, _S), (_S, -_S), (-_S, _S), (-_S, -_S)]
)

#: centres ``(K, 2)`` and common standard deviation of the equal-weight Gaussian mixtures
MODES: dict[str, tuple[np.ndarray, float]] = {
    "8gaussians": (_EIGHT / 1.414, 0.5 / 1.414),
    "25gaussians": (
        np.array([(a, b) for a in range(-4, 5, 2) for b in range(-4, 5, 2)], float),
        0.05,
    ),
}


def eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """Eight Gaussians (sd 0.5) centred on a circle of radius 4, everything / 1.414."""
    x = rng.normal(size=(n, 2)) * 0.5 + _EIGHT[rng.integers(0, 8, n)]
    return x / 1.414


def twentyfive_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """25 equal-weight Gaussians of sd 0.05 centred on the grid {-4, -2, 0, 2, 4}^2, as in
    VEEGAN (Sec. 5.1: means (-4 + 2i, -4 + 2j), i, j in 0..4, sd 0.05) and PacGAN (variance
    0.0025). Neighbouring centres are 40 sd apart."""
    centers, sd = MODES["25gaussians"]
    return centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, 2)) * sd


def pinwheel(n: int, rng: np.random.Generator) -> np.ndarray:
    """Five spiral arms: radial sd 0.3, tangential sd 0.1, rate 0.25, x 2."""
    k, per = 5, n // 5
    counts = [n - per * (k - 1)] + [per] * (k - 1)
    labels = np.repeat(np.arange(k), counts)
    f = rng.normal(size=(n, 2)) * np.array([0.3, 0.1])
    f[:, 0] += 1.0
    angles = np.linspace(0, 2 * np.pi, k, endpoint=False)[labels] + 0.25 * np.exp(f[:, 0])
    c, s = np.cos(angles), np.sin(angles)
    # f @ [[c, -s], [s, c]] row by row
    x = np.stack([f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], 1)
    return 2 * _shuffle(x, rng)


def two_spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    """Two interleaved spirals with uniform jitter 0.5, / 3, plus Gaussian noise 0.1."""
    m = (n + 1) // 2  # points per spiral; one extra is dropped when n is odd
    t = np.sqrt(rng.random((m, 1))) * 540 * (2 * np.pi) / 360
    jitter_x, jitter_y = rng.random((m, 1)) * 0.5, rng.random((m, 1)) * 0.5
    d1 = np.hstack([-np.cos(t) * t + jitter_x, np.sin(t) * t + jitter_y])
    x = (np.vstack([d1, -d1]) / 3)[:n]
    return _shuffle(x + rng.normal(size=x.shape) * 0.1, rng)


def checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform on 8 of the 16 unit squares of [-2, 2]^2 (a checkerboard), x 2: area 32."""
    x1 = rng.random(n) * 4 - 2
    x2 = rng.random(n) - rng.integers(0, 2, n) * 2 + np.floor(x1) % 2
    return np.stack([x1, x2], 1) * 2


def parabola(n: int, rng: np.random.Generator) -> np.ndarray:
    """MAF Figure 1 / classic RealNVP toy: x2 ~ N(0, 4^2), x1 | x2 ~ N(x2^2 / 4, 1)."""
    x2 = rng.normal(size=n) * 4
    x1 = x2**2 / 4 + rng.normal(size=n)
    return np.stack([x1, x2], 1)


DATASETS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "moons": moons,
    "circles": circles,
    "rings": rings,
    "swissroll": swissroll,
    "8gaussians": eight_gaussians,
    "25gaussians": twentyfive_gaussians,
    "pinwheel": pinwheel,
    "2spirals": two_spirals,
    "checkerboard": checkerboard,
    "parabola": parabola,
}


def _numerical_entropies() -> dict[str, Entropy]:
    """The values ``scripts/toy_entropy.py --write`` stored in ``toy_entropy.json``."""
    table = json.loads(Path(__file__).with_name("toy_entropy.json").read_text())["entropies"]
    return {name: Entropy(e["value"], e["stderr"], e["how"]) for name, e in table.items()}


ENTROPY: dict[str, Entropy] = {
    "checkerboard": Entropy(math.log(32), 0.0, "exact: uniform on area 32"),
    # K modes with disjoint supports would have H = log K + log(2 pi e sd^2); the tails overlap
    # at 20 sd from each centre, which moves H by about exp(-200)
    "25gaussians": Entropy(
        math.log(25) + math.log(2 * math.pi * math.e * 0.05**2),
        0.0,
        "exact to double precision: ln 25 + ln(2 pi e 0.05^2) (modes 40 sd apart)",
    ),
    "parabola": Entropy(
        math.log(2 * math.pi * math.e) + math.log(4), 0.0, "exact: ln(2 pi e) + ln 4"
    ),
    # 8gaussians (its modes overlap), moons, circles, rings, swissroll, 2spirals, pinwheel:
    # quadrature of the exact density, checked by Monte Carlo; see scripts/toy_entropy.py and
    # docs/toy-data.md
    **_numerical_entropies(),
}


def sample(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Draws ``n`` points ``(n, 2)`` (float32) of the data set ``name`` with a seeded RNG."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    if n < 1:
        raise ValueError(f"'n' should be positive, got {n}")
    return DATASETS[name](n, np.random.default_rng(seed)).astype(np.float32)
