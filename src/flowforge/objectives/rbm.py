r"""Contrastive divergence for RBMs (CD-k, and persistent CD), with an AIS test likelihood.

The gradient of an RBM's log-likelihood is :math:`-\mathbb E_{data} \nabla F(v) + \mathbb
E_{model} \nabla F(v)`. Contrastive divergence (Hinton 2002, "Training products of experts by
minimizing contrastive divergence") replaces the model expectation by samples after ``k``
block-Gibbs sweeps started at the data; persistent CD (Tieleman 2008, "Training restricted
Boltzmann machines using approximations to the likelihood gradient") continues chains that
persist across steps (one per batch example, started at the first batch). Either way the step
minimises the surrogate

.. math:: \mathcal L = \frac1B \sum_i F(v_i) - \frac1B \sum_i F(\tilde v_i), \qquad
    \tilde v \text{ the model samples, detached,}

whose gradient is the CD (PCD) gradient, so it is a loss like any other for the trainer. PCD's
chains are the objective's state (:meth:`state_dict`): every checkpoint holds them.
Salakhutdinov and Murray (2008) evaluate 500-hidden-unit RBMs trained with CD-1, CD-3 and CD-25
(SGD, learning rate 0.05 decreasing, 0.9 momentum, weight decay); their CD-25 RBM scores about
-86 nats on the binarized MNIST test set by AIS. Here the trainer's AdamW takes the step
(``train.lr`` about 1e-3), and data sets that binarize dynamically do so for every batch.

Validation (cheap, lower is better): the mean-field reconstruction error :math:`\sum_i (v_i -
\sigma(b + W^\top \sigma(c + W v))_i)^2` per validation example (a rough proxy: it does not
follow the likelihood closely). The test numbers estimate :math:`\log Z` by annealed importance
sampling (:meth:`flowforge.models.rbm.RBM.ais`, ``eval_chains`` chains, ``eval_betas``
intermediate distributions of the paper's schedule, a base model with the training data's base
rates) and report the NLL :math:`\overline{F(v)} + \log \hat Z` on the first ``eval_n`` test
examples with its standard error (the data's and :math:`\log \hat Z`'s combined) and the AIS
interval :math:`\log(\hat Z \pm 3\hat\sigma)` as ``<split>_nll_low``/``_high``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from flowforge.models.ais import AISResult
from flowforge.models.rbm import RBM
from flowforge.objectives.base import (
    Objective,
    ObjectiveError,
    Setting,
    eval_mode,
    evaluation_rng,
    tensor_fingerprint,
)
from flowforge.objectives.results import Evaluation, Measure

__all__ = ["ContrastiveDivergence", "base_rate_bias", "nll_summary", "standard_error"]


class _CDLoss(nn.Module):
    """``forward(v)``: the CD surrogate ``mean F(v) - mean F(negatives)``."""

    def __init__(self, rbm: RBM, objective: ContrastiveDivergence) -> None:
        super().__init__()
        self.rbm = rbm
        self.negatives = objective.negatives

    def forward(self, v: Tensor) -> Tensor:
        neg = self.negatives(self.rbm, v)
        return self.rbm.free_energy(v).mean() - self.rbm.free_energy(neg).mean()


class ContrastiveDivergence(Objective):
    """``objective: {name: cd, k: 1, persistent: false}``: an RBM by CD-k or PCD-k.

    Arguments:
        setting: from the run.
        k: Gibbs sweeps per step (CD-1 is Hinton's default; Salakhutdinov and Murray compare
            1, 3 and 25).
        persistent: persistent chains (PCD) instead of chains restarted at the data.
        val_n: validation examples of the reconstruction error (0: all).
        eval_n: test examples of the NLL (0: all).
        eval_chains: AIS chains (the paper: 100).
        eval_betas: AIS intermediate distributions (the paper: 14,500).
        check_samples: uniform states of the second estimate of log Z
            (:meth:`~flowforge.models.rbm.RBM.log_z_uniform`); when it exceeds AIS's 3-sigma
            interval, AIS missed mass, the summary says so (``ais_missed_mass``) and the NLL is
            computed from the larger estimate.
    """

    name = "cd"
    metric = "recon"
    model_type = RBM
    train_key = "train_cd_loss"

    def __init__(
        self,
        setting: Setting,
        k: int = 1,
        persistent: bool = False,
        val_n: int = 1000,
        eval_n: int = 0,
        eval_chains: int = 100,
        eval_betas: int = 14500,
        check_samples: int = 100_000,
    ) -> None:
        super().__init__(setting)
        for key, value in (("k", k), ("eval_chains", eval_chains), ("eval_betas", eval_betas)):
            if value < (3 if key == "eval_betas" else 1) or (key == "eval_chains" and value < 2):
                raise ObjectiveError(f"objective.{key}: too small, got {value}")
        for key, value in (("val_n", val_n), ("eval_n", eval_n)):
            if value < 0:
                raise ObjectiveError(f"objective.{key}: should be >= 0, got {value}")
        if check_samples < 1:
            raise ObjectiveError(
                f"objective.check_samples: should be positive, got {check_samples}"
            )
        check_binary_vectors(self.data, "cd", "the RBM")
        self.k, self.persistent = k, persistent
        self.val_n, self.eval_n = val_n, eval_n
        self.eval_chains, self.eval_betas = eval_chains, eval_betas
        self.check_samples = check_samples
        self.chains: Tensor | None = None

    def model_inputs(self) -> dict[str, Any]:
        return {"event_shape": list(self.data.event_shape), "context_features": 0}

    def batch(self, step: int) -> tuple[Tensor, ...]:
        return (self.train_rows(step).to(self.setting.device),)

    def training_module(self, model: nn.Module) -> nn.Module:
        return _CDLoss(model, self)  # type: ignore[arg-type]

    def negatives(self, rbm: RBM, v: Tensor) -> Tensor:
        """The model samples of this step: ``k`` Gibbs sweeps from the data (CD) or from the
        persistent chains, which they then replace (PCD)."""
        if not self.persistent:
            return rbm.gibbs(v, self.k)[0]
        if self.chains is None or self.chains.shape != v.shape:
            self.chains = v.detach().clone()
        self.chains = rbm.gibbs(self.chains.to(v), self.k)[0]
        return self.chains

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        return terms

    def state_dict(self) -> dict[str, Any]:
        return {"chains": self.chains} if self.persistent and self.chains is not None else {}

    def state_template(self) -> dict[str, Any]:
        """PCD's chains, once they exist: one per example of a training batch, of the data's
        dtype, on the run's device."""
        if not self.persistent:
            return {}
        rows = min(self.data.train.shape[0], self.setting.batch_size)
        shape = (rows, *self.data.event_shape)
        dtype, device = self.data.train.dtype, self.setting.device
        return {"chains": torch.empty(shape, dtype=dtype, device=device)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) - {"chains"} or (state and not self.persistent):
            raise ValueError(
                f"objective 'cd' (persistent={self.persistent}): state {sorted(state)}"
            )
        self.chains = state.get("chains")

    def fingerprint(self) -> dict[str, str]:
        return {"train_data": tensor_fingerprint(self.data.train)}

    # -- scores ------------------------------------------------------------------------------
    def _split(self, split: str, n: int) -> Tensor:
        x = self.split_rows(split)
        return (x[:n] if n else x).to(self.setting.device)

    def validate(self, model: nn.Module) -> dict[str, float]:
        v = self._split("val", self.val_n)
        with torch.no_grad():
            probs = torch.sigmoid(model.visible_logits(model.hidden_probs(v)))  # type: ignore[operator]
            err = (v - probs).pow(2).sum(-1).double()
        return {"val_recon": float(err.mean()), "val_stderr": standard_error(err)}

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """The headline is the NLL from AIS's estimate of log Z (:func:`ais_results`)."""
        return ais_results(numbers, split)

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """``<split>_nll`` (AIS), its standard error, the AIS ``log_z`` with its standard error
        and 3-sigma interval, and the NLL's interval from it (module docstring)."""
        self.check_split(split)
        v, bias = self._split(split, self.eval_n), base_rate_bias(self.data.train)
        with evaluation_rng(self.setting.seed, self.setting.device), eval_mode(model):
            ais = model.ais(self.eval_chains, self.eval_betas, bias)  # type: ignore[operator]
            log_z_uniform = model.log_z_uniform(self.check_samples)  # type: ignore[operator]
            f = model.free_energy(v).detach().double()  # type: ignore[operator]
        return nll_summary(split, f, ais, log_z_uniform)


