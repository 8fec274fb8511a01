r"""Maximum likelihood: minimise the exact negative log-likelihood of the data.

.. math:: \mathcal L(\theta) = -\frac1B \sum_i \log p_\theta(x_i \mid c_i), \qquad
    \log p_\theta(x) = \log p_Z(f_\theta(x)) + \log\left|\det \frac{\partial f_\theta}
    {\partial x}\right|

(Dinh et al. 2015; Rezende and Mohamed 2015), plus the RNODE regularisers of continuous
flows when configured (Finlay et al. 2020). Reported in nats per example, and in bits per
dimension :math:`\mathrm{NLL} / (D \ln 2)` for 8-bit images (dequantization and any logit
preprocessing sit inside the flow, so this is the likelihood of the discrete data).

A flow that starts with a dequantization and a logit (:func:`logit_split`: the image recipes
with an ``alpha``) also reports the NLL of the logit-space variable
:math:`v = \operatorname{logit}(\alpha + (1 - 2\alpha) y)`, :math:`y = (x + u) / K`, the number
the MAF and RealNVP papers tabulate for MNIST (as a log-likelihood, its negative). From the same
noise :math:`u`, with :math:`s = \alpha + (1 - 2\alpha) y`,

.. math:: \log p(y) = \log p(v) + D \log(1 - 2\alpha) - \sum_i \log\big(s_i (1 - s_i)\big),
    \qquad \text{bits/dim} = \log_2 K - \frac{\log p(y)}{D \ln 2}.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowforge.distributions import GaussianMixture
from flowforge.flows import Flow
from flowforge.forecast import forecast_comparison
from flowforge.objectives.base import (
    Objective,
    ObjectiveError,
    Setting,
    batch_generator,
    batch_indices,
    eval_mode,
    evaluation_rng,
    tensor_fingerprint,
)
from flowforge.objectives.results import Evaluation, Measure
from flowforge.transforms import Compose, Logit
from flowforge.transforms.continuous import regularization
from flowforge.transforms.dequantization import UniformDequantization
from flowforge.yardstick import (
    YardstickUnavailable,
    fit_yardstick,
    validated_mixture,
    yardstick_block,
)

# below this many training rows (and without a context) a mixture base starts as the
# yardstick's validated mixture; above, its own EM on the latents (the yardstick's search on
# tens of thousands of rows takes minutes, and flows beat it there by training)
YARDSTICK_START_ROWS = 20_000

__all__ = [
    "LogProb",
    "MaximumLikelihood",
    "bits_per_dim",
    "evaluate_nll",
    "logit_split",
    "per_example_logit_nll",
    "per_example_nll",
]


def evaluate_nll(
    flow: Flow, x: Tensor, context: Tensor | None = None, batch_size: int = 4096
) -> tuple[float, float]:
    """Mean negative log-likelihood of ``x`` (nats per point) and its standard error."""
    return _mean_stderr(per_example_nll(flow, x, context, batch_size))


def per_example_nll(
    flow: Flow, x: Tensor, context: Tensor | None = None, batch_size: int = 4096
) -> Tensor:
    """Negative log-likelihood of each row of ``x`` (nats), a float64 ``(n,)`` CPU tensor.

    Runs in eval mode without gradients (transforms that need autograd internally, such as
    exact traces, enable it themselves) and restores the previous mode.
    """
    return _by_rows(flow, x, context, batch_size, lambda xb, c: -flow.log_prob(xb, c))


def logit_split(flow: nn.Module) -> tuple[Compose, Flow, float] | None:
    """A flow on discrete data in logit space, split there: ``(head, tail, alpha)`` when the
    flow's transform is a :class:`~flowforge.transforms.Compose` that starts with a
    dequantization and a :class:`~flowforge.transforms.Logit` (``head``, mapping raw pixels
    ``x`` to ``v = logit(alpha + (1 - 2 alpha)(x + u) / K)``), ``tail`` the flow of the rest
    on the same base, so ``log p(x) = tail.log_prob(v) + ladj_head``; ``None`` for any other
    model. ``head`` and ``tail`` share the flow's modules."""
    t = getattr(flow, "transform", None)
    if not isinstance(flow, Flow) or not isinstance(t, Compose) or len(t) < 2:
        return None
    dequant, logit = t[0], t[1]
    if not (isinstance(dequant, UniformDequantization) and isinstance(logit, Logit)):
        return None
    tail = Flow(Compose(list(t.transforms)[2:]), flow.base, flow.context_features)
    return Compose([dequant, logit]), tail, logit.alpha


