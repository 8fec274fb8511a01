"""Evaluation metrics: negative log-likelihood in nats per point, or bits per dimension."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flowforge.flows import Flow

__all__ = ["bits_per_dim", "evaluate_nll"]


def evaluate_nll(
    flow: Flow, x: Tensor, context: Tensor | None = None, batch_size: int = 4096
) -> tuple[float, float]:
    """Mean negative log-likelihood of ``x`` (nats per point) and its standard error.

    Runs in eval mode without gradients (transforms that need autograd internally, such as
    exact traces, enable it themselves) and restores the previous mode.
    """
    was_training = flow.training
    flow.eval()
    device = next((b.device for b in flow.buffers()), torch.device("cpu"))
    values = []
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                c = None if context is None else context[i : i + batch_size].to(device)
                values.append(-flow.log_prob(x[i : i + batch_size].to(device), c).double().cpu())
    finally:
        flow.train(was_training)
    nll = torch.cat(values)
    stderr = nll.std().item() / math.sqrt(nll.numel()) if nll.numel() > 1 else float("nan")
    return nll.mean().item(), stderr


def bits_per_dim(nll_nats: float, dims: int) -> float:
    """Converts a per-example NLL in nats to bits per dimension: ``nll / (D ln 2)``."""
    return nll_nats / (dims * math.log(2))
