r"""Stress mode of the conformance kit: every registered case under hard parameters.

The conformance checks run at a mild perturbation (0.1) in float64. Here each case of
:mod:`flowforge.testing.registry` is run with every floating parameter moved by Gaussian noise
of standard deviation ``p`` (:func:`~flowforge.testing.conformance.perturb_parameters`) for
each ``p`` in ``perturbations``, its inputs multiplied by each of ``input_scales`` (inputs of
one sign, such as pixels or unit-interval data, keep their scale: they would leave the domain),
in each dtype.
For each combination it records

- ``round_trip``: :math:`\max |f^{-1}(f(x)) - x|`;
- ``log_det``: :math:`\max |\log|\det J_{f^{-1}}(f(x))| + \log|\det J_f(x)||` (nats), the
  consistency of the two directions;
- ``nonfinite``: how many outputs (both directions, values and log-dets) are NaN or infinite;
- ``condition``: the worst condition number of the Jacobian at the inputs
  (:func:`flowforge.conditioning.condition_numbers`, float64, 16 points); a result whose
  ``condition * eps`` passes :data:`CONDITION_TOL` is *ill-conditioned*: its round trip cannot
  be trusted to that relative accuracy in its dtype, and the table says so (``ill``) instead of
  showing a finite wrong answer as if it were a measurement of the code;
- ``error``: the class of an exception, and whether it is a *named* one (one of
  :data:`NAMED_ERRORS`: a limit the library detected and reported) or not (a crash).

:func:`stress` returns one :class:`StressResult` per combination; :func:`format_stress` prints
the worst figures per case, dtype and perturbation.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from flowforge.conditioning import condition_numbers
from flowforge.testing.conformance import perturb_parameters
from flowforge.testing.registry import Case, all_cases
from flowforge.transforms.base import (
    EmptyBatchError,
    FloatRangeError,
    InverseDidNotConverge,
    InverseNotAvailable,
)

__all__ = ["CONDITION_TOL", "NAMED_ERRORS", "StressResult", "format_stress", "stress"]

CONDITION_TOL = 1e-4
"""``condition * eps`` above this flags a result as ill-conditioned (the 1e-4 relative
round-trip guarantee of ``docs/reliability.md`` cannot hold there)."""

NAMED_ERRORS: tuple[type[BaseException], ...] = (
    FloatRangeError,
    InverseDidNotConverge,
    EmptyBatchError,
    ValueError,
)
"""Exceptions that report a detected numerical limit; anything else counts as a crash."""


@dataclass(frozen=True)
class StressResult:
    """One case at one perturbation, input scale and dtype.

    Attributes:
        case: the registered case name.
        dtype: ``"float32"`` or ``"float64"``.
        perturbation: standard deviation of the noise added to the parameters.
        input_scale: factor applied to the case's inputs (1 where they have one sign).
        round_trip: largest absolute round-trip error (NaN when not measured).
        log_det: largest absolute log-det mismatch in nats (NaN when not measured).
        nonfinite: count of NaN or infinite outputs.
        error: class name of the exception raised, or ``None``.
        named: the exception is a named numerical error (see :data:`NAMED_ERRORS`).
        skipped: the case has no inverse (:class:`InverseNotAvailable`).
        condition: worst Jacobian condition number at the inputs (NaN when not measured).
    """

    case: str
    dtype: str
    perturbation: float
    input_scale: float
    round_trip: float = math.nan
    log_det: float = math.nan
    nonfinite: int = 0
    error: str | None = None
    named: bool = False
    skipped: bool = False
    condition: float = math.nan

    @property
    def ill_conditioned(self) -> bool:
        """``condition * eps`` of the dtype passes :data:`CONDITION_TOL`."""
        return self.condition * torch.finfo(getattr(torch, self.dtype)).eps > CONDITION_TOL


def _max_abs(a: torch.Tensor) -> float:
    finite = a[torch.isfinite(a)]
    return float(finite.abs().max()) if finite.numel() else math.nan


def _condition(t: torch.nn.Module, x: torch.Tensor, context: torch.Tensor | None) -> float:
    try:
        return float(condition_numbers(t, x, context).max())
    except Exception:  # e.g. a map autograd cannot differentiate twice: not measured
        return math.nan


def _run_one(
    case: Case,
    dtype: torch.dtype,
    perturbation: float,
    scale: float,
    seed: int,
    condition: bool = True,
) -> StressResult:
    name = str(dtype).removeprefix("torch.")
    x, context = case.inputs()
    if bool((x < 0).any()) and bool((x > 0).any()):
        x = x * scale
    else:
        scale = 1.0
    base = {"case": case.name, "dtype": name, "perturbation": perturbation, "input_scale": scale}
    x = x.to(dtype)
    context = None if context is None else context.to(dtype)
    try:
        torch.manual_seed(seed)
        t = case.make_transform().to(dtype)
        perturb_parameters(t, perturbation, seed)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t.train()  # data-dependent initialisation and running statistics, as the kit
            t(x, context)
            t.eval()
            z, ladj = t(x, context)
            x2, ladj_inv = t.inverse(z, context)
    except InverseNotAvailable:
        return StressResult(**base, skipped=True)
    except Exception as e:  # every exception is reported, named or not
        return StressResult(**base, error=type(e).__name__, named=isinstance(e, NAMED_ERRORS))
    outputs = (z, ladj, x2, ladj_inv)
    nonfinite = sum(int((~torch.isfinite(o)).sum()) for o in outputs)
    return StressResult(
        **base,
        round_trip=_max_abs(x2 - x),
        log_det=_max_abs(ladj_inv + ladj),
        nonfinite=nonfinite,
        condition=_condition(t, x, context) if condition else math.nan,
    )


def stress(
    names: str | Iterable[str] | None = None,
    perturbations: Sequence[float] = (0.1, 0.3, 0.5, 1.0),
    input_scales: Sequence[float] = (1.0, 4.0, 16.0),
    dtypes: Sequence[torch.dtype] = (torch.float32, torch.float64),
    seed: int = 0,
    condition: bool = True,
) -> list[StressResult]:
    """Runs the registered cases under hard parameters; one result per combination.

    Arguments:
        names: ``None`` (every case), a regular expression matched with ``re.search`` against
            the case names (e.g. ``"spline|sos"``), or an iterable of exact names.
        perturbations: standard deviations of the parameter noise.
        input_scales: factors applied to inputs that take both signs.
        dtypes: dtypes to run in.
        seed: seed of the noise and of the construction.
        condition: measure each result's Jacobian condition number (one backward pass per
            dimension of the case, on 16 points).
    """
    cases = all_cases()
    if names is None:
        chosen = list(cases)
    elif isinstance(names, str):
        chosen = [n for n in cases if re.search(names, n)]
    else:
        chosen = list(names)
        unknown = [n for n in chosen if n not in cases]
        if unknown:
            raise ValueError(f"unknown conformance cases {unknown}")
    return [
        _run_one(cases[n], dtype, p, s, seed, condition)
        for n in chosen
        for dtype in dtypes
        for p in perturbations
        for s in input_scales
    ]


def _cell(rows: list[StressResult]) -> str:
    """The worst outcome over input scales: a crash, else a named error, else the errors."""
    crashes = [r.error for r in rows if r.error and not r.named]
    if crashes:
        return f"CRASH {crashes[0]}"
    named = [r.error for r in rows if r.error]
    measured = [r for r in rows if not r.error and not r.skipped]
    if not measured:
        return f"named {named[0]}" if named else "no inverse"
    rt = max((r.round_trip for r in measured), key=lambda v: -1 if math.isnan(v) else v)
    ld = max((r.log_det for r in measured), key=lambda v: -1 if math.isnan(v) else v)
    text = f"{rt:.1e}/{ld:.1e}"
    ill = [r.condition for r in measured if r.ill_conditioned]
    if ill:  # flagged, not a silent finite wrong answer
        text = f"ill cond {max(ill):.0e}: {text}"
    bad = sum(r.nonfinite for r in measured)
    if bad:
        text += f" nonfinite {bad}"
    if named:
        text += f" (+named {named[0]})"
    return text


def format_stress(results: Sequence[StressResult]) -> str:
    """A Markdown table: one row per case and dtype, one column per perturbation, each cell the
    worst round-trip error / log-det mismatch over the input scales, prefixed ``ill cond K:``
    where the Jacobian's condition number ``K`` makes the dtype too coarse (see
    :data:`CONDITION_TOL`), ``named <Error>`` where a named error was raised instead,
    ``CRASH <Error>`` for any other exception."""
    perturbations = sorted({r.perturbation for r in results})
    groups: dict[tuple[str, str], dict[float, list[StressResult]]] = {}
    for r in results:
        groups.setdefault((r.case, r.dtype), {}).setdefault(r.perturbation, []).append(r)
    header = "| case | dtype | " + " | ".join(f"p={p:g}" for p in perturbations) + " |"
    lines = [header, "|---|---|" + "---|" * len(perturbations)]
    for (case, dtype), by_p in groups.items():
        cells = [_cell(by_p[p]) if p in by_p else "" for p in perturbations]
        lines.append(f"| {case} | {dtype} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
