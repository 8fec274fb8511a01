r"""A restricted Boltzmann machine with binary visible and hidden units, and its partition
function by annealed importance sampling.

Energy :math:`E(v, h) = -b^\top v - c^\top h - h^\top W v`; summing out the hidden units gives
the free energy

.. math:: F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + W_j v), \qquad
    \log p(v) = -F(v) - \log Z.

Training (Hinton 2002, contrastive divergence; Tieleman 2008, persistent CD) is in
:mod:`flowforge.objectives.rbm`. :math:`\log Z` is intractable for MNIST's 784 x 500 RBM; it is
estimated by **annealed importance sampling** (Neal 2001) as Salakhutdinov and Murray (2008,
"On the quantitative analysis of deep belief networks", ICML) do it:

- base model A: the same visible units with biases :math:`b_A` and no interaction,
  :math:`\log Z_A = \sum_i \operatorname{softplus}(b_{A,i}) + H \log 2`;
- intermediate distributions :math:`p_k^*(v) = e^{(1-\beta_k) b_A^\top v + \beta_k b^\top v}
  \prod_j (1 + e^{\beta_k (c_j + W_j v)})`, :math:`0 = \beta_0 < \dots < \beta_K = 1` (the
  paper: steps of 1e-3 to 0.5, 1e-4 to 0.9, 1e-4 to 1, 14,500 in all:
  :func:`~flowforge.models.ais.paper_betas`);
- each of ``chains`` independent runs starts from :math:`v \sim p_A`, takes one Gibbs sweep
  that leaves :math:`p_k` invariant per step and adds :math:`\log p_k^*(v) - \log
  p_{k-1}^*(v)` to its log weight; :math:`\hat Z_B = Z_A \cdot \frac1M \sum_m w_m`
  (:func:`flowforge.models.ais.anneal`, with the estimate's spread).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowforge.models.ais import AISResult, all_states, anneal, paper_betas, uniform_log_z

__all__ = ["RBM"]


class RBM(nn.Module):
    """A binary-binary RBM of ``visible`` x ``hidden`` units (see the module docstring).

    Arguments:
        visible: number of visible units (784 for binarized MNIST).
        hidden: number of hidden units (500 in Salakhutdinov and Murray 2008).
        init_scale: standard deviation of the initial weights (0.01, Hinton's practical
            guide, 2010); biases start at 0.
        sample_steps: Gibbs sweeps of :meth:`sample`'s chains from a random start.
    """

    #: what maps data to latents (the factorial posterior, exactly); read by ``flowforge compare``
    latent_inference: ClassVar[str] = "exact p(h|v)"

    def __init__(
        self, visible: int, hidden: int = 500, init_scale: float = 0.01, sample_steps: int = 1000
    ) -> None:
        super().__init__()
        if visible < 1 or hidden < 1 or sample_steps < 1:
            raise ValueError(
                f"'visible', 'hidden' and 'sample_steps' should be positive, got {visible}, "
                f"{hidden}, {sample_steps}"
            )
        self.visible, self.hidden, self.sample_steps = visible, hidden, sample_steps
        self.weight = nn.Parameter(init_scale * torch.randn(hidden, visible))
        self.visible_bias = nn.Parameter(torch.zeros(visible))
        self.hidden_bias = nn.Parameter(torch.zeros(hidden))

    # -- energies ----------------------------------------------------------------------------
    def free_energy(self, v: Tensor) -> Tensor:
        """:math:`F(v)` of each row of ``v`` ``(n, visible)``: ``(n,)``."""
        return -v @ self.visible_bias - F.softplus(v @ self.weight.T + self.hidden_bias).sum(-1)

    def log_unnormalized(self, v: Tensor) -> Tensor:
        """:math:`-F(v) = \\log p(v) + \\log Z`."""
        return -self.free_energy(v)

    # -- Gibbs sampling ----------------------------------------------------------------------
    def hidden_probs(self, v: Tensor, beta: float | Tensor = 1.0) -> Tensor:
        return torch.sigmoid(beta * (v @ self.weight.T + self.hidden_bias))

    def visible_logits(self, h: Tensor) -> Tensor:
        return h @ self.weight + self.visible_bias

    @torch.no_grad()
    def gibbs(self, v: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        """``k`` block-Gibbs sweeps ``v -> h -> v`` from ``v``: the last binary ``v`` and the
        probabilities it was drawn from."""
        probs = v
        for _ in range(k):
            h = torch.bernoulli(self.hidden_probs(v))
            probs = torch.sigmoid(self.visible_logits(h))
            v = torch.bernoulli(probs)
        return v, probs

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """The visible probabilities after ``sample_steps`` Gibbs sweeps of ``n`` chains
        started from uniform noise, at ``temperature`` (energies divided by it): ``(n,
        visible)`` in [0, 1] (the means, as the VAE's samples)."""
        if context is not None:
            raise ValueError("an RBM takes no context")
        if n < 1 or not temperature > 0:
            raise ValueError(f"'n' and 'temperature' should be positive, got {n}, {temperature}")
        w = self.weight
        v = torch.bernoulli(torch.full((n, self.visible), 0.5, device=w.device, dtype=w.dtype))
        probs = v
        for _ in range(self.sample_steps):
            h = torch.bernoulli(self.hidden_probs(v, 1 / temperature))
            probs = torch.sigmoid(self.visible_logits(h) / temperature)
            v = torch.bernoulli(probs)
        return probs

    # -- the partition function --------------------------------------------------------------
    @torch.no_grad()
    def log_z_exact(self) -> float:
        """:math:`\\log Z` by enumerating the smaller layer (at most 24 units: a test's RBM)."""
        W, b, c = self.weight.double(), self.visible_bias.double(), self.hidden_bias.double()
        if self.hidden <= self.visible:  # sum over h: c.h + sum_i softplus(b_i + (W^T h)_i)
            h = all_states(self.hidden, W)
            terms = h @ c + F.softplus(h @ W + b).sum(-1)
        else:
            v = all_states(self.visible, W)
            terms = v @ b + F.softplus(v @ W.T + c).sum(-1)
        return float(torch.logsumexp(terms, 0))

    @torch.no_grad()
    def ais(
        self,
        chains: int = 100,
        betas: Tensor | int = 14500,
        base_bias: Tensor | None = None,
    ) -> AISResult:
        """AIS estimate of :math:`\\log Z` (Salakhutdinov and Murray 2008; module docstring).

        Arguments:
            chains: independent AIS runs (the paper: 100).
            betas: the inverse temperatures from 0 to 1, or their number of steps for
                :func:`paper_betas`.
            base_bias: the base model's visible biases :math:`b_A` (the paper: the
                maximum-likelihood base rates of the training data,
                :math:`\\log \\bar v / (1 - \\bar v)`); default 0 (uniform).
        """
        if isinstance(betas, int):
            betas = paper_betas(betas)
        W, b, c = self.weight.double(), self.visible_bias.double(), self.hidden_bias.double()
        bA = torch.zeros_like(b) if base_bias is None else base_bias.to(W)

        def step(v: Tensor, beta_prev: float, beta: float) -> tuple[Tensor, Tensor]:
            pre = v @ W.T + c

            def log_p_star(t: float) -> Tensor:
                return (1 - t) * (v @ bA) + t * (v @ b) + F.softplus(t * pre).sum(-1)

            ratio = log_p_star(beta) - log_p_star(beta_prev)
            # one Gibbs sweep that leaves p_beta invariant
            h = torch.bernoulli(torch.sigmoid(beta * pre))
            return ratio, torch.bernoulli(torch.sigmoid((1 - beta) * bA + beta * (h @ W + b)))

        v = torch.bernoulli(torch.sigmoid(bA).expand(chains, -1))
        log_z_a = float(F.softplus(bA).sum()) + self.hidden * math.log(2)
        return anneal(v, step, betas, log_z_a)

    @torch.no_grad()
    def log_z_uniform(self, samples: int = 100_000, batch: int = 10_000) -> float:
        r"""A second, independent estimate of :math:`\log Z`: importance sampling from the
        uniform distribution over visible states,
        :math:`\hat Z = 2^D \frac1n \sum_i e^{-F(v_i)}`, :math:`v_i` uniform.

        :math:`\hat Z` is unbiased, so :math:`\log \hat Z` underestimates :math:`\log Z` in
        expectation (Jensen), like AIS's. It is poor where the mass sits on few states but finds
        what AIS started from the data's base rates can miss: mass spread over noise-like
        states, which an RBM trained briefly by CD (whose chains start at the data) may keep
        (docs/comparison.md). The larger of the two estimates is the better lower bound."""
        return uniform_log_z(self.log_unnormalized, self.visible, samples, batch, self.weight)

    def extra_repr(self) -> str:
        return f"visible={self.visible}, hidden={self.hidden}"