def per_example_logit_nll(
    flow: Flow, x: Tensor, context: Tensor | None = None, batch_size: int = 4096
) -> tuple[Tensor, Tensor]:
    """Per row of ``x``, the NLL of the discrete data (as :func:`per_example_nll`) and the NLL
    of its logit-space image ``v`` (:func:`logit_split`), both from one draw of the
    dequantization noise: two float64 ``(n,)`` CPU tensors.

    Raises:
        ValueError: the flow does not start with a dequantization and a logit.
    """
    split = logit_split(flow)
    if split is None:
        raise ValueError("the flow does not start with a dequantization and a logit")
    head, tail, _ = split

    def both(xb: Tensor, c: Tensor | None) -> Tensor:
        v, ladj = head(xb, c)
        log_pv = tail.log_prob(v, c)
        return -torch.stack([log_pv + ladj, log_pv], 1)

    rows = _by_rows(flow, x, context, batch_size, both)
    return rows[:, 0], rows[:, 1]


def _by_rows(
    flow: Flow,
    x: Tensor,
    context: Tensor | None,
    batch_size: int,
    fn: Callable[[Tensor, Tensor | None], Tensor],
) -> Tensor:
    """``fn(x_batch, context_batch)`` over the batches of ``x`` on the flow's device, in eval
    mode without gradients (transforms that need autograd internally, such as exact traces,
    enable it themselves), concatenated as float64 on the CPU; restores the previous mode."""
    was_training = flow.training
    flow.eval()
    device = next((b.device for b in flow.buffers()), torch.device("cpu"))
    values = []
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                c = None if context is None else context[i : i + batch_size].to(device)
                values.append(fn(x[i : i + batch_size].to(device), c).double().cpu())
    finally:
        flow.train(was_training)
    return torch.cat(values)


def bits_per_dim(nll_nats: float, dims: int) -> float:
    """Converts a per-example NLL in nats to bits per dimension: ``nll / (D ln 2)``."""
    return nll_nats / (dims * math.log(2))


