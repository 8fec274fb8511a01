"""Conditioner networks."""

from flowforge.nn.mlp import MLP

__all__ = ["MLP"]
