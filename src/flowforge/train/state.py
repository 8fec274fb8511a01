"""The resume-state schema: the trainer's counters as they travel in a checkpoint.

A training checkpoint (``last.pt``) holds the model's and optimiser's state dicts, the
parameter average (``train.ema``), torch's random states, and these counters; with them a run
killed at any point continues bit-identically. Checkpoints from before a counter existed load
with its starting value where that is safe (``loss_sum``, ``loss_n``, ``eval_elapsed``).
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
        eval_elapsed: the part of ``elapsed`` (and of this process's time since) spent in
            validation passes: the summary's ``eval_seconds``.
    """

    step: int = 0
    best_val: float = math.inf
    evals_since_best: int = 0
    lr_scale: float = 1.0
    rollbacks: int = 0
    loss_sum: float = 0.0
    loss_n: int = 0
    elapsed: float = 0.0
    eval_elapsed: float = 0.0

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any], max_step: int) -> Progress:
        """Reads the counters of a checkpoint; a missing or impossible one is a
        :class:`StateError` naming it. Each must be of its type (a count an ``int``, never a
        float, string or bool; the others a number) and in its range: ``step`` in ``[0,
        max_step]`` (``max_step``: the ``train.steps`` of the run that wrote the checkpoint,
        which it never passes), ``evals_since_best`` at most ``step + 1`` (one evaluation a
        step and one at the start), ``loss_n`` at most ``step``, ``lr_scale`` exactly
        ``2 ** -rollbacks`` (each rollback halves it), ``best_val`` finite or ``+inf`` (no
        evaluation yet), ``loss_sum`` finite, ``elapsed`` and ``eval_elapsed`` finite and
        ``>= 0``."""
        optional = {"loss_sum": 0.0, "loss_n": 0, "eval_elapsed": 0.0}
        values: dict[str, Any] = {}
        for name, default in asdict(cls()).items():
            if name not in payload and name not in optional:
                raise StateError(f"missing training counter {name!r}")
            raw = payload.get(name, optional.get(name))
            kinds = (int,) if type(default) is int else (int, float)
            if isinstance(raw, bool) or not isinstance(raw, kinds):
                kind = "an int" if kinds == (int,) else "a number"
                raise StateError(f"training counter {name!r} is {raw!r}, not {kind}")
            values[name] = type(default)(raw)
        p = cls(**values)
        p.check(max_step)
        return p

    def check(self, max_step: int) -> None:
        """The ranges of :meth:`from_payload`."""
        bounds = {
            "step": max_step,
            "evals_since_best": self.step + 1,
            "loss_n": self.step,
            "rollbacks": 1074,  # 2**-1075 is 0.0 in float64
        }
        for name, high in bounds.items():
            value = getattr(self, name)
            if not 0 <= value <= high:
                raise StateError(f"training counter {name!r} is {value}, outside [0, {high}]")
        if self.lr_scale != 0.5**self.rollbacks:
            raise StateError(
                f"training counter 'lr_scale' is {self.lr_scale}, but {self.rollbacks} "
                f"rollbacks make it {0.5**self.rollbacks}"
            )
        if math.isnan(self.best_val) or self.best_val == -math.inf:
            raise StateError(f"training counter 'best_val' is {self.best_val}")
        for name in ("loss_sum", "elapsed", "eval_elapsed"):
            if not math.isfinite(getattr(self, name)):
                raise StateError(f"training counter {name!r} is {getattr(self, name)}")
        for name in ("elapsed", "eval_elapsed"):
            if getattr(self, name) < 0:
                raise StateError(f"training counter {name!r} is {getattr(self, name)}, below 0")
