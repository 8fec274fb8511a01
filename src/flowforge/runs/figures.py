"""The figures a finished run draws into its ``plots/`` folder.

- maximum likelihood on 2-D data: data and learned density, samples, latents, curves
  (:func:`flowforge.viz.plots.plot_2d_run`);
- reverse KL and distillation in 2-D: the target beside the fitted density and samples
  (:func:`flowforge.viz.vi.plot_vi_grid`).

Other runs draw on request (``flowforge sample``, ``interpolate``, ``manipulate``).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from flowforge.config import RunConfig
from flowforge.flows import Flow
from flowforge.objectives import Objective
from flowforge.objectives.mle import MaximumLikelihood
from flowforge.objectives.reverse_kl import ReverseKL
from flowforge.runs.directory import RunDirectory

__all__ = ["draw_run_figures"]


def draw_run_figures(
    cfg: RunConfig, objective: Objective, model: nn.Module, directory: RunDirectory
) -> list[Path]:
    """Draws the figures of this kind of run; returns the files written."""
    if not isinstance(model, Flow) or tuple(model.event_shape) != (2,):
        return []
    if isinstance(objective, MaximumLikelihood):
        from flowforge.viz.plots import plot_2d_run

        return plot_2d_run(model, objective.data, directory.plots, directory.read_metrics())
    if isinstance(objective, ReverseKL):
        from flowforge.viz.vi import plot_vi_grid

        directory.plots.mkdir(parents=True, exist_ok=True)
        key = (objective.target.name, cfg.model.name)
        path = plot_vi_grid(
            [objective.target], {key: model}, [cfg.model.name], directory.plots / "fit.png"
        )
        return [path]
    return []
