r"""Forecast paths of a conditional flow over the next value of a series, by ancestral sampling.

A flow trained on the (window, next value) pairs of :mod:`flowforge.data.series` is a
one-step forecaster :math:`p(x_t \mid x_{t-k:t})`; a forecast :math:`h` steps ahead draws
:math:`\hat x_t \sim p(\cdot \mid x_{t-k:t})`, appends it to the window, drops the oldest
value and draws :math:`\hat x_{t+1}` given the new window, and so on (Rasul et al. 2021,
https://arxiv.org/abs/2002.06103): a sample path of the joint forecast distribution, whose
spread grows with the horizon as the drawn values feed back.

The flow's event is one value :math:`(D,)` and its context a window :math:`(k D,)`, so
:math:`D` and :math:`k` are read off the flow: nothing else is needed, a flow loaded from its
run (``flowforge.load``) forecasts without the data.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from flowforge.flows import Flow

__all__ = ["sample_paths", "window_of"]


def window_of(flow: Flow) -> tuple[int, int]:
    """``(k, D)``: the window length and the series' dimension of a forecasting flow; a
    ``ValueError`` for a flow that is not one (an event that is not a vector, no context, or
    a context that is not a whole number of values)."""
    shape = tuple(flow.event_shape)
    width = int(flow.context_features or 0)
    if len(shape) != 1 or width == 0 or width % shape[0]:
        raise ValueError(
            f"a forecasting flow models vectors (D,) given windows (k * D,); this one has "
            f"events {shape} and contexts of {width} features"
        )
    return width // shape[0], shape[0]


@torch.no_grad()
def sample_paths(
    flow: Flow,
    history: Tensor | np.ndarray,
    horizon: int,
    samples: int,
    temperature: float = 1.0,
) -> Tensor:
    """``samples`` forecast paths of ``horizon`` steps after each history.

    Arguments:
        flow: a flow over values ``(D,)`` given windows ``(k * D,)`` (see the module docstring).
        history: the observed values, ``(B, T0, D)`` (or one history ``(T0, D)``), oldest
            first, with ``T0 >= k``; only the last ``k`` steps are read.
        horizon: steps to forecast.
        samples: paths per history.
        temperature: scales the base noise (1: the model's own forecast).

    Returns:
        ``(samples, B, horizon, D)`` (``(samples, horizon, D)`` for one history), on the
        flow's device, drawn in eval mode (the flow's mode is restored after).
    """
    k, d = window_of(flow)
    history = torch.as_tensor(history)
    single = history.dim() == 2
    if single:
        history = history[None]
    if history.dim() != 3 or history.shape[2] != d or history.shape[1] < k:
        raise ValueError(
            f"history: should be (B, T0 >= {k}, {d}) values, oldest first; got "
            f"{tuple(history.shape)}"
        )
    if horizon < 1 or samples < 1:
        raise ValueError(f"horizon and samples should be positive, got {horizon}, {samples}")
    like = next(itertools.chain(flow.parameters(), flow.buffers()), torch.zeros(()))
    b = history.shape[0]
    window = (
        history[:, -k:].to(like.device, like.dtype).repeat(samples, 1, 1)
    )  # (S * B, k, D), sample-major
    steps = []
    was_training = flow.training
    flow.eval()
    try:
        for _ in range(horizon):
            x = flow.sample(samples * b, window.reshape(samples * b, k * d), temperature)
            steps.append(x)
            window = torch.cat([window[:, 1:], x[:, None]], 1)
    finally:
        flow.train(was_training)
    paths = torch.stack(steps, 1).reshape(samples, b, horizon, d)
    return paths[:, 0] if single else paths
