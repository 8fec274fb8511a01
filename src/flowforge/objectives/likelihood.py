r"""Exact maximum likelihood of a model that is not a flow but has a ``log_prob`` (NADE,
PixelCNN).

.. math:: \mathcal L(\theta) = -\frac1B \sum_i \log p_\theta(x_i)

for autoregressive models whose conditionals give the exact likelihood in one pass (NADE,
Larochelle and Murray 2011: :class:`~flowforge.models.nade.NADE`; PixelCNN, van den Oord et
al. 2016: :class:`~flowforge.models.pixelcnn.PixelCNN`). Data sets that binarize
dynamically (binarized MNIST) are binarized afresh in every batch. Validation and test numbers
are the exact NLL in nats per example with its standard error. (Flows use ``mle``, which adds
their regularisers, bits/dim and dequantization.)
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowforge.objectives.base import (
    Objective,
    ObjectiveError,
    Setting,
    eval_mode,
    tensor_fingerprint,
)
from flowforge.objectives.mle import LogProb
from flowforge.objectives.results import Evaluation, Measure

__all__ = ["ExactLikelihood"]


class ExactLikelihood(Objective):
    """``objective: {name: likelihood}``: exact maximum likelihood of a model with
    ``log_prob(x)`` (NADE, PixelCNN). Takes no options."""

    name = "likelihood"
    metric = "nll"
    data_parallel = True
    train_key: ClassVar[str] = "train_nll"

    def __init__(self, setting: Setting) -> None:
        super().__init__(setting)
        if self.data.context_features:
            raise ObjectiveError("objective 'likelihood': trains unconditional models")

    def check_model(self, model: nn.Module) -> None:
        """Refuses a model without ``log_prob``, or one whose ``log_prob`` refuses the data
        (PixelCNN: values other than 0 and 1), tried on two validation rows."""
        if not callable(getattr(model, "log_prob", None)):
            raise ObjectiveError(
                f"objective 'likelihood' trains a model with log_prob, not a {type(model).__name__}"
            )
        rows = self.split_rows("val")[:2].to(self.setting.device)
        try:
            with torch.no_grad(), eval_mode(model):
                model.log_prob(rows)  # type: ignore[operator]
        except ValueError as e:
            raise ObjectiveError(f"objective 'likelihood' on this data: {e}") from None

    def model_inputs(self) -> dict[str, Any]:
        return {"event_shape": list(self.data.event_shape), "context_features": 0}

    def batch(self, step: int) -> tuple[Tensor, ...]:
        return (self.train_rows(step).to(self.setting.device),)

    def training_module(self, model: nn.Module) -> nn.Module:
        return LogProb(model)  # type: ignore[arg-type]

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        return -terms.mean()

    def fingerprint(self) -> dict[str, str]:
        return {"train_data": tensor_fingerprint(self.data.train)}

    def _nll(self, model: nn.Module, split: str) -> tuple[float, float, int]:
        x = self.split_rows(split)
        values = []
        with torch.no_grad(), eval_mode(model):
            for chunk in x.split(self.setting.eval_batch_size):
                values.append(-model.log_prob(chunk.to(self.setting.device)).double().cpu())  # type: ignore[operator]
        nll = torch.cat(values)
        se = float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
        return float(nll.mean()), se, len(nll)

    def validate(self, model: nn.Module) -> dict[str, float]:
        nll, se, _ = self._nll(model, "val")
        return {"val_nll": nll, "val_stderr": se}

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """The exact NLL is the headline."""
        nll = Measure(
            f"{split} NLL", numbers[f"{split}_nll"], numbers[f"{split}_stderr"], "nats", "exact"
        )
        return Evaluation(nll, nll, (), numbers)

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """``<split>_nll`` (exact, nats per example), its standard error and ``n_<split>``."""
        self.check_split(split)
        nll, se, n = self._nll(model, split)
        return {f"{split}_nll": nll, f"{split}_stderr": se, f"n_{split}": n, "unit": "nats"}
