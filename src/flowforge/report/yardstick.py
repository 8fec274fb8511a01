"""A run's yardstick in words and rows: the ``yardstick`` block of ``summary.json`` (the flow's
test NLL beside simple baselines fitted on the same rows) as the report shows it, and as plain
text lines for a terminal.

The block (written by training on vector data whose entropy is unknown)::

    {"split": "test", "n": 5394, "unit": "nats", "flow": {"nll": 3.01, "stderr": 0.02},
     "baselines": {"gmm": {"label": "Gaussian mixture", "nll": 3.2, "stderr": 0.02,
                           "diff": -0.19, "diff_stderr": 0.01, "fit_seconds": 4.2,
                           "chosen": "12 components, full covariance", "note": ""}, ...},
     "best": "gmm", "verdict": "beats", "margin": -0.19, "margin_stderr": 0.01, "note": ""}

or ``{"skipped": "reason"}``. ``diff`` is the flow's NLL minus the baseline's on the same test
rows (negative: the flow is better) and ``diff_stderr`` its paired standard error; ``margin``
is the ``diff`` to the best baseline. The verdict: the flow *beats* the best baseline when
``margin < -margin_stderr``, *ties* it when ``|margin| <= margin_stderr``, else *loses*.
Every key may be missing: what is there is shown, a verdict the block lacks is worked out from
the margin (or the best baseline's ``diff``) by that rule, and nothing is made up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from flowforge.yardstick import verdict

__all__ = ["Baseline", "Yardstick", "yardstick_lines", "yardstick_view"]

VERDICTS = ("beats", "ties", "loses")


@dataclass(frozen=True)
class Baseline:
    """One baseline's row: its NLL and the flow's paired difference to it."""

    key: str
    label: str
    nll: float | None
    stderr: float | None
    diff: float | None
    diff_stderr: float | None
    chosen: str
    note: str
    fit_seconds: float | None
    best: bool


@dataclass(frozen=True)
class Yardstick:
    """What the report shows of a yardstick block."""

    sentence: str
    verdict: str | None = None  # "beats" | "ties" | "loses"; None when skipped or unknown
    skipped: str | None = None
    flow_nll: float | None = None
    flow_stderr: float | None = None
    baselines: list[Baseline] = field(default_factory=list)
    split: str = "test"
    n: int | None = None
    unit: str = "nats"
    note: str = ""

    @property
    def per_row(self) -> str:
        """The unit of an NLL per row (``nats/row``)."""
        return f"{self.unit}/row"

    @property
    def short(self) -> str:
        """The verdict in a few words, for a table cell (``beats gmm: -0.19 ± 0.01``)."""
        if self.skipped is not None:
            return "skipped"
        best = next((b for b in self.baselines if b.best), None)
        if self.verdict is None or best is None:
            return "—"
        return f"{self.verdict} {best.key}: {_pm(best.diff, best.diff_stderr, signed=True)}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _pm(value: float | None, err: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return text if err is None else f"{text} ± {err:.3f}"


def _verdict(margin: float | None, stderr: float | None) -> str | None:
    """The rule of the block (:func:`flowforge.yardstick.verdict`), where both are known."""
    return None if margin is None or stderr is None else verdict(margin, stderr)


def _baselines(block: dict[str, Any]) -> list[Baseline]:
    raw = block.get("baselines")
    if not isinstance(raw, dict):
        return []
    rows = [(str(k), v) for k, v in raw.items() if isinstance(v, dict)]
    best = block.get("best")
    if best not in raw:  # the lowest NLL, when the block does not name the best
        scored = [(_number(v.get("nll")), k) for k, v in rows]
        scored = [(nll, k) for nll, k in scored if nll is not None]
        best = min(scored)[1] if scored else None
    return [
        Baseline(
            key=k,
            label=str(v.get("label") or k),
            nll=_number(v.get("nll")),
            stderr=_number(v.get("stderr")),
            diff=_number(v.get("diff")),
            diff_stderr=_number(v.get("diff_stderr")),
            chosen=str(v.get("chosen") or ""),
            note=str(v.get("note") or ""),
            fit_seconds=_number(v.get("fit_seconds")),
            best=k == best,
        )
        for k, v in rows
    ]


def _sentence(view: Yardstick, margin: float | None, stderr: float | None) -> str:
    best = next((b for b in view.baselines if b.best), None)
    if best is None:
        return "The yardstick holds no baseline to compare the flow with."
    name = best.label + (f" ({best.chosen})" if best.chosen else "")
    rows = "" if view.n is None else f" on the {view.n:,} {view.split} rows"
    if view.verdict is None:
        return f"The best baseline is {name}; the yardstick records no paired difference to it."
    size = _pm(None if margin is None else abs(margin), stderr)
    if view.verdict == "beats":
        return f"The flow beats the best baseline, {name}, by {size} {view.per_row}{rows}."
    if view.verdict == "ties":
        return (
            f"The flow ties the best baseline, {name}: {_pm(margin, stderr, signed=True)} "
            f"{view.per_row}{rows}, within one paired standard error."
        )
    return (
        f"The flow does not beat the baselines: {name} has a {size} {view.per_row} lower "
        f"{view.split} NLL{rows}. A simpler model describes this data better than this flow."
    )


def yardstick_view(block: Any) -> Yardstick | None:
    """The report's view of a summary's ``yardstick`` block; ``None`` without one."""
    if not isinstance(block, dict):
        return None
    if "skipped" in block:
        reason = str(block["skipped"] or "no reason given")
        return Yardstick(sentence=f"No yardstick: {reason}.", skipped=reason)
    flow = block.get("flow") if isinstance(block.get("flow"), dict) else {}
    baselines = _baselines(block)
    best = next((b for b in baselines if b.best), None)
    margin, stderr = _number(block.get("margin")), _number(block.get("margin_stderr"))
    if margin is None and best is not None:
        margin, stderr = best.diff, best.diff_stderr
    verdict = block.get("verdict")
    verdict = verdict if verdict in VERDICTS else _verdict(margin, stderr)
    n = block.get("n")
    view = Yardstick(
        sentence="",
        verdict=verdict if best is not None else None,
        flow_nll=_number(flow.get("nll")),
        flow_stderr=_number(flow.get("stderr")),
        baselines=baselines,
        split=str(block.get("split") or "test"),
        n=n if isinstance(n, int) and not isinstance(n, bool) else None,
        unit=str(block.get("unit") or "nats"),
        note=str(block.get("note") or ""),
    )
    return replace(view, sentence=_sentence(view, margin, stderr))


def yardstick_lines(block: Any) -> list[str]:
    """The yardstick as plain text for a terminal (``flowforge eval``, the closing line): the
    verdict sentence, then one line per baseline; empty without a block."""
    view = yardstick_view(block)
    if view is None:
        return []
    lines = [view.sentence]
    if view.flow_nll is not None:
        lines.append(f"  {'this flow':<28} {_pm(view.flow_nll, view.flow_stderr)} {view.per_row}")
    for b in view.baselines:
        line = f"  {b.label:<28} {_pm(b.nll, b.stderr)} {view.per_row}"
        if b.diff is not None:
            line += f"; flow - it: {_pm(b.diff, b.diff_stderr, signed=True)}"
        extra = "; ".join(x for x in (b.chosen, b.note) if x)
        lines.append(line + (f" ({extra})" if extra else "") + (" [best]" if b.best else ""))
    if view.note:
        lines.append(f"  {view.note}")
    return lines
