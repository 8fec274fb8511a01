"""The flag of a layer that starts from the data it first sees, readable without a graph break.

Actnorm (Kingma and Dhariwal 2018, https://arxiv.org/abs/1807.03039) and a mixture base start
their parameters from the first training batch. The flag that says so must survive checkpoints,
so it is a buffer, ``initialized``; but reading a tensor's value in ``forward``
(``bool(self.initialized)``) breaks a ``torch.compile`` graph at every step. The flag is
therefore mirrored in a Python ``bool``, on which the compiler guards instead: set when the
layer starts (:func:`mark_started`) and from the buffer whenever a state dict is loaded into
the layer (a checkpoint, ``flowforge.load``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["has_started", "mark_started", "track_start"]


def track_start(module: nn.Module) -> None:
    """Gives ``module`` the buffer ``initialized`` (``False``) and its Python mirror."""
    module.register_buffer("initialized", torch.tensor(False))
    module._started = False  # type: ignore[assignment]
    module.register_load_state_dict_post_hook(_mirror_buffer)


def has_started(module: nn.Module) -> bool:
    """Whether ``module`` has started from data (the mirror: no tensor is read)."""
    return bool(module._started)


def mark_started(module: nn.Module) -> None:
    """Sets the flag, buffer and mirror."""
    module.initialized.fill_(True)  # type: ignore[operator]
    module._started = True  # type: ignore[assignment]


def _mirror_buffer(module: nn.Module, incompatible_keys: Any) -> None:
    module._started = bool(module.initialized)  # type: ignore[assignment]
