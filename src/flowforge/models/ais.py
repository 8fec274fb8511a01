r"""Annealed importance sampling (Neal 2001) of a partition function, and the pieces the
Boltzmann machines share: the inverse-temperature schedule, the estimate with its spread, a
second estimate by uniform importance sampling and the enumeration of binary states.

AIS anneals from a base model A with a known :math:`Z_A` to the target B through unnormalised
intermediate distributions :math:`p_k^*`, :math:`0 = \beta_0 < \dots < \beta_K = 1`. Each of
``chains`` independent runs starts from :math:`x \sim p_A`, adds :math:`\log p_k^*(x) -
\log p_{k-1}^*(x)` to its log weight and then takes one Markov step that leaves :math:`p_k`
invariant; :math:`\hat Z_B = Z_A \cdot \frac1M \sum_m w_m`. :math:`\hat Z` is unbiased,
:math:`\log \hat Z` biased low (Jensen), so an AIS test log-likelihood tends to be
optimistic. The estimate's spread: :class:`AISResult` keeps the standard error of
:math:`\frac1M \sum w_m` over the chains, :math:`\hat\sigma`, as :math:`\log(\hat Z \pm
3\hat\sigma)` (Salakhutdinov and Murray's error bars) and, by the delta method, the standard
error of :math:`\log \hat Z`, :math:`\hat\sigma / \hat Z`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["AISResult", "all_states", "anneal", "paper_betas", "uniform_log_z"]


def paper_betas(n: int = 14500, dtype: torch.dtype = torch.float64) -> Tensor:
    """The inverse temperatures of Salakhutdinov and Murray (2008): ``n + 1`` values from 0 to
    1, a tenth (500 of 14,500) of the steps spread evenly up to 0.5, 4,000 to 0.9 and 10,000 to 1
    (the paper's step sizes 1e-3, 1e-4, 1e-4 at ``n = 14500``; other ``n`` scale the counts)."""
    if n < 3:
        raise ValueError(f"'n' should be at least 3, got {n}")
    a = max(1, round(n * 500 / 14500))
    b = max(1, round(n * 4000 / 14500))
    c = max(1, n - a - b)
    return torch.cat(
        [
            torch.linspace(0.0, 0.5, a + 1, dtype=dtype)[:-1],
            torch.linspace(0.5, 0.9, b + 1, dtype=dtype)[:-1],
            torch.linspace(0.9, 1.0, c + 1, dtype=dtype),
        ]
    )


@dataclass
class AISResult:
    """An AIS estimate of :math:`\\log Z`.

    Attributes:
        log_z: :math:`\\log \\hat Z`.
        stderr: the standard error of :math:`\\log \\hat Z` over the chains (delta method,
            :math:`\\hat\\sigma / \\hat Z`).
        log_z_low, log_z_high: :math:`\\log(\\hat Z \\mp 3 \\hat\\sigma)` (``-inf`` when
            :math:`3\\hat\\sigma > \\hat Z`).
        chains, steps: the number of chains and of intermediate distributions.
        log_weights: each chain's log importance weight (``(chains,)``, float64).
    """

    log_z: float
    stderr: float
    log_z_low: float
    log_z_high: float
    chains: int
    steps: int
    log_weights: Tensor


def anneal(
    start: Tensor,
    step: Callable[[Tensor, float, float], tuple[Tensor, Tensor]],
    betas: Tensor,
    log_z_a: float,
) -> AISResult:
    """AIS (module docstring) of the chains ``start`` ``(chains, ...)``, drawn from the base
    model, whose :math:`\\log Z_A` is ``log_z_a``, through the inverse temperatures ``betas``
    from 0 to 1: ``step(x, beta_prev, beta)`` returns :math:`\\log p_\\beta^*(x) - \\log
    p_{\\beta_{prev}}^*(x)` per chain and the chains after one Markov step that leaves
    :math:`p_\\beta` invariant (one function, so the two can share their products)."""
    if start.shape[0] < 2:
        raise ValueError(f"'chains' should be at least 2, got {start.shape[0]}")
    beta_list = [float(x) for x in betas]
    if len(beta_list) < 2 or beta_list[0] != 0.0 or beta_list[-1] != 1.0:
        raise ValueError("'betas' should run from 0 to 1")
    x = start
    log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for beta_prev, beta in zip(beta_list[:-1], beta_list[1:], strict=True):
        ratio, x = step(x, beta_prev, beta)
        log_w += ratio.double()
    return _result(log_w, log_z_a, len(beta_list) - 1)


def uniform_log_z(
    log_p_star: Callable[[Tensor], Tensor],
    units: int,
    samples: int,
    batch: int,
    like: Tensor,
) -> float:
    r""":math:`\log Z` by importance sampling from the uniform distribution over the binary
    states of ``units`` units, :math:`\hat Z = 2^n \frac1S \sum_s p^*(x_s)`, ``samples`` states
    drawn ``batch`` at a time (on ``like``'s device, in its dtype).

    :math:`\hat Z` is unbiased, so :math:`\log \hat Z` underestimates :math:`\log Z` in
    expectation, like AIS's. It is poor where the mass sits on few states but finds what AIS
    started from the data's base rates can miss: mass spread over noise-like states. The larger
    of the two estimates is the better lower bound."""
    if samples < 1 or batch < 1:
        raise ValueError(f"'samples' and 'batch' should be positive, got {samples}, {batch}")
    parts = []
    for first in range(0, samples, batch):
        m = min(batch, samples - first)
        x = torch.bernoulli(torch.full((m, units), 0.5, device=like.device, dtype=like.dtype))
        parts.append(log_p_star(x).double())
    log_w = torch.cat(parts)
    return float(torch.logsumexp(log_w, 0)) - math.log(samples) + units * math.log(2)


def all_states(n: int, like: Tensor) -> Tensor:
    """Every binary vector of length ``n``: ``(2**n, n)``, in ``like``'s dtype and device."""
    if n > 24:
        raise ValueError(f"too many states to enumerate: 2**{n}")
    states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=like.dtype)
    return states.to(like.device)


def _result(log_w: Tensor, log_z_a: float, steps: int) -> AISResult:
    m = log_w.numel()
    shift = log_w.max()
    w = torch.exp(log_w - shift)  # weights / max weight
    mean, se = w.mean(), w.std() / math.sqrt(m)
    log_mean = float(torch.log(mean) + shift) + log_z_a
    low = float(torch.log(mean - 3 * se) + shift) + log_z_a if mean > 3 * se else -math.inf
    high = float(torch.log(mean + 3 * se) + shift) + log_z_a
    return AISResult(
        log_z=log_mean,
        stderr=float(se / mean),
        log_z_low=low,
        log_z_high=high,
        chains=m,
        steps=steps,
        log_weights=log_w.cpu(),
    )
