r"""A deep Boltzmann machine trained as Salakhutdinov and Hinton (2009, "Deep Boltzmann
Machines") do it: greedy layer-wise pretraining, then joint training with mean-field inference
and persistent chains; its test NLL by AIS and the mean-field bound.

The run's steps fall into three phases (``pretrain_steps`` each for the first two):

1. **the bottom RBM** (:math:`v, h^1`; :math:`W_1, b, c_1`) by CD-``pretrain_k`` with the
   paper's doubled input: the RBM has two tied copies of the visible layer, both clamped to the
   data, so :math:`h^1` sees :math:`2 W_1 v` (as it will see :math:`W_1 v` plus the top-down
   :math:`W_2^\top h^2` in the DBM), and the copies are resampled independently in the chain:
   free energy :math:`F(s) = -b^\top s - \sum_j \operatorname{softplus}(c_{1j} + W_{1j} s)` of
   :math:`s = v' + v''`;
2. **the top RBM** (:math:`h^1, h^2`; :math:`W_2, c_2`, :math:`c_1` fixed) by CD on the data
   :math:`\sigma(c_1 + 2 W_1 v)` of the bottom RBM, with the hidden layer doubled (:math:`h^1`
   sees :math:`2 W_2^\top h^2`, as it will see the bottom-up input besides in the DBM): free
   energy :math:`F(h^1) = -c_1^\top h^1 - 2 \sum_k \operatorname{softplus}(c_{2k} + W_{2k}
   h^1)`;
3. **joint training** of every parameter: the data-dependent expectations under the
   mean-field posterior :math:`\mu_1, \mu_2` of each example
   (:meth:`~flowforge.models.dbm.DBM.mean_field`), the model's under ``chains`` persistent
   Gibbs chains (the paper's 100 fantasy particles), ``k`` sweeps per step, started at the
   first joint step from training examples and their mean-field states.

Every phase minimises a surrogate whose gradient is the phase's (CD or stochastic
approximation) gradient of the log-likelihood, so the trainer's optimiser takes the step:
:math:`\frac1B \sum_i F(x_i) - \frac1M \sum_m F(\tilde x_m)` in pretraining,
:math:`\frac1B \sum_i E(v_i, \mu_{1i}, \mu_{2i}) - \frac1M \sum_m E(\tilde v_m, \tilde
h^1_m, \tilde h^2_m)` jointly (the energy is linear in each parameter, so its value at the
means is its expectation under :math:`q`), negatives and means detached. The persistent chains
are the objective's state (:meth:`state_dict`), in every checkpoint. The paper's MNIST DBM
(784-500-1000) was pretrained, then trained jointly for 300,000 updates on mini-batches of 100
with 100 fantasy particles, and scores a variational bound of -84.62 nats on the test set
(AIS log Z); the trainer's AdamW takes the step here (``train.lr`` about 1e-3).

Validation (cheap, lower is better): the reconstruction error :math:`\sum_i (v_i - \sigma(b
+ W_1^\top \mu_1)_i)^2` of the mean-field posterior, per validation example (a rough proxy;
``best.pt`` is chosen by it). The test numbers: :math:`\log Z` by AIS over :math:`h^1`
(:meth:`~flowforge.models.dbm.DBM.ais`, a base model with the training data's base rates)
checked by uniform importance sampling (:meth:`~flowforge.models.dbm.DBM.log_z_uniform`), and
the NLL :math:`-\overline{\mathcal L(v)} + \log \hat Z`, :math:`\mathcal L` the mean-field
lower bound on :math:`\log p^*(v)`, through the RBM's
:func:`~flowforge.objectives.rbm.nll_summary` (the larger log Z when AIS missed mass, flagged
``ais_missed_mass``). With exact :math:`\log Z` it is an upper bound on the NLL; AIS's
:math:`\log \hat Z` is biased low, as in the paper's number.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flowforge.models.dbm import DBM
from flowforge.objectives.base import (
    Objective,
    ObjectiveError,
    Setting,
    eval_mode,
    evaluation_rng,
    tensor_fingerprint,
)
from flowforge.objectives.rbm import (
    ais_results,
    base_rate_bias,
    check_binary_vectors,
    nll_summary,
    standard_error,
)
from flowforge.objectives.results import Evaluation

__all__ = ["DeepBoltzmann"]

#: the phases of a run, in order (module docstring)
PHASES = ("pretrain_bottom", "pretrain_top", "joint")
#: the least value of each option
_LEAST = {
    "pretrain_steps": 0,
    "pretrain_k": 1,
    "chains": 1,
    "k": 1,
    "val_n": 0,
    "eval_n": 0,
    "eval_chains": 2,
    "eval_betas": 3,
    "check_samples": 1,
}


class _DBMLoss(nn.Module):
    """``forward(v, phase)``: the surrogate of the step's phase (an index into
    :data:`PHASES`)."""

    def __init__(self, dbm: DBM, objective: DeepBoltzmann) -> None:
        super().__init__()
        self.dbm = dbm
        self.surrogate = objective.surrogate

    def forward(self, v: Tensor, phase: Tensor) -> Tensor:
        return self.surrogate(self.dbm, v, int(phase))


class DeepBoltzmann(Objective):
    """``objective: {name: dbm, pretrain_steps: 1000, chains: 100}``: a DBM (module docstring).

    Arguments:
        setting: from the run.
        pretrain_steps: steps of each of the two pretraining phases (0: joint training from
            the random start).
        pretrain_k: Gibbs sweeps of the pretraining CD.
        chains: persistent chains of the joint phase (the paper: 100).
        k: Gibbs sweeps of the persistent chains per joint step.
        val_n: validation examples of the reconstruction error (0: all).
        eval_n: test examples of the NLL (0: all).
        eval_chains: AIS chains (the paper: 100).
        eval_betas: AIS intermediate distributions (the schedule of
            :func:`~flowforge.models.ais.paper_betas`).
        check_samples: uniform states of the second estimate of log Z; when it exceeds AIS's
            3-sigma interval, AIS missed mass (``ais_missed_mass``) and the NLL uses it.
    """

    name = "dbm"
    metric = "recon"
    model_type = DBM
    train_key = "train_dbm_loss"

    def __init__(
        self,
        setting: Setting,
        pretrain_steps: int = 1000,
        pretrain_k: int = 1,
        chains: int = 100,
        k: int = 1,
        val_n: int = 1000,
        eval_n: int = 0,
        eval_chains: int = 100,
        eval_betas: int = 14500,
        check_samples: int = 100_000,
    ) -> None:
        super().__init__(setting)
        options = {
            "pretrain_steps": pretrain_steps,
            "pretrain_k": pretrain_k,
            "chains": chains,
            "k": k,
            "val_n": val_n,
            "eval_n": eval_n,
            "eval_chains": eval_chains,
            "eval_betas": eval_betas,
            "check_samples": check_samples,
        }
        for key, value in options.items():
            if value < _LEAST[key]:
                raise ObjectiveError(f"objective.{key}: should be >= {_LEAST[key]}, got {value}")
        check_binary_vectors(self.data, "dbm", "the DBM")
        self.pretrain_steps, self.pretrain_k = pretrain_steps, pretrain_k
        self.n_chains, self.k = chains, k
        self.val_n, self.eval_n = val_n, eval_n
        self.eval_chains, self.eval_betas = eval_chains, eval_betas
        self.check_samples = check_samples
        self.chains: Tensor | None = None
        self._layers: tuple[int, int, int] | None = None  # the model's, for state_template

    def model_inputs(self) -> dict[str, Any]:
        return {"event_shape": list(self.data.event_shape), "context_features": 0}

    # -- training ----------------------------------------------------------------------------
    def phase(self, step: int) -> int:
        """The index in :data:`PHASES` of ``step``."""
        return min(step // self.pretrain_steps, 2) if self.pretrain_steps else 2

    def batch(self, step: int) -> tuple[Tensor, ...]:
        return (self.train_rows(step).to(self.setting.device), torch.tensor(self.phase(step)))

    def training_module(self, model: nn.Module) -> nn.Module:
        self._layers = (model.visible, model.hidden1, model.hidden2)  # type: ignore[assignment]
        return _DBMLoss(model, self)  # type: ignore[arg-type]

    def surrogate(self, dbm: DBM, v: Tensor, phase: int) -> Tensor:
        """The loss of ``phase`` on the batch ``v`` (module docstring)."""
        if phase == 0:
            return _pretrain_bottom(dbm, v, self.pretrain_k)
        if phase == 1:
            return _pretrain_top(dbm, v, self.pretrain_k)
        mu1, mu2 = dbm.mean_field(v)
        v_model, h1_model, h2_model = dbm.split(self.negatives(dbm, v))
        return dbm.energy(v, mu1, mu2).mean() - dbm.energy(v_model, h1_model, h2_model).mean()

    @torch.no_grad()
    def negatives(self, dbm: DBM, v: Tensor) -> Tensor:
        """The persistent chains after this step's ``k`` sweeps; the first joint step starts
        them from the batch's examples (cycled to ``chains`` rows) and their mean-field
        states."""
        if self.chains is None:
            v0 = v[torch.arange(self.n_chains, device=v.device) % len(v)]
            mu1, mu2 = dbm.mean_field(v0)
            self.chains = torch.cat([v0, torch.bernoulli(mu1), torch.bernoulli(mu2)], -1)
        self.chains = dbm.gibbs(self.chains.to(v), self.k)
        return self.chains

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        return terms

    def state_dict(self) -> dict[str, Any]:
        return {} if self.chains is None else {"chains": self.chains}

    def state_template(self) -> dict[str, Any]:
        """The persistent chains, once they exist: ``chains`` rows of the visible and both
        hidden layers' units (known once the trainer built the training module), of the
        data's dtype, on the run's device."""
        if self.chains is not None or self._layers is None:
            return self.state_dict()
        shape = (self.n_chains, sum(self._layers))
        dtype, device = self.data.train.dtype, self.setting.device
        return {"chains": torch.empty(shape, dtype=dtype, device=device)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        chains = state.get("chains")
        if set(state) - {"chains"} or (chains is not None and chains.shape[0] != self.n_chains):
            raise ValueError(
                f"objective 'dbm' ({self.n_chains} chains): state {sorted(state)} of "
                f"{None if chains is None else tuple(chains.shape)}"
            )
        self.chains = chains

    def fingerprint(self) -> dict[str, str]:
        return {"train_data": tensor_fingerprint(self.data.train)}

    # -- scores ------------------------------------------------------------------------------
    def _split(self, split: str, n: int) -> list[Tensor]:
        x = self.split_rows(split)
        x = (x[:n] if n else x).to(self.setting.device)
        return list(x.split(self.setting.eval_batch_size))

    def validate(self, model: nn.Module) -> dict[str, float]:
        errors = []
        with torch.no_grad():
            for v in self._split("val", self.val_n):
                mu1, _ = model.mean_field(v)  # type: ignore[operator]
                probs = torch.sigmoid(mu1 @ model.weight1 + model.visible_bias)  # type: ignore[operator]
                errors.append((v - probs).pow(2).sum(-1).double())
        err = torch.cat(errors)
        return {"val_recon": float(err.mean()), "val_stderr": standard_error(err)}

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """The headline is the NLL's mean-field bound with AIS's log Z
        (:func:`~flowforge.objectives.rbm.ais_results`)."""
        return ais_results(numbers, split, "mean-field bound")

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """``<split>_nll`` (the mean-field bound with AIS's log Z), its standard error, the AIS
        ``log_z`` with its standard error and 3-sigma interval, and the second estimate
        (module docstring)."""
        self.check_split(split)
        chunks, bias = self._split(split, self.eval_n), base_rate_bias(self.data.train)
        with evaluation_rng(self.setting.seed, self.setting.device), eval_mode(model):
            with torch.no_grad():
                bound = torch.cat([model.variational_bound(v) for v in chunks])  # type: ignore[operator]
            ais = model.ais(self.eval_chains, self.eval_betas, bias)  # type: ignore[operator]
            log_z_uniform = model.log_z_uniform(self.check_samples)  # type: ignore[operator]
        return nll_summary(split, -bound.double(), ais, log_z_uniform)


def _pretrain_bottom(dbm: DBM, v: Tensor, k: int) -> Tensor:
    """CD-``k`` of the bottom RBM with its visible layer doubled (module docstring)."""
    W, b, c = dbm.weight1, dbm.visible_bias, dbm.hidden1_bias

    def free_energy(s: Tensor) -> Tensor:
        return -s @ b - F.softplus(s @ W.T + c).sum(-1)

    with torch.no_grad():
        s = 2 * v
        for _ in range(k):
            h = torch.bernoulli(torch.sigmoid(s @ W.T + c))
            p = torch.sigmoid(h @ W + b)
            s = torch.bernoulli(p) + torch.bernoulli(p)
    return free_energy(2 * v).mean() - free_energy(s).mean()


def _pretrain_top(dbm: DBM, v: Tensor, k: int) -> Tensor:
    """CD-``k`` of the top RBM with its hidden layer doubled, on the bottom RBM's hidden
    probabilities; :math:`c_1` is its fixed visible bias (module docstring)."""
    W, c1, c2 = dbm.weight2, dbm.hidden1_bias.detach(), dbm.hidden2_bias

    def free_energy(x: Tensor) -> Tensor:
        return -x @ c1 - 2 * F.softplus(x @ W.T + c2).sum(-1)

    with torch.no_grad():
        x = torch.sigmoid(2 * v @ dbm.weight1.T + c1)
        y = x
        for _ in range(k):
            p = torch.sigmoid(y @ W.T + c2)
            t = torch.bernoulli(p) + torch.bernoulli(p)
            y = torch.bernoulli(torch.sigmoid(t @ W + c1))
    return free_energy(x).mean() - free_energy(y).mean()
