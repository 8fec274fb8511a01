r"""Variational objectives: reverse KL to an unnormalised target, ELBO, IWAE, distillation.

All are estimated with **reparameterised** samples, so their gradients flow through the samples
into the flow's parameters (Kingma and Welling 2014, https://arxiv.org/abs/1312.6114).

- Reverse KL (Rezende and Mohamed 2015, https://arxiv.org/abs/1505.05770, section 6.1): for a
  target :math:`p = \tilde p / Z`,

  .. math:: \mathrm{KL}(q \| p) = \mathbb{E}_{x \sim q}[\log q(x) - \log \tilde p(x)] + \log Z,

  minimised by its Monte-Carlo estimate without ``log Z``; with annealing the target is
  :math:`\tilde p^{\beta_t}`, :math:`\beta_t = \min(1, 0.01 + t / 10000)` (the paper's schedule).
- ELBO and IWAE (Burda et al. 2016, https://arxiv.org/abs/1509.00519), from ``k`` log weights
  :math:`\log w_j = \log p(x, z_j) - \log q(z_j \mid x)`:

  .. math:: \mathcal L_{\mathrm{ELBO}} = \frac1k \sum_j \log w_j \;\le\;
      \mathcal L_k = \log \frac1k \sum_j w_j \;\le\; \log p(x).

- Probability density distillation (van den Oord et al. 2018, https://arxiv.org/abs/1711.10433):
  the reverse KL from a student ``q`` (cheap to sample, e.g. IAF) to a teacher density ``p``
  (cheap to evaluate, e.g. MAF), :math:`\mathbb{E}_q[\log q(x) - \log p(x)]`: :func:`reverse_kl`
  with the teacher's ``log_prob`` as the target (see :func:`flowforge.train.variational.distill`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from flowforge.flows import Flow

__all__ = ["anneal_beta", "elbo", "iwae_bound", "reverse_kl"]


def anneal_beta(step: int, start: float = 0.01, length: int = 10000) -> float:
    """The inverse temperature ``beta_t = min(1, start + step / length)`` of the paper."""
    if length < 1:
        raise ValueError(f"'length' should be positive, got {length}")
    return min(1.0, start + step / length)


def reverse_kl(
    flow: Flow,
    log_p: Callable[[Tensor], Tensor],
    n: int,
    beta: float = 1.0,
    context: Tensor | None = None,
) -> Tensor:
    r"""The loss :math:`\frac1n \sum_i [\log q(x_i) - \beta \log \tilde p(x_i)]`, ``x_i ~ q``
    reparameterised (one sampling pass of the flow); a scalar, ``KL(q || p) - log Z`` at
    ``beta = 1``.

    Arguments:
        flow: the variational distribution ``q``.
        log_p: the unnormalised target log-density, ``(n, *event) -> (n,)``.
        n: number of samples.
        beta: inverse temperature of the target (annealing).
        context: optional context of the flow.
    """
    if n < 1:
        raise ValueError(f"'n' should be positive, got {n}")
    x, log_q = flow.sample_and_log_prob(n, context)
    return (log_q - beta * log_p(x)).mean()


def _check_log_w(log_w: Tensor) -> None:
    if log_w.dim() < 1 or log_w.shape[0] < 1:
        raise ValueError(f"'log_w' should have shape (k, *batch), got {tuple(log_w.shape)}")


def elbo(log_w: Tensor) -> Tensor:
    """The ELBO from log importance weights ``(k, *batch)``: their mean over ``k``."""
    _check_log_w(log_w)
    return log_w.mean(0)


def iwae_bound(log_w: Tensor) -> Tensor:
    """The importance-weighted bound ``log mean_k exp(log_w)`` from ``(k, *batch)`` log weights
    (``k = 1`` is the ELBO; it increases with ``k`` towards ``log p(x)``)."""
    _check_log_w(log_w)
    return torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])
