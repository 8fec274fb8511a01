r"""An objective's test results, typed: the headline measure, the NLL where there is one, the
objective's other measures, and the flat numbers.

Every objective's :meth:`~flowforge.objectives.base.Objective.evaluate` returns an
:class:`Evaluation`; ``summary.json`` and ``flowforge eval`` store it as the flat numbers (the
keys each objective always wrote, ``test_nll``, ``test_mmd``, ...) plus three blocks, the one
schema every reader uses (the CLI's closing line, the report, ``flowforge compare``, the
playground)::

    "headline": {"name": "test NLL", "value": 1.42, "stderr": 0.02, "unit": "nats",
                 "kind": "exact", "how": ""},
    "nll":      {... the same fields, or null: the model has no likelihood ...},
    "measures": [{... the objective's other measures, e.g. the ELBO, the true entropy ...}]

A measure's ``kind`` says how its value relates to what ``name`` names:

- ``exact``: computed exactly up to the Monte Carlo error of the test sample (``stderr``);
- ``bound``: a bound in expectation (a VAE's IWAE estimate of :math:`-\log p(x)` is an
  upper bound of the NLL; a DBM's mean-field bound);
- ``estimate``: an estimator without a sign guarantee worth stating (AIS's :math:`\log Z`, a
  sample-based MMD, a Monte Carlo KL);
- ``lower bound``: known to lie below the true value (AIS that missed mass, replaced by the
  uniform estimate of :math:`\log Z`);
- ``none``: no error statement (e.g. a number without a standard error).

``how`` says in words how the value was obtained (``"IWAE bound, k=5000"``); empty when
``kind`` says it all. :func:`read_evaluation` reads the blocks back, and summaries written
before them through the objective's :meth:`~flowforge.objectives.base.Objective.results`
over their flat numbers. This module imports nothing heavy (no torch), so readers stay
light.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["KINDS", "Evaluation", "Measure", "read_evaluation"]

#: what a measure's value is (module docstring)
KINDS = ("exact", "bound", "estimate", "lower bound", "none")


@dataclass(frozen=True)
class Measure:
    """One measured number.

    Attributes:
        name: what it measures, as a reader shows it (``"test NLL"``, ``"test MMD^2"``).
        value: the number.
        stderr: its standard error, ``None`` when the objective has none.
        unit: ``"nats"``, ``"bits/dim"``, or ``""`` for a dimensionless number.
        kind: one of :data:`KINDS`.
        how: how it was obtained, in words, when ``kind`` does not say it all.
    """

    name: str
    value: float
    stderr: float | None
    unit: str
    kind: str
    how: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"measure {self.name!r}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def description(self) -> str:
        """What the value is, for a table's column: ``how`` when given, else the kind."""
        return self.how or self.kind

    def text(self) -> str:
        """``"test NLL 1.4213 ± 0.0200 nats"`` (4 decimals; 4 significant digits for numbers
        too small or large for them, e.g. an MMD^2 of ``0.0001234``)."""
        se = "" if self.stderr is None else f" ± {_short(self.stderr)}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {_short(self.value)}{se}{unit}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Any) -> Measure | None:
        """The measure of a summary's block; ``None`` for anything that is not one."""
        if not isinstance(raw, dict):
            return None
        value, stderr = _number(raw.get("value")), _number(raw.get("stderr"))
        kind = raw.get("kind")
        if value is None or kind not in KINDS:
            return None
        return cls(
            name=str(raw.get("name", "")),
            value=value,
            stderr=stderr,
            unit=str(raw.get("unit") or ""),
            kind=kind,
            how=str(raw.get("how") or ""),
        )


@dataclass(frozen=True)
class Evaluation:
    """What :meth:`~flowforge.objectives.base.Objective.evaluate` returns.

    Attributes:
        headline: the one measure a run is judged by.
        nll: the negative log-likelihood (nats per example) where the model has one, else
            ``None``; may be the headline itself.
        measures: the objective's other measures, shown beside the headline.
        numbers: every number by its summary key (``test_nll``, ``eval_k``, ``yardstick``...),
            as the objective always wrote them.
    """

    headline: Measure
    nll: Measure | None = None
    measures: tuple[Measure, ...] = ()
    numbers: dict[str, Any] = field(default_factory=dict)

    def blocks(self) -> dict[str, Any]:
        """The ``headline``, ``nll`` and ``measures`` blocks of the summary schema."""
        return {
            "headline": self.headline.to_dict(),
            "nll": None if self.nll is None else self.nll.to_dict(),
            "measures": [m.to_dict() for m in self.measures],
        }

    def to_dict(self) -> dict[str, Any]:
        """The flat numbers and the blocks: what ``summary.json`` and ``flowforge eval``
        hold."""
        return {**self.numbers, **self.blocks()}

    def line(self) -> str:
        """The headline with its error bar and kind, then the other measures, in one line."""
        h = self.headline
        out = h.text() + f" ({h.description})"
        if self.nll is not None and self.nll != h:
            out += f", {self.nll.text()} ({self.nll.description})"
        if self.measures:
            out += "; " + ", ".join(m.text() for m in self.measures)
        return out

    def not_finite(self) -> list[str]:
        """The keys of the numbers that are NaN or infinite, else the names of the measures
        that are (a measure's value or standard error)."""
        bad = [k for k, v in self.numbers.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            return bad
        return [
            m.name
            for m in (self.headline, self.nll, *self.measures)
            if m is not None
            and not all(math.isfinite(v) for v in (m.value, m.stderr) if v is not None)
        ]


def _short(x: float) -> str:
    return f"{x:.4f}" if x == 0 or 1e-3 <= abs(x) < 1e7 or not math.isfinite(x) else f"{x:.4g}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def read_evaluation(summary: dict[str, Any] | None) -> Evaluation | None:
    """The typed evaluation of a run's summary: its blocks, or for a summary written before
    them, the registered objective's :meth:`~flowforge.objectives.base.Objective.results`
    over its flat numbers; ``None`` when neither gives one (no summary, an unknown
    objective)."""
    if not isinstance(summary, dict):
        return None
    headline = Measure.from_dict(summary.get("headline"))
    if headline is not None:
        raw = summary.get("measures")
        measures = [Measure.from_dict(m) for m in raw] if isinstance(raw, list) else []
        return Evaluation(
            headline=headline,
            nll=Measure.from_dict(summary.get("nll")),
            measures=tuple(m for m in measures if m is not None),
            numbers=summary,
        )
    from flowforge.objectives import OBJECTIVES  # an older summary: its objective reads it

    cls = OBJECTIVES.get(str(summary.get("objective")))
    if cls is None:
        return None
    try:
        return cls.results(summary, "test")
    except (KeyError, TypeError, ValueError):
        return None