class LogProb(nn.Module):
    """``forward(x, context) = flow.log_prob(x, context)``: the training density as a module,
    so the trainer can compile it or hand it to ``DistributedDataParallel``."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        return self.flow.log_prob(x, context)


class MaximumLikelihood(Objective):
    """Exact maximum likelihood of a flow on a data set (``objective: {name: mle}``, the
    default).

    Options:
        yardstick: ``"auto"`` (default): on vector data whose entropy is unknown (your own
            files, the tabular sets), :meth:`evaluate` also fits the baselines of
            :mod:`flowforge.yardstick` on the same splits and reports the flow's paired
            difference to each; on a series (:mod:`flowforge.data.series`) the baseline is
            the Gaussian VAR and the scores the forecasts' NLL and CRPS-sum
            (:func:`flowforge.forecast.compare.forecast_comparison`); ``"on"`` or ``"off"``
            force it.
        yardstick_seconds: a safety budget in seconds for the baselines' searches (they stop
            by their own rules, so ``eval`` repeats the summary's numbers; past the budget a
            search stops early and its note says so).
        noise: noise regularisation (Rothfuss et al. 2019, https://arxiv.org/abs/1907.08982):
            every training batch gets fresh Gaussian noise of ``noise`` times each feature's
            training standard deviation, which smooths the fit like a kernel and keeps a
            flexible flow from memorising a small training set; 0 (default): off. Validation
            and test rows are scored as they are.
    """

    name = "mle"
    metric = "nll"
    data_parallel = True
    model_type = Flow
    train_key: ClassVar[str] = "train_nll"

    def __init__(
        self,
        setting: Setting,
        yardstick: str = "auto",
        yardstick_seconds: float = 300.0,
        noise: float = 0.0,
    ) -> None:
        super().__init__(setting)
        if not (math.isfinite(noise) and noise >= 0):
            raise ObjectiveError(f"noise: should be >= 0, got {noise}")
        self.noise = float(noise)
        # (event,) noise scale per feature, in the data's units
        self._noise_scale = noise * self.data.train.float().std(0) if noise else None
        if yardstick not in ("auto", "on", "off"):
            raise ObjectiveError(f"yardstick: should be auto, on or off, got {yardstick!r}")
        if not yardstick_seconds > 0:
            raise ObjectiveError(f"yardstick_seconds: should be positive, got {yardstick_seconds}")
        self.yardstick = yardstick
        self.yardstick_seconds = float(yardstick_seconds)

    def model_inputs(self) -> dict[str, Any]:
        s = self.data
        inputs: dict[str, Any] = {
            "event_shape": list(s.event_shape),
            "context_features": s.context_features,
            "context_classes": s.context_classes,
        }
        if len(s.context_shape) > 1:  # an image context (c-Glow): recorded in the spec
            inputs["context_shape"] = list(s.context_shape)
        if s.standardization is not None:  # a fixed standardisation in front of the flow
            inputs["standardize"] = {k: v.tolist() for k, v in s.standardization.items()}
        if s.info.get("kind") == "file":  # names travel: sample, report and load know them
            inputs["names"] = {
                "features": list(s.info["features"]),
                "context": list(s.info["context"]),
                "levels": dict(s.info.get("levels", {})),
            }
        return inputs

    def start(self, model: nn.Module) -> str | None:
        """A mixture base (:class:`~flowforge.distributions.GaussianMixture`) starts from the
        splits. On a small table without a context (under :data:`YARDSTICK_START_ROWS`
        training rows, where the flow's chance to beat the baselines is slimmest) it starts as
        the yardstick's own validated mixture (:func:`~flowforge.yardstick.validated_mixture`,
        carried through the flow's starting map, which must be affine: a fixed standardisation
        with the transforms at the identity), so the flow starts *as* the baseline it is
        measured against. Otherwise EM on the latent points of at most 20,000 training rows
        picks its count and covariance kind on as many validation rows. ``best.pt`` keeps the
        start until training beats it on validation."""
        base = getattr(model, "base", None)
        if not isinstance(base, GaussianMixture) or self.data.val.shape[0] == 0:
            return None
        assert isinstance(model, Flow)  # the model_type, checked by check_model
        s = self.data
        if s.train_context is None and s.train.shape[0] < YARDSTICK_START_ROWS:
            chosen = self._start_as_yardstick(model, base)
            if chosen:
                return f"mixture base started as the yardstick's Gaussian mixture ({chosen})"
        z_train, z_val = (self._latents(model, split, 20_000) for split in ("train", "val"))
        return f"mixture base started with {base.start(z_train, z_val)} (chosen on validation)"

    def _start_as_yardstick(self, model: Flow, base: GaussianMixture) -> str | None:
        """Sets ``base`` to the yardstick's mixture mapped by the flow's affine start
        :math:`z = A x + b` (means :math:`A\\mu_k + b`, covariances :math:`A\\Sigma_k A^\\top`);
        ``None`` when the yardstick is off or unavailable, the map is not affine, or the
        mixture has more components than the base."""
        if not self._wants_yardstick():
            return None
        s = self.data
        try:
            w, mu, cov, chosen = validated_mixture(
                s.train.double().numpy(),
                s.val.double().numpy(),
                self.yardstick_seconds,
                self.setting.seed,
            )
        except YardstickUnavailable:
            return None
        affine = _affine_map(model, s.train)
        if affine is None or len(w) > base.components:
            return None
        a, b = affine
        base.set_components(
            torch.as_tensor(w),
            torch.as_tensor(mu) @ a.T + b,
            a @ torch.as_tensor(cov) @ a.T,
        )
        return chosen

    def _latents(self, model: Flow, split: str, most: int) -> Tensor:
        """Latent points ``f(x)`` of at most ``most`` rows of ``split`` (a seeded subset)."""
        s, st = self.data, self.setting
        x, c = getattr(s, split), getattr(s, f"{split}_context")
        if x.shape[0] > most:
            keep = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(st.seed))
            x, c = x[keep[:most]], None if c is None else c[keep[:most]]
        chunks = []
        with torch.no_grad(), eval_mode(model), evaluation_rng(st.seed, st.device):
            for i in range(0, x.shape[0], st.eval_batch_size):
                part = slice(i, i + st.eval_batch_size)
                context = None if c is None else c[part].to(st.device)
                chunks.append(model.transform_to_latent(x[part].to(st.device), context).cpu())
        return torch.cat(chunks)

    def batch(self, step: int) -> tuple[Tensor, ...]:
        """The rows of the step's batch and their contexts: their rows of ``train_context``,
        or new ones drawn by the data set's ``train_context_sampler`` (fresh masks) from
        :func:`~flowforge.objectives.base.batch_generator`."""
        s, st = self.data, self.setting
        idx = batch_indices(s.train.shape[0], st.batch_size, st.seed, step)
        x = s.train[idx]
        if self._noise_scale is not None:
            eps = torch.randn(x.shape, generator=batch_generator(st.seed, step, "noise"))
            x = x + eps * self._noise_scale
        if s.train_context is None:
            return (x.to(st.device),)
        if s.train_context_sampler is None:
            c = s.train_context[idx]
        else:
            c = s.train_context_sampler(x, batch_generator(st.seed, step))
        return x.to(st.device), c.to(st.device)

    def training_module(self, model: nn.Module) -> nn.Module:
        return LogProb(model)  # type: ignore[arg-type]

    def loss(self, terms: Tensor, model: nn.Module, step: int) -> Tensor:
        loss = -terms.mean()
        penalty = regularization(model)  # RNODE terms of continuous flows, if any
        return loss if penalty is None else loss + penalty

    def fingerprint(self) -> dict[str, str]:
        return {"train_data": tensor_fingerprint(self.data.train, self.data.train_context)}

    def _nll(self, model: nn.Module, split: str) -> tuple[Tensor, Tensor | None]:
        """Per-row NLL of ``split``, a float64 ``(n,)`` tensor, and for a flow in logit space
        (:func:`logit_split`) the per-row NLL of the logit-space variable from the same
        dequantization noise (else ``None``)."""
        s, st = self.data, self.setting
        x, c = getattr(s, split), getattr(s, f"{split}_context")
        # dequantization noise (image flows) from fixed numbers: evaluations are comparable
        with evaluation_rng(st.seed, st.device):
            if logit_split(model) is not None:
                return per_example_logit_nll(model, x, c, st.eval_batch_size)  # type: ignore[arg-type]
            return per_example_nll(model, x, c, st.eval_batch_size), None  # type: ignore[arg-type]

    def validate(self, model: nn.Module) -> dict[str, float]:
        per_row, logit_rows = self._nll(model, "val")
        nll, se = _mean_stderr(per_row)
        out = {"val_nll": nll, "val_stderr": se}
        if self.data.unit == "bits/dim":
            out["val_bpd"] = bits_per_dim(nll, math.prod(self.data.event_shape))
        if logit_rows is not None:
            out["val_logit_nll"], out["val_logit_nll_stderr"] = _mean_stderr(logit_rows)
        return out

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, Any]:
        """``<split>_nll`` and its standard error, ``n_<split>``, the unit, bits/dim for
        images, the logit-space NLL ``<split>_logit_nll`` (with ``<split>_logit_nll_stderr``
        and ``logit_alpha``) for a flow in logit space, and the gap to the true entropy where
        the data set knows it."""
        self.check_split(split)
        s = self.data
        per_row, logit_rows = self._nll(model, split)
        nll, se = _mean_stderr(per_row)
        out: dict[str, Any] = {
            f"{split}_nll": nll,
            f"{split}_stderr": se,
            f"n_{split}": int(per_row.numel()),
            "unit": "nats",
        }
        if s.unit == "bits/dim":
            dims = math.prod(s.event_shape)
            out[f"{split}_bpd"] = bits_per_dim(nll, dims)
            out[f"{split}_bpd_stderr"] = bits_per_dim(se, dims)
        split_flow = logit_split(model)
        if logit_rows is not None and split_flow is not None:
            logit_nll, logit_se = _mean_stderr(logit_rows)
            out[f"{split}_logit_nll"], out[f"{split}_logit_nll_stderr"] = logit_nll, logit_se
            out["logit_alpha"] = split_flow[2]
        if s.entropy is not None:
            out.update(entropy=s.entropy, entropy_stderr=s.entropy_stderr, gap=nll - s.entropy)
        if self._wants_yardstick() and s.info.get("kind") == "series":
            with evaluation_rng(self.setting.seed, self.setting.device):
                out["forecast"] = forecast_comparison(model, s, per_row.numpy(), split)  # type: ignore[arg-type]
        elif self._wants_yardstick():
            out["yardstick"] = self._yardstick(per_row.numpy(), split)
        return out

    @classmethod
    def results(cls, numbers: dict[str, Any], split: str = "test") -> Evaluation:
        """The exact NLL, headline in bits/dim for images; the logit-space NLL for a flow in
        logit space; the true entropy and the gap to it where the data set knows them; a
        series' CRPS-sum of the flow's forecasts."""
        nll = Measure(
            f"{split} NLL", numbers[f"{split}_nll"], numbers[f"{split}_stderr"], "nats", "exact"
        )
        headline = nll
        if f"{split}_bpd" in numbers:
            bpd, se = numbers[f"{split}_bpd"], numbers[f"{split}_bpd_stderr"]
            headline = Measure(f"{split} NLL", bpd, se, "bits/dim", "exact")
        measures: tuple[Measure, ...] = ()
        if f"{split}_logit_nll" in numbers:
            how = f"-log p(logit(a + (1 - 2a) x)) of x in [0, 1], a = {numbers['logit_alpha']:g}"
            measures += (
                Measure(
                    f"{split} NLL in logit space",
                    numbers[f"{split}_logit_nll"],
                    numbers[f"{split}_logit_nll_stderr"],
                    "nats",
                    "exact",
                    how,
                ),
            )
        if numbers.get("entropy") is not None:
            se = numbers.get("entropy_stderr")
            kind = "exact" if not se else "estimate"
            measures += (
                Measure("true entropy", numbers["entropy"], se, "nats", kind),
                Measure("gap", numbers["gap"], None, "nats", "none"),
            )
        for key, scores in (numbers.get("forecast") or {}).get("metrics", {}).items():
            if key.startswith("crps_sum"):
                steps = key.removeprefix("crps_sum").strip("_") or "1"
                flow = scores["flow"]
                how = f"{numbers['forecast']['samples']} samples per forecast"
                name = f"{split} CRPS-sum, {steps} step{'s' * (steps != '1')} ahead"
                measures += (Measure(name, flow["value"], flow["stderr"], "", "estimate", how),)
        return Evaluation(headline, nll, measures, numbers)

    def _wants_yardstick(self) -> bool:
        """``auto``: vector data in nats whose entropy is unknown."""
        if self.yardstick != "auto":
            return self.yardstick == "on"
        s = self.data
        vector_context = s.train_context is None or s.train_context.dim() == 2
        return len(s.event_shape) == 1 and s.unit == "nats" and s.entropy is None and vector_context

    def _yardstick(self, flow_nll: Any, split: str) -> dict[str, Any]:
        """The baselines of :mod:`flowforge.yardstick` on this run's splits, scored on
        ``split``, beside the flow's per-row NLL; ``{"skipped": reason}`` when they cannot be
        fitted."""
        s = self.data
        arrays = [getattr(s, k) for k in ("train", "val", split)]
        contexts = [getattr(s, f"{k}_context") for k in ("train", "val", split)]
        try:
            baselines = fit_yardstick(
                *(a.double().numpy() for a in arrays),
                *(None if c is None else c.double().numpy() for c in contexts),
                seconds=self.yardstick_seconds,
                seed=self.setting.seed,
            )
        except YardstickUnavailable as e:
            return {"skipped": str(e)}
        return yardstick_block(flow_nll, baselines, split)


def _affine_map(model: Flow, x: Tensor, tolerance: float = 1e-4) -> tuple[Tensor, Tensor] | None:
    """``(A, b)`` in float64 with ``f(x) = A x + b`` for the flow's map to its latent space,
    read off at the training mean and one step of a standard deviation along each axis and
    checked on up to 256 rows of ``x`` ``(n, D)``; ``None`` when the map is not affine."""
    x = x.double()
    centre, step = x.mean(0), x.std(0).clamp_min(1e-12)
    probes = torch.cat([centre[None], centre + torch.diag(step), x[:256]])
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    with torch.no_grad(), eval_mode(model):
        z = model.transform_to_latent(probes.to(device, dtype)).double().cpu()
    d = x.shape[1]
    a = ((z[1 : d + 1] - z[0]) / step[:, None]).T  # (D, D): column i is df/dx_i
    b = z[0] - a @ centre
    predicted = x[:256] @ a.T + b
    if not bool(((predicted - z[d + 1 :]).abs() <= tolerance * (1 + z[d + 1 :].abs())).all()):
        return None
    return a, b


def _mean_stderr(nll: Tensor) -> tuple[float, float]:
    stderr = nll.std().item() / math.sqrt(nll.numel()) if nll.numel() > 1 else float("nan")
    return nll.mean().item(), stderr
