"""The resume-state schema: the trainer's counters as they travel in a checkpoint.

A training checkpoint (``last.pt``) holds the model's and optimiser's state dicts, the
parameter average (``train.ema``), torch's random states, and these counters; with them a run
killed at any point continues bit-identically. Checkpoints from before a counter existed load
with its starting value where that is safe (``loss_sum``, ``loss_n``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Progress", "StateError"]


class StateError(ValueError):
    """A checkpoint's training counters are missing or impossible."""


@dataclass
class Progress:
    """Where a run is.

    Attributes:
        step: optimiser steps taken.
        best_val: the best validation metric so far (``inf`` before the first evaluation).
        evals_since_best: evaluations without improvement (for ``train.patience``).
        lr_scale: the factor rollbacks put on the scheduled learning rate (halved by each).
        rollbacks: rollbacks so far.
        loss_sum, loss_n: the training loss summed since the last evaluation, and its count.
        elapsed: training wall-clock seconds before this process (``train.max_seconds``).
    """

    step: int = 0
    best_val: float = math.inf
    evals_since_best: int = 0
    lr_scale: float = 1.0
    rollbacks: int = 0
    loss_sum: float = 0.0
    loss_n: int = 0
    elapsed: float = 0.0

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Progress:
        """Reads the counters of a checkpoint; a missing or impossible one is a
        :class:`StateError` naming it."""
        optional = {"loss_sum": 0.0, "loss_n": 0}
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            if name not in payload and name not in optional:
                raise StateError(f"missing training counter {name!r}")
            raw = payload.get(name, optional.get(name))
            try:
                values[name] = type(default)(raw)
            except (TypeError, ValueError):
                raise StateError(f"training counter {name!r} is {raw!r}") from None
        p = cls(**values)
        if p.step < 0 or p.rollbacks < 0 or p.loss_n < 0 or p.evals_since_best < 0:
            raise StateError(f"negative training counter in {p}")
        if not (0 < p.lr_scale <= 1 and math.isfinite(p.elapsed) and p.elapsed >= 0):
            raise StateError(f"impossible lr_scale {p.lr_scale} or elapsed {p.elapsed}")
        return p
