r"""A deep Boltzmann machine with two hidden layers of binary units (Salakhutdinov and Hinton
2009, "Deep Boltzmann Machines", AISTATS), its mean-field inference and its partition function
by annealed importance sampling.

Energy of a visible layer :math:`v` and hidden layers :math:`h^1, h^2`:

.. math:: E(v, h^1, h^2) = -b^\top v - c_1^\top h^1 - c_2^\top h^2 - h^{1\top} W_1 v
    - h^{2\top} W_2 h^1.

Given :math:`h^1`, the layers :math:`v` and :math:`h^2` are independent, and given both,
:math:`h^1` is factorial, so a layer can be summed out analytically:

- :meth:`DBM.free_energy` sums out :math:`h^1`: :math:`F(v, h^2) = -b^\top v - c_2^\top h^2 -
  \sum_j \operatorname{softplus}(c_{1j} + W_{1j} v + W_{2,:j}^\top h^2)`;
- :meth:`DBM.log_unnormalized_hidden1` sums out :math:`v` and :math:`h^2` (the even layers):
  :math:`\log p^*(h^1) = c_1^\top h^1 + \sum_i \operatorname{softplus}(b_i + W_{1,:i}^\top h^1)
  + \sum_k \operatorname{softplus}(c_{2k} + W_{2k} h^1)`.

**Inference.** :math:`p(h^1, h^2 \mid v)` is not factorial; :meth:`DBM.mean_field` finds the
factorial :math:`q(h^1) q(h^2)` with means :math:`\mu_1, \mu_2` at a fixed point of

.. math:: \mu_1 = \sigma(c_1 + W_1 v + W_2^\top \mu_2), \qquad \mu_2 = \sigma(c_2 + W_2 \mu_1),

started, as in the paper, by the bottom-up pass of the pretrained stack, :math:`\mu_1 =
\sigma(c_1 + 2 W_1 v)` (the doubled recognition weights), :math:`\mu_2 = \sigma(c_2 + W_2
\mu_1)`. Any :math:`q` gives the variational lower bound (:meth:`DBM.variational_bound`)

.. math:: \log p(v) \ge -E(v, \mu_1, \mu_2) + \mathcal H(\mu_1) + \mathcal H(\mu_2) - \log Z,

the energy being linear in each layer (and the layers of :math:`q` independent), so its
expectation is the energy at the means. With :math:`\mu_2` optimal for :math:`\mu_1` the
:math:`h^2` terms equal :math:`\sum_k \operatorname{softplus}(c_{2k} + W_{2k} \mu_1)`.

**The partition function** (Salakhutdinov and Hinton 2009, section 4: AIS on the DBM with
layers summed out). :meth:`DBM.ais` anneals over :math:`h^1` alone, :math:`v` and :math:`h^2`
summed out, from a base model A with visible biases :math:`b_A` and nothing else (so
:math:`h^1` is uniform under it, :math:`\log Z_A = \sum_i \operatorname{softplus}(b_{A,i}) +
(H_1 + H_2) \log 2`) through

.. math:: \log p_\beta^*(h^1) = \beta c_1^\top h^1 + \sum_i \operatorname{softplus}((1-\beta)
    b_{A,i} + \beta (b_i + W_{1,:i}^\top h^1)) + \sum_k \operatorname{softplus}(\beta (c_{2k}
    + W_{2k} h^1)),

one Gibbs sweep :math:`h^1 \to (v, h^2) \to h^1` of :math:`p_\beta` per temperature
(:func:`flowforge.models.ais.anneal`). :meth:`DBM.log_z_uniform`, uniform importance sampling
over :math:`h^1`, is the second estimate that finds mass AIS's chains missed (as the RBM's);
:meth:`DBM.log_z_exact` enumerates :math:`h^1` (a test's DBM).

Training (greedy layer-wise pretraining, then mean-field and persistent chains) is in
:mod:`flowforge.objectives.dbm`.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowforge.models.ais import AISResult, all_states, anneal, paper_betas, uniform_log_z

__all__ = ["DBM"]


class DBM(nn.Module):
    """A binary DBM of ``visible`` x ``hidden1`` x ``hidden2`` units (module docstring).

    Arguments:
        visible: number of visible units (784 for binarized MNIST).
        hidden1, hidden2: units of the two hidden layers (the paper's MNIST DBM: 500 and 1000).
        init_scale: standard deviation of the initial weights; biases start at 0.
        sample_steps: Gibbs sweeps of :meth:`sample`'s chains from a random start.
        mean_field_steps: most fixed-point iterations of :meth:`mean_field`.
        mean_field_tol: :meth:`mean_field` stops once no mean moves by more than this.
    """

    #: what maps data to latents (the mean-field approximation of the posterior); read by
    #: ``flowforge compare``
    latent_inference: ClassVar[str] = "mean-field q(h|v)"

    def __init__(
        self,
        visible: int,
        hidden1: int = 500,
        hidden2: int = 1000,
        init_scale: float = 0.01,
        sample_steps: int = 1000,
        mean_field_steps: int = 30,
        mean_field_tol: float = 1e-5,
    ) -> None:
        super().__init__()
        if min(visible, hidden1, hidden2, sample_steps, mean_field_steps) < 1:
            raise ValueError(
                "'visible', 'hidden1', 'hidden2', 'sample_steps' and 'mean_field_steps' should "
                f"be positive, got {visible}, {hidden1}, {hidden2}, {sample_steps}, "
                f"{mean_field_steps}"
            )
        if not mean_field_tol >= 0:
            raise ValueError(f"'mean_field_tol' should be >= 0, got {mean_field_tol}")
        self.visible, self.hidden1, self.hidden2 = visible, hidden1, hidden2
        self.sample_steps = sample_steps
        self.mean_field_steps, self.mean_field_tol = mean_field_steps, mean_field_tol
        self.weight1 = nn.Parameter(init_scale * torch.randn(hidden1, visible))
        self.weight2 = nn.Parameter(init_scale * torch.randn(hidden2, hidden1))
        self.visible_bias = nn.Parameter(torch.zeros(visible))
        self.hidden1_bias = nn.Parameter(torch.zeros(hidden1))
        self.hidden2_bias = nn.Parameter(torch.zeros(hidden2))

    # -- energies ----------------------------------------------------------------------------
    def energy(self, v: Tensor, h1: Tensor, h2: Tensor) -> Tensor:
        """:math:`E(v, h^1, h^2)` per row (binary states or, for the mean-field bound, means):
        ``(n,)``."""
        return -(
            v @ self.visible_bias
            + h1 @ self.hidden1_bias
            + h2 @ self.hidden2_bias
            + ((v @ self.weight1.T) * h1).sum(-1)
            + ((h1 @ self.weight2.T) * h2).sum(-1)
        )

    def free_energy(self, v: Tensor, h2: Tensor) -> Tensor:
        """:math:`F(v, h^2)`, :math:`h^1` summed out: ``(n,)``."""
        pre = self.hidden1_bias + v @ self.weight1.T + h2 @ self.weight2
        return -v @ self.visible_bias - h2 @ self.hidden2_bias - F.softplus(pre).sum(-1)

    def log_unnormalized_hidden1(self, h1: Tensor) -> Tensor:
        """:math:`\\log p^*(h^1)`, :math:`v` and :math:`h^2` summed out: ``(n,)``, in
        ``h1``'s dtype."""
        W1, W2, b, c1, c2 = (p.to(h1.dtype) for p in self._parameters_in_order())
        return h1 @ c1 + F.softplus(h1 @ W1 + b).sum(-1) + F.softplus(h1 @ W2.T + c2).sum(-1)

    def _parameters_in_order(self) -> tuple[Tensor, ...]:
        return (
            self.weight1,
            self.weight2,
            self.visible_bias,
            self.hidden1_bias,
            self.hidden2_bias,
        )

    # -- inference ---------------------------------------------------------------------------
    @torch.no_grad()
    def mean_field(
        self, v: Tensor, steps: int | None = None, tol: float | None = None
    ) -> tuple[Tensor, Tensor]:
        """The means :math:`\\mu_1, \\mu_2` of the factorial posterior of ``v`` (module
        docstring): at most ``steps`` sweeps (default ``mean_field_steps``), fewer once no mean
        moves by more than ``tol`` (default ``mean_field_tol``); without autograd, as the
        surrogate and the bound treat the means as constants."""
        steps = self.mean_field_steps if steps is None else steps
        tol = self.mean_field_tol if tol is None else tol
        W1, W2 = self.weight1, self.weight2
        bottom_up = v @ W1.T + self.hidden1_bias
        mu1 = torch.sigmoid(bottom_up + v @ W1.T)  # the doubled recognition weights
        mu2 = torch.sigmoid(mu1 @ W2.T + self.hidden2_bias)
        for _ in range(steps):
            new1 = torch.sigmoid(bottom_up + mu2 @ W2)
            new2 = torch.sigmoid(new1 @ W2.T + self.hidden2_bias)
            moved = max(float((new1 - mu1).abs().max()), float((new2 - mu2).abs().max()))
            mu1, mu2 = new1, new2
            if moved <= tol:
                break
        return mu1, mu2

    def variational_bound(
        self, v: Tensor, mu1: Tensor | None = None, mu2: Tensor | None = None
    ) -> Tensor:
        """The lower bound on :math:`\\log p^*(v) = \\log p(v) + \\log Z` of the factorial
        posterior with means ``mu1``, ``mu2`` (default: :meth:`mean_field`'s): ``(n,)``."""
        if mu1 is None or mu2 is None:
            mu1, mu2 = self.mean_field(v)
        entropy = (torch.special.entr(mu1) + torch.special.entr(1 - mu1)).sum(-1) + (
            torch.special.entr(mu2) + torch.special.entr(1 - mu2)
        ).sum(-1)
        return -self.energy(v, mu1, mu2) + entropy

    # -- Gibbs sampling ----------------------------------------------------------------------
    def split(self, state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """A chain state ``(n, visible + hidden1 + hidden2)`` as its layers ``v, h1, h2``."""
        v, h1, h2 = state.split([self.visible, self.hidden1, self.hidden2], dim=-1)
        return v, h1, h2

    @torch.no_grad()
    def gibbs(self, state: Tensor, k: int = 1, temperature: float = 1.0) -> Tensor:
        """``k`` sweeps ``h1 -> (v, h2) -> h1`` from the chain ``state`` (:meth:`split`), at
        ``temperature`` (energies divided by it): the new state."""
        v, h1, h2 = self.split(state)
        for _ in range(k):
            v, h2 = self._even_layers(h1, temperature)
            h1 = torch.bernoulli(self._hidden1_probs(v, h2, temperature))
        return torch.cat([v, h1, h2], -1)

    def _even_layers(self, h1: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
        v = torch.bernoulli(torch.sigmoid((h1 @ self.weight1 + self.visible_bias) / temperature))
        h2 = torch.bernoulli(torch.sigmoid((h1 @ self.weight2.T + self.hidden2_bias) / temperature))
        return v, h2

    def _hidden1_probs(self, v: Tensor, h2: Tensor, temperature: float = 1.0) -> Tensor:
        pre = self.hidden1_bias + v @ self.weight1.T + h2 @ self.weight2
        return torch.sigmoid(pre / temperature)

    @torch.no_grad()
    def sample(self, n: int, context: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """The visible probabilities :math:`p(v \\mid h^1)` after ``sample_steps`` Gibbs sweeps
        of ``n`` chains started from uniform noise, at ``temperature``: ``(n, visible)`` in
        [0, 1] (the means, as the RBM's samples)."""
        if context is not None:
            raise ValueError("a DBM takes no context")
        if n < 1 or not temperature > 0:
            raise ValueError(f"'n' and 'temperature' should be positive, got {n}, {temperature}")
        w = self.weight1
        units = self.visible + self.hidden1 + self.hidden2
        state = torch.bernoulli(torch.full((n, units), 0.5, device=w.device, dtype=w.dtype))
        h1 = self.split(self.gibbs(state, self.sample_steps, temperature))[1]
        return torch.sigmoid((h1 @ self.weight1 + self.visible_bias) / temperature)

    # -- the partition function --------------------------------------------------------------
    @torch.no_grad()
    def log_z_exact(self) -> float:
        """:math:`\\log Z` by enumerating :math:`h^1` (at most 24 units: a test's DBM), the
        other layers summed out."""
        h1 = all_states(self.hidden1, self.weight1.double())
        return float(torch.logsumexp(self.log_unnormalized_hidden1(h1), 0))

    @torch.no_grad()
    def ais(
        self,
        chains: int = 100,
        betas: Tensor | int = 14500,
        base_bias: Tensor | None = None,
    ) -> AISResult:
        """AIS estimate of :math:`\\log Z` over :math:`h^1` (module docstring).

        Arguments:
            chains: independent AIS runs (the paper: 100).
            betas: the inverse temperatures from 0 to 1, or their number of steps for
                :func:`~flowforge.models.ais.paper_betas`.
            base_bias: the base model's visible biases :math:`b_A` (the training data's base
                rates, :math:`\\log \\bar v / (1 - \\bar v)`); default 0.
        """
        if isinstance(betas, int):
            betas = paper_betas(betas)
        W1, W2, b, c1, c2 = (p.double() for p in self._parameters_in_order())
        bA = torch.zeros_like(b) if base_bias is None else base_bias.to(W1)

        def step(h1: Tensor, beta_prev: float, beta: float) -> tuple[Tensor, Tensor]:
            v_pre, h2_pre, linear = h1 @ W1 + b, h1 @ W2.T + c2, h1 @ c1

            def log_p_star(t: float) -> Tensor:
                return (
                    t * linear
                    + F.softplus((1 - t) * bA + t * v_pre).sum(-1)
                    + F.softplus(t * h2_pre).sum(-1)
                )

            ratio = log_p_star(beta) - log_p_star(beta_prev)
            # one Gibbs sweep that leaves p_beta invariant
            v = torch.bernoulli(torch.sigmoid((1 - beta) * bA + beta * v_pre))
            h2 = torch.bernoulli(torch.sigmoid(beta * h2_pre))
            h1 = torch.bernoulli(torch.sigmoid(beta * (c1 + v @ W1.T + h2 @ W2)))
            return ratio, h1

        h1 = torch.bernoulli(torch.full((chains, self.hidden1), 0.5, dtype=W1.dtype))
        log_z_a = float(F.softplus(bA).sum()) + (self.hidden1 + self.hidden2) * math.log(2)
        return anneal(h1.to(W1.device), step, betas, log_z_a)

    @torch.no_grad()
    def log_z_uniform(self, samples: int = 100_000, batch: int = 10_000) -> float:
        """The second estimate of :math:`\\log Z`: importance sampling from the uniform
        distribution over :math:`h^1`, the other layers summed out
        (:func:`~flowforge.models.ais.uniform_log_z`)."""
        return uniform_log_z(
            self.log_unnormalized_hidden1, self.hidden1, samples, batch, self.weight1
        )

    def extra_repr(self) -> str:
        return f"visible={self.visible}, hidden1={self.hidden1}, hidden2={self.hidden2}"
