"""The registry of conformance cases: every transform and recipe, with inputs in its domain.

Registering a case gives it every check of :mod:`flowforge.testing.conformance` in the test
suite and in ``flowforge check``. Cases live in :mod:`flowforge.testing.cases`, one module per
family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from flowforge.flows import Flow
from flowforge.transforms.base import Transform

__all__ = ["CASES", "Case", "all_cases", "register", "vector_inputs"]


@dataclass(frozen=True)
class Case:
    """One conformance case.

    Attributes:
        name: unique id, e.g. ``"coupling/affine"``.
        make: builds a fresh :class:`Transform` or :class:`Flow` (seeded by the kit).
        inputs: returns ``(x, context)`` in the transform's domain; context may be ``None``.
        atol, rtol: tolerances (looser for numerical inverses).
        bounds: for 2-D flows, the half-width of the box that holds their mass.
    """

    name: str
    make: Callable[[], Transform | Flow]
    inputs: Callable[[], tuple[Tensor, Tensor | None]]
    atol: float = 1e-6
    rtol: float = 1e-5
    bounds: float = 8.0

    def make_transform(self) -> Transform:
        made = self.make()
        return made.transform if isinstance(made, Flow) else made


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    """Adds ``case`` to :data:`CASES`; names must be unique."""
    if case.name in CASES:
        raise ValueError(f"a conformance case named {case.name!r} is already registered")
    CASES[case.name] = case
    return case


def all_cases() -> dict[str, Case]:
    """Every registered case (importing the case modules registers them)."""
    import flowforge.testing.cases  # noqa: F401

    return CASES


def vector_inputs(
    features: int, batch: int = 4, context: int = 0, seed: int = 0
) -> Callable[[], tuple[Tensor, Tensor | None]]:
    """Seeded standard-normal inputs ``(batch, features)`` and optional context."""

    def inputs() -> tuple[Tensor, Tensor | None]:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, features, generator=g, dtype=torch.float64)
        c = torch.randn(batch, context, generator=g, dtype=torch.float64) if context else None
        return x, c

    return inputs