def check_binary_vectors(data: Any, objective: str, model: str) -> None:
    """Boltzmann machines model unconditional binary vectors: other data is refused by name."""
    if len(data.event_shape) != 1 or data.context_features:
        raise ObjectiveError(
            f"objective {objective!r}: {model} models unconditional binary vectors, got data "
            f"of shape {data.event_shape}"
        )


def base_rate_bias(train: Tensor) -> Tensor:
    """The AIS base model's visible biases: the log-odds of the training base rates (clamped
    to [1e-3, 1 - 1e-3]), as Salakhutdinov and Murray's base-rate model."""
    p = train.double().mean(0).clamp(1e-3, 1 - 1e-3)
    return torch.log(p) - torch.log1p(-p)


def nll_summary(split: str, f: Tensor, ais: AISResult, log_z_uniform: float) -> dict[str, Any]:
    """The test numbers from the free energies ``f`` of the split's examples and the two
    estimates of :math:`\\log Z`: ``F + log Z`` from AIS, unless the uniform importance-sampling
    estimate lies above AIS's 3-sigma interval (AIS missed mass): then from that estimate,
    flagged ``ais_missed_mass`` and warned about (both are lower bounds in expectation)."""
    mean_f = float(f.mean())
    out: dict[str, Any] = {
        f"{split}_nll": mean_f + ais.log_z,
        f"{split}_stderr": math.sqrt(standard_error(f) ** 2 + ais.stderr**2),
        # None when 3 sigma exceeds Z-hat (the interval's lower end is -inf)
        f"{split}_nll_low": mean_f + ais.log_z_low if math.isfinite(ais.log_z_low) else None,
        f"{split}_nll_high": mean_f + ais.log_z_high,
        "log_z": ais.log_z,
        "log_z_stderr": ais.stderr,
        "log_z_uniform": log_z_uniform,
        "ais_missed_mass": log_z_uniform > ais.log_z_high,
        "ais_chains": ais.chains,
        "ais_steps": ais.steps,
        f"n_{split}": len(f),
        "unit": "nats",
    }
    if out["ais_missed_mass"]:
        # AIS missed mass that uniform states hold: the NLL is at least this much; the
        # AIS interval no longer applies
        out.update(
            {
                f"{split}_nll": mean_f + log_z_uniform,
                f"{split}_stderr": standard_error(f),
                f"{split}_nll_low": None,
                f"{split}_nll_high": None,
            }
        )
        warnings.warn(
            f"AIS's log Z ({ais.log_z:.1f}, 3-sigma high {ais.log_z_high:.1f}) is below the "
            f"uniform importance-sampling estimate ({log_z_uniform:.1f}): its chains missed "
            f"mass; the {split} NLL reported is F + the larger estimate, a lower bound",
            stacklevel=2,
        )
    return out


