r"""Reverse KL to an unnormalised target: variational inference with a flow.

For a target :math:`p = \tilde p / Z` and a flow :math:`q` that is cheap to sample (planar,
radial, IAF, RealNVP, ...), minimise the Monte-Carlo estimate of

.. math:: \mathrm{KL}(q \| p) = \mathbb{E}_{x \sim q}[\log q(x) - \log \tilde p(x)] + \log Z

without the constant :math:`\log Z`, on reparameterised samples, so the gradient flows through
the samples (Rezende and Mohamed 2015, https://arxiv.org/abs/1505.05770, section 6.1). With
``anneal`` the target is :math:`\tilde p^{\beta_t}`, :math:`\beta_t = \min(1, 0.01 +
t / \mathrm{anneal})` (the paper: 10000). Validation is the loss
:math:`\mathbb{E}_q[\log q - \log \tilde p]` on ``val_samples`` fresh samples from fixed
random numbers; the test numbers add :math:`\log Z` where the target knows it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowforge.flows import Flow
from flowforge.objectives.base import (
    Objective,
    ObjectiveError,
    Setting,
    anneal_beta,
    eval_mode,
    evaluation_rng,
)
from flowforge.objectives.results import Evaluation, Measure
from flowforge.targets import TARGETS, Target, make_target

__all__ = ["ReverseKL", "estimate_kl", "reverse_kl"]


def reverse_kl(
    flow: Flow,
    log_p: Any,
    n: int,
    beta: float | Tensor = 1.0,
    context: Tensor | None = None,
) -> Tensor:
    r"""The loss :math:`\frac1n \sum_i [\log q(x_i) - \beta \log \tilde p(x_i)]`, ``x_i ~ q``
    reparameterised (one sampling pass of the flow); a scalar, ``KL(q || p) - log Z`` at
    ``beta = 1``. ``log_p`` maps ``(n, *event)`` to ``(n,)``."""
    if n < 1:
        raise ValueError(f"'n' should be positive, got {n}")
    x, log_q = flow.sample_and_log_prob(n, context)
    return (log_q - beta * log_p(x)).mean()


@torch.no_grad()
def estimate_kl(
    flow: Flow, target: Target, n: int = 20000, chunk: int = 10000
) -> tuple[float, float, float | None]:
    """``(loss, stderr, kl)``: ``E_q[log q - log p~]`` on ``n`` samples, its standard error,
    and ``loss + log Z`` (``None`` when ``log Z`` is unknown)."""
    if n < 2:
        raise ValueError(f"'n' should be at least 2, got {n}")
    gaps = []
    for m in [chunk] * (n // chunk) + ([n % chunk] if n % chunk else []):
        x, log_q = flow.sample_and_log_prob(m)
        gaps.append(log_q - target(x))
    d = torch.cat(gaps).double()
    loss, stderr = float(d.mean()), float(d.std() / math.sqrt(n))
    return loss, stderr, None if target.log_z is None else loss + target.log_z


class _ReverseKLLoss(nn.Module):
    """``forward(beta)``: the reverse-KL loss on ``n`` fresh samples."""

    def __init__(self, flow: Flow, target: Target, n: int) -> None:
        super().__init__()
        self.flow, self.target, self.n = flow, target, n

    def forward(self, beta: Tensor) -> Tensor:
        return reverse_kl(self.flow, self.target, self.n, beta)


class ReverseKL(Objective):
    """Fits a flow to a registered target (:data:`flowforge.targets.TARGETS`: U1-U4,
    funnel, banana, or one added with :func:`~flowforge.targets.register_target`).

    Arguments:
        setting: from the run (``batch_size`` is the samples per step).
        target: the target's name.
        anneal: annealing length in steps (0: off; the paper uses 10000).
        val_samples: samples of each validation estimate.
        eval_samples: samples of the final (test) estimate.
    """

    name = "reverse_kl"
    metric = "loss"
    uses_data = False
    model_type = Flow
    figures = "target"

    def __init__(
        self,
        setting: Setting,
        target: str = "",
        anneal: int = 0,
        val_samples: int = 2000,
        eval_samples: int = 20000,
    ) -> None:
        super().__init__(setting)
        if anneal < 0:
            raise ObjectiveError(f"objective.anneal: should be >= 0 (0: off), got {anneal}")
        for key, value in (("val_samples", val_samples), ("eval_samples", eval_samples)):
            if value < 2:
                raise ObjectiveError(f"objective.{key}: should be at least 2, got {value}")
        self.target = self.make_target(target)
        self.anneal, self.val_samples, self.eval_samples = anneal, val_samples, eval_samples

    def make_target(self, name: str) -> Target:
        if not name or name not in TARGETS:
            raise ObjectiveError(
                f"objective.target: unknown target {name!r}; choose one of {sorted(TARGETS)}"
            )
        return make_target(name)

    def model_inputs(self) -> dict[str, Any]:
        return {"event_shape": [self.target.dim], "context_features": 0}

    def batch(self, step: int) -> tuple[Tensor, ...]:
        beta = anneal_beta(step, 0.01, self.anneal) if self.anneal else 1.0
        return (torch.tensor(beta, device=self.setting.device),)

    def training_module(self, model: nn.Module) -> nn.Module:
        return _ReverseKLLoss(model, self.target, self.setting.batch_size)  # type: ignore[arg-type]

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        return terms

    def _estimate(self, model: nn.Module, n: int) -> tuple[float, float, float | None]:
        with evaluation_rng(self.setting.seed, self.setting.device), eval_mode(model):
            return estimate_kl(model, self.target, n)  # type: ignore[arg-type]

    def validate(self, model: nn.Module) -> dict[str, float]:
        loss, se, kl = self._estimate(model, self.val_samples)
        out = {f"val_{self.metric}": loss, "val_stderr": se}
        if kl is not None and self.metric != "kl":
            out["val_kl"] = kl
        return out

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """The headline is ``KL(q || p)`` where the target's ``log Z`` is known, else the loss
        ``E_q[log q - log p~]`` (the KL up to the constant ``log Z``); both Monte Carlo
        estimates on ``eval_samples`` samples of q, with the same standard error."""
        how = f"{numbers.get('eval_samples')} samples of q"
        se = numbers["loss_stderr"]
        loss = Measure("E_q[log q - log p~]", numbers["loss"], se, "nats", "estimate", how)
        if numbers.get("kl") is None:
            return Evaluation(loss, None, (), numbers)
        kl = Measure("KL(q || p)", numbers["kl"], se, "nats", "estimate", how)
        return Evaluation(kl, None, (loss,), numbers)

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """``loss`` (``E_q[log q - log p~]``) and its standard error on ``eval_samples``
        samples, and ``kl`` (``loss + log Z``) when the target's ``log Z`` is known."""
        self.check_split(split)
        loss, se, kl = self._estimate(model, self.eval_samples)
        return {
            "target": self.target.name,
            "loss": loss,
            "loss_stderr": se,
            "kl": kl,
            "eval_samples": self.eval_samples,
            "unit": "nats",
        }
