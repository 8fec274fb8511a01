"""A run's results as text: computed afresh (:func:`evaluate_run`, ``flowforge eval``) or read
from its summary (:func:`summary_line`, the line ``flowforge train`` closes with).

Both read the typed results of :mod:`flowforge.objectives.results` (the headline with its
error bar and kind, the NLL, the other measures) and nothing objective-specific, and add the
yardstick's sentence (:func:`flowforge.yardstick.yardstick_sentence`) when the run has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flowforge.config import ConfigError
from flowforge.objectives.results import Evaluation, read_evaluation
from flowforge.runs.load import open_run
from flowforge.train.threads import torch_threads
from flowforge.yardstick import yardstick_sentence

__all__ = ["evaluate_run", "results_text", "summary_line"]


def evaluate_run(path: str | Path, split: str = "test", device: str | None = None) -> Evaluation:
    """The typed evaluation of the run at ``path``'s best model on ``split`` (``test``,
    ``val`` or ``train``) on ``device`` (default cpu), computed with as many CPU threads as
    the run's own evaluation (so it repeats the summary's numbers to the last digit); a result
    that is not finite is a :class:`~flowforge.config.ConfigError` naming it."""
    run = open_run(path)
    device = device or "cpu"
    with torch_threads(run.threads):
        results = run.objective(device).evaluate(run.model(device=device), split)
    bad = results.not_finite()
    if bad:
        raise ConfigError(f"eval {path}: {', '.join(bad)} is not finite (the model is broken)")
    return results


def results_text(results: Evaluation | None, numbers: dict[str, Any]) -> str:
    """``results`` in one line (:meth:`~flowforge.objectives.results.Evaluation.line`; a note
    when there are none), and the yardstick's sentence on a second line when ``numbers`` (a
    summary, or an evaluation's :meth:`~flowforge.objectives.results.Evaluation.to_dict`)
    hold a ``yardstick`` block."""
    text = "no test results in the summary" if results is None else results.line()
    if "yardstick" in numbers:
        text += "\n" + yardstick_sentence(numbers["yardstick"])
    return text


def summary_line(s: dict[str, Any]) -> str:
    """One line of a run's summary: its facts, then its typed results (the headline with its
    error bar and kind, the NLL, the other measures; :mod:`flowforge.objectives.results`)."""
    head = f"{s['name']}: {s['model']}"
    head += f" on {s['data']}" if s.get("data") else ""
    head += f" ({s['objective']}), {s['steps']} steps in {s['train_seconds']:.1f} s: "
    return head + results_text(read_evaluation(s), s)
