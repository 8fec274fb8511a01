r"""A forecasting flow beside the Gaussian VAR on the same test rows: NLL and CRPS-sum, paired.

On the (window, next value) pairs of :mod:`flowforge.data.series`, :func:`forecast_comparison`
fits the VAR of :func:`~flowforge.forecast.var.select_var` (least squares on the training
pairs, its order :math:`p \le k` chosen on the validation pairs) and scores it and the flow on
the test pairs:

- **NLL per time step**, :math:`-\log p(x_t \mid x_{t-k:t})` in nats, exact for both;
- **CRPS-sum, one step ahead** (:mod:`flowforge.forecast.crps`) of every test row: the flow's
  from ``samples`` draws of :math:`x_t` (the fair estimate), the VAR's in closed form (the sum
  of a Gaussian vector is Gaussian, :math:`N(\mathbf 1^\top \mu_t, \mathbf 1^\top \Sigma
  \mathbf 1)`);
- **CRPS-sum, ``horizon`` steps ahead** (when ``horizon > 1``): forecasts from the origins
  :math:`0, H, 2H, \dots` of the test split, non-overlapping windows of :math:`H` steps as in
  Rasul et al.'s rolling evaluation; the flow's from ``samples`` ancestral paths
  (:func:`~flowforge.forecast.paths.sample_paths`), the VAR's from its Gaussian
  :math:`h`-step forecasts, scored at each of the :math:`H` steps.

Each is paired on the same rows (one-step) or origins (multi-step): the flow's per-unit value
minus the VAR's, mean and standard error :math:`\mathrm{sd}/\sqrt n`
(:func:`flowforge.yardstick.paired`), with the yardstick's verdict (*beats* below minus one
standard error). The CRPS-sum of a unit is its CRPS summed over its time points divided by
:math:`H \cdot \overline{|\sum_i y_{t,i}|}` (the mean absolute summed target over all the
scored points), so the units' mean is the CRPS-sum and the normaliser is shared, not paired.
The draws come from torch's random state: the caller fixes it (``mle`` evaluates inside
:func:`~flowforge.objectives.base.evaluation_rng`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from flowforge.data import Splits
from flowforge.flows import Flow
from flowforge.forecast.crps import crps_gaussian, crps_samples
from flowforge.forecast.paths import sample_paths, window_of
from flowforge.forecast.var import GaussianVAR, select_var
from flowforge.yardstick import paired, verdict

__all__ = ["forecast_comparison"]

SAMPLED_VALUES = 200_000  # values drawn per call of the flow (bounds the memory)


def forecast_comparison(
    flow: Flow, splits: Splits, flow_nll: np.ndarray, split: str = "test"
) -> dict[str, Any]:
    """The ``forecast`` block of a run's summary (see the module docstring); ``flow_nll`` is
    the flow's NLL of each row of ``split``, as the objective computed it."""
    info = splits.info
    k, d = window_of(flow)
    if k != info["window"] or d != splits.event_shape[0]:
        raise ValueError(f"the flow's window {k} x {d} is not the data's {info['window']} x {d}")
    arrays = {
        s: (getattr(splits, s).double().numpy(), getattr(splits, f"{s}_context").double().numpy())
        for s in ("train", "val", split)
    }
    var, val_loglik = select_var(*arrays["train"], *arrays["val"], k)
    y, context = arrays[split]
    samples, horizon = int(info["samples"]), int(info["horizon"])
    var_nll = -var.log_prob(y, context)
    metrics = {"nll": _pair(np.asarray(flow_nll, np.float64), var_nll, "nats")}
    metrics["crps_sum"] = _pair(*_crps_sum(flow, var, y, context, 1, samples), "")
    if horizon > 1 and len(y) >= horizon:
        metrics[f"crps_sum_{horizon}"] = _pair(
            *_crps_sum(flow, var, y, context, horizon, samples), ""
        )
    return {
        "split": split,
        "n": len(y),
        "baseline": f"Gaussian VAR({var.order})",
        "var_order": var.order,
        "var_val_loglik": {str(p): v for p, v in val_loglik.items()},
        "samples": samples,
        "horizon": horizon,
        "metrics": metrics,
    }


def _crps_sum(
    flow: Flow, var: GaussianVAR, y: np.ndarray, context: np.ndarray, horizon: int, samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-origin CRPS-sum terms of the flow and the VAR ``(m,)`` for forecasts of
    ``horizon`` steps from the origins ``0, horizon, 2 horizon, ...`` of the rows."""
    k, d = window_of(flow)
    origins = np.arange(0, len(y) - horizon + 1, horizon)
    targets = np.stack([y[o : o + horizon].sum(1) for o in origins])  # (m, H) summed values
    windows = context[origins]  # (m, k D)
    per_call = max(1, SAMPLED_VALUES // (samples * horizon * d))
    flow_sums = []
    for i in range(0, len(origins), per_call):
        history = torch.from_numpy(windows[i : i + per_call].reshape(-1, k, d))
        paths = sample_paths(flow, history, horizon, samples)  # (S, m', H, D)
        flow_sums.append(paths.sum(-1).double().cpu().numpy())
    sums = np.concatenate(flow_sums, 1)  # (S, m, H)
    flow_crps = crps_samples(sums.reshape(samples, -1), targets.ravel()).reshape(targets.shape)
    means, covs = var.moments(windows, horizon)  # (m, H, D), (H, D, D)
    sd = np.sqrt(covs.sum((1, 2)))  # the sum's standard deviation at each step (H,)
    var_crps = crps_gaussian(means.sum(-1), sd[None], targets)
    scale = horizon * np.abs(targets).mean()
    return flow_crps.sum(1) / scale, var_crps.sum(1) / scale


def _pair(flow: np.ndarray, var: np.ndarray, unit: str) -> dict[str, Any]:
    diff, diff_se = paired(flow, var)
    return {
        "unit": unit,
        "n": len(flow),
        "flow": _mean_se(flow),
        "var": _mean_se(var),
        "diff": diff,
        "diff_stderr": diff_se,
        "verdict": verdict(diff, diff_se),
    }


def _mean_se(values: np.ndarray) -> dict[str, float]:
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return {"value": float(values.mean()), "stderr": se}