def ais_results(numbers: dict[str, Any], split: str, bound: str = "") -> Evaluation:
    """The typed results of :func:`nll_summary`'s numbers: the NLL an estimate (AIS's log Z
    is unbiased in Z, so the NLL is low in expectation), a ``lower bound`` when AIS missed mass
    and the uniform estimate was used; with ``bound`` (a DBM's ``"mean-field bound"``) the
    free energy is itself a bound, the kind ``bound``. Beside it: AIS's log Z."""
    ais = f"AIS ({numbers.get('ais_chains')} chains, {numbers.get('ais_steps')} steps)"
    kind = "bound" if bound else "estimate"
    if numbers.get("ais_missed_mass"):
        ais = f"lower bound: {ais} missed mass, uniform importance sampling's log Z used"
        kind = "lower bound"
    how = f"{bound}, {ais}" if bound else ais
    se = numbers.get(f"{split}_stderr")
    nll = Measure(f"{split} NLL", numbers[f"{split}_nll"], se, "nats", kind, how)
    if numbers.get("log_z") is None:
        return Evaluation(nll, nll, (), numbers)
    se = numbers.get("log_z_stderr")
    log_z = Measure("log Z", numbers["log_z"], se, "nats", "estimate", "AIS")
    return Evaluation(nll, nll, (log_z,), numbers)


def standard_error(x: Tensor) -> float:
    """The standard error of the mean of ``x`` (NaN for fewer than two values)."""
    return float(x.std() / math.sqrt(len(x))) if len(x) > 1 else float("nan")
