r"""Polyak averaging: an exponential moving average of the parameters, for evaluation.

.. math:: \bar\theta_{n+1} = d_n \bar\theta_n + (1 - d_n)\,\theta_{n+1}, \qquad
    d_n = \min\left(d, \frac{n}{n + 10}\right)

after optimiser step ``n`` (counted from 0, so the first step copies the parameters and early
averages are not pulled towards the initialisation). Glow (Kingma and Dhariwal 2018) and
Residual Flows (Chen et al. 2019, decay 0.999) report likelihoods of averaged parameters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

__all__ = ["ParameterAverage"]


class ParameterAverage:
    """The moving average of ``module``'s parameters with decay ``decay`` in [0, 1)."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"'decay' should be in [0, 1), got {decay}")
        self.decay = decay
        self.params = list(module.parameters())
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self, n: int) -> None:
        """Folds in the parameters after optimiser step ``n`` (0-based)."""
        weight = 1.0 - min(self.decay, n / (n + 10))
        for s, p in zip(self.shadow, self.params, strict=True):
            s.lerp_(p.detach(), weight)

    @torch.no_grad()
    def reset(self) -> None:
        """Restarts the average at the current parameters."""
        for s, p in zip(self.shadow, self.params, strict=True):
            s.copy_(p)

    @torch.no_grad()
    def copy_to_module(self) -> None:
        """Writes the averaged values into the module's parameters (for good: see
        :meth:`applied` for a temporary swap)."""
        for p, s in zip(self.params, self.shadow, strict=True):
            p.copy_(s)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged values sit in the module's parameters inside the block; the raw ones
        are put back after it."""
        raw = [p.detach().clone() for p in self.params]
        self.copy_to_module()
        try:
            yield
        finally:
            with torch.no_grad():
                for p, r in zip(self.params, raw, strict=True):
                    p.copy_(r)

    def load(self, tensors: list[Tensor]) -> None:
        """Loads a saved :attr:`shadow`; a wrong count or shape is a ``ValueError``."""
        if len(tensors) != len(self.shadow):
            raise ValueError(f"{len(tensors)} averaged tensors for {len(self.shadow)} parameters")
        for i, (s, t) in enumerate(zip(self.shadow, tensors, strict=True)):
            if s.shape != t.shape:
                shapes = f"{tuple(t.shape)}, not {tuple(s.shape)}"
                raise ValueError(f"averaged tensor {i} has shape {shapes}")
        with torch.no_grad():
            for s, t in zip(self.shadow, tensors, strict=True):
                s.copy_(t)
