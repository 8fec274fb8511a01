r"""Variational bounds for VAEs: the ELBO and the importance-weighted (IWAE) bound.

With ``k`` posterior draws :math:`z_j \sim q(z \mid x)` and log weights
:math:`\log w_j = \log p(x \mid z_j) + \beta(\log p(z_j) - \log q(z_j \mid x))`,

.. math:: \mathcal L_{\mathrm{ELBO}} = \frac1k \sum_j \log w_j \;\le\;
    \mathcal L_k = \log \frac1k \sum_j w_j \;\le\; \log p(x)

at :math:`\beta = 1` (Kingma and Welling 2014, https://arxiv.org/abs/1312.6114; Burda et al.
2016, https://arxiv.org/abs/1509.00519). ``kl_warmup`` (0: off) is the KL warm-up of Sønderby
et al. (2016, https://arxiv.org/abs/1602.02282) with Rezende and Mohamed's (2015) schedule
:math:`\beta_t = \min(1, 0.01 + t / \mathrm{kl\_warmup})`; evaluation always uses
:math:`\beta = 1`. Data sets that ask for it (binarized MNIST) are binarized afresh in every
batch (dynamic binarization, as in the IWAE and IAF papers).

Validation is the negative ELBO on the validation split; the test numbers are the ELBO and the
``eval_k``-sample importance estimate of :math:`-\log p(x)` (a bound that tightens as
``eval_k`` grows) on the first ``eval_n`` test examples, with its standard error.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowforge.models.vae import VAE
from flowforge.objectives.base import (
    Objective,
    ObjectiveError,
    Setting,
    anneal_beta,
    eval_mode,
    evaluation_rng,
    tensor_fingerprint,
)
from flowforge.objectives.results import Evaluation, Measure

__all__ = ["ELBO", "IWAE", "VariationalBound"]


class _BoundLoss(nn.Module):
    """``forward(x, beta)``: minus the batch mean of the bound, the KL part weighted by
    ``beta`` (a 0-dim tensor, so a compiled module does not specialise on its value)."""

    def __init__(self, vae: VAE, bound: str, k: int) -> None:
        super().__init__()
        self.vae, self.bound, self.k = vae, bound, k

    def forward(self, x: Tensor, beta: Tensor) -> Tensor:
        return self.vae.loss(x, self.bound, self.k, beta)


class VariationalBound(Objective):
    """Trains a :class:`~flowforge.models.vae.VAE` by a variational bound.

    Arguments:
        setting: from the run.
        k: posterior samples per example in training (the ELBO averages them; the IWAE bound
            tightens with them).
        kl_warmup: length of the KL warm-up in steps (0: off).
        eval_k: importance samples of the test estimate of ``log p(x)``.
        eval_n: test examples it is computed on (the first ones; 0: all).
    """

    metric = "neg_elbo"
    model_type = VAE
    bound: ClassVar[str]

    def __init__(
        self,
        setting: Setting,
        k: int = 1,
        kl_warmup: int = 0,
        eval_k: int = 1000,
        eval_n: int = 2000,
    ) -> None:
        super().__init__(setting)
        for key, value in (("k", k), ("eval_k", eval_k)):
            if value < 1:
                raise ObjectiveError(f"objective.{key}: should be positive, got {value}")
        for key, value in (("kl_warmup", kl_warmup), ("eval_n", eval_n)):
            if value < 0:
                raise ObjectiveError(f"objective.{key}: should be >= 0, got {value}")
        if len(self.data.event_shape) != 1 or self.data.context_features:
            raise ObjectiveError(
                f"objective {self.name!r}: the VAE models unconditional vectors, got data of "
                f"shape {self.data.event_shape} with {self.data.context_features} context "
                f"features"
            )
        self.k, self.kl_warmup, self.eval_k, self.eval_n = k, kl_warmup, eval_k, eval_n

    def model_inputs(self) -> dict[str, Any]:
        return {"event_shape": list(self.data.event_shape), "context_features": 0}

    def beta(self, step: int) -> float:
        return anneal_beta(step, 0.01, self.kl_warmup) if self.kl_warmup else 1.0

    def batch(self, step: int) -> tuple[Tensor, ...]:
        device = self.setting.device
        return self.train_rows(step).to(device), torch.tensor(self.beta(step), device=device)

    def training_module(self, model: nn.Module) -> nn.Module:
        return _BoundLoss(model, self.bound, self.k)  # type: ignore[arg-type]

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        return terms

    def fingerprint(self) -> dict[str, str]:
        return {"train_data": tensor_fingerprint(self.data.train)}

    def validate(self, model: nn.Module) -> dict[str, float]:
        with evaluation_rng(self.setting.seed, self.setting.device), eval_mode(model):
            val = model.evaluate(self.data.val.to(self.setting.device), k=1)  # type: ignore[operator]
        return {"val_neg_elbo": -val["elbo"], "val_stderr": val["log_px_stderr"]}

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """The headline is the NLL's IWAE bound with ``eval_k`` samples (an upper bound in
        expectation); the ELBO beside it."""
        nll = Measure(
            f"{split} NLL",
            numbers[f"{split}_nll"],
            numbers[f"{split}_nll_stderr"],
            "nats",
            "bound",
            f"IWAE bound, k={numbers.get('eval_k')}",
        )
        elbo = Measure(f"{split} ELBO", numbers[f"{split}_elbo"], None, "nats", "bound")
        return Evaluation(nll, nll, (elbo,), numbers)

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """``<split>_elbo``, ``<split>_nll`` (``-log p(x)`` by ``eval_k`` importance samples)
        and its standard error, on the first ``eval_n`` examples of ``split``."""
        self.check_split(split)
        x = self.split_rows(split)
        x = x[: self.eval_n] if self.eval_n else x
        with evaluation_rng(self.setting.seed, self.setting.device), eval_mode(model):
            out = model.evaluate(x.to(self.setting.device), k=self.eval_k)  # type: ignore[operator]
        return {
            f"{split}_elbo": out["elbo"],
            f"{split}_nll": -out["log_px"],
            f"{split}_nll_stderr": out["log_px_stderr"],
            "eval_k": self.eval_k,
            "eval_n": out["n"],
            "unit": "nats",
        }


class ELBO(VariationalBound):
    """``objective: {name: elbo}``: the evidence lower bound."""

    name = "elbo"
    bound = "elbo"


class IWAE(VariationalBound):
    """``objective: {name: iwae, k: 5}``: the importance-weighted bound of Burda et al."""

    name = "iwae"
    bound = "iwae"
