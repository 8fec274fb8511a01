"""Conditioner networks."""

from flowforge.nn.made import MADE
from flowforge.nn.mlp import MLP

__all__ = ["MLP"]
__all__ += ["MADE"]
