"""The figures a finished run draws into its ``plots/`` folder (drawing code:
:mod:`flowforge.viz.run_figures`; each figure as ``NAME.png`` and ``NAME.svg``).

Every run draws ``curves`` (its training and validation curves), and by what the objective
(:attr:`~flowforge.objectives.base.Objective.figures`) and the model (its
``latent_inference``) declare:

- a model with an exact inverse (a flow) on 2-D data: ``data``, ``density`` (one labelled
  panel per context when conditional), ``samples``, ``latent``, ``layers`` (the grid pushed
  layer by layer to latent space);
- any other model on 2-D data (VAE, GAN, RBM, NADE): ``samples`` beside the data;
- vector data of more dimensions: ``pairs`` and ``marginals`` (data vs samples);
- a series' (window, next value) pairs: ``forecast``, a fan chart of the flow's forecast
  paths beside the values that came (:mod:`flowforge.viz.series`);

The test points shown are a random subset of the test rows drawn with the run's seed, the
samples at least :data:`~flowforge.viz.run_figures.SAMPLES` whatever the test size, and the
axes carry the data's feature names (:mod:`flowforge.viz.run_figures` says what else the
figures guarantee).
- image data: ``samples`` (grids at several temperatures beside the test images);
- sequences of frames (video): ``samples`` (sample strips beside test sequences) and, for a
  model that predicts (VideoFlow), ``prediction`` (future frames from observed ones) and
  ``frame_bits`` (bits per pixel of each frame position), :mod:`flowforge.viz.video`;
- an objective that fits a target (``figures = "target"``: reverse KL, distillation): ``fit``
  (the target beside the fitted q) in 2-D, ``pairs`` and ``marginals`` of q's samples
  otherwise (beside those of the objective's :meth:`~flowforge.objectives.base.Objective.
  reference`, distillation's teacher).

A figure that cannot be drawn (e.g. a model that cannot sample) is skipped with a warning:
figures never fail a run. :func:`draw_missing_figures` draws those of runs that have none
(``flowforge report`` does, before it writes its page). ``flowforge sample``, ``interpolate``
and ``manipulate`` draw more on request.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

from torch import nn

from flowforge.config import RunConfig
from flowforge.objectives import Objective
from flowforge.objectives.mle import bits_per_dim
from flowforge.runs.directory import RunDirectory
from flowforge.runs.load import open_run

__all__ = ["draw_missing_figures", "draw_run_figures"]


def draw_run_figures(
    cfg: RunConfig, objective: Objective, model: nn.Module, directory: RunDirectory
) -> list[Path]:
    """Draws the figures of this kind of run; returns the files written."""
    from flowforge.viz import run_figures as rf

    out = directory.plots
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    files: list[Path] = []
    start = time.perf_counter()

    def attempt(what: str, draw: object, *args: object, **kwargs: object) -> None:
        try:
            files.extend(draw(*args, **kwargs))  # type: ignore[operator]
        except Exception as e:  # a figure never fails the run
            warnings.warn(f"{directory.path}: figure {what!r} not drawn: {e}", stacklevel=2)

    data = None if not cfg.uses_data else objective.data
    entropy = None if data is None else data.entropy
    records = directory.read_metrics()
    metric, train_key, unit = objective.metric, objective.train_key, None
    if data is not None and data.unit == "bits/dim" and any("val_bpd" in r for r in records):
        # image runs: the curves in bits/dim, the training NLL converted like the validation's
        dims = math.prod(data.event_shape)
        records = [
            {**r, "train_bpd": bits_per_dim(r[train_key], dims)} if train_key in r else r
            for r in records
        ]
        metric, train_key, unit = "bpd", "train_bpd", "bits/dim"
    attempt("curves", rf.plot_training_curves, records, out, metric, train_key, entropy, unit)
    what = cfg.model.name
    if objective.figures == "target":
        target = objective.target  # type: ignore[attr-defined]
        if target.dim == 2:
            attempt("fit", rf.plot_target_fit, target, model, out, target.bounds, target.name)
        else:

            def vi_vectors() -> list[Path]:
                q = rf.draw_samples(model, 2000)
                reference = objective.reference()
                teacher = None if reference is None else rf.draw_samples(reference, 2000)
                return rf.plot_vectors(q, teacher, out, what, "teacher samples")

            attempt("pairs", vi_vectors)
        return files
    if data is None:
        return files
    shape = tuple(data.event_shape)
    test, context, info, seed = data.test, data.test_context, data.info, cfg.seed
    if len(shape) == 3:
        attempt("samples", rf.plot_images, model, test, out, context=context)
    elif len(shape) == 4:  # sequences of frames
        from flowforge.viz import video

        levels = int(info.get("levels", 256))
        attempt("samples", video.plot_video_samples, model, test, out, levels, seed=seed)
        if callable(getattr(model, "predict", None)):
            attempt("prediction", video.plot_video_prediction, model, test, out, levels, seed=seed)
        if callable(getattr(model, "frame_log_probs", None)):
            attempt("frame_bits", video.plot_frame_bits, model, test, out, seed=seed)
    elif info.get("kind") == "series":
        from flowforge.viz import series

        attempt("forecast", series.plot_forecast_fan, model, data, out, seed=seed)
    elif shape == (2,) and getattr(model, "latent_inference", None) == "exact inverse":
        attempt("2-D figures", rf.plot_flow_2d, model, test, out, context, info, seed)
    elif shape == (2,) and context is None:
        attempt("samples", rf.plot_samples_2d, model, test, out, what, info, seed)
    else:

        def vectors() -> list[Path]:
            shown, shown_context = rf.shown_rows(test, context, seed)
            samples, at = (
                rf.draw_at(model, shown_context, seed) if _samples(model) else (None, None)
            )
            return rf.plot_vectors(samples, shown, out, what, "test data", info, shown_context, at)

        attempt("pairs", vectors)
    took = time.perf_counter() - start
    if took > 30:
        warnings.warn(f"{directory.path}: figures took {took:.0f} s", stacklevel=2)
    return files


def draw_missing_figures(runs: list[str | Path]) -> list[Path]:
    """Draws the figures of each run directory of ``runs`` whose ``plots/`` folder has none
    (e.g. trained with ``plots=False``, or before every run kind drew figures); returns the
    files written."""
    files: list[Path] = []
    for path in runs:
        run = open_run(path)
        if not list(run.directory.plots.glob("*.png")):
            files += draw_run_figures(run.config, run.objective(), run.model(), run.directory)
    return files


def _samples(model: nn.Module) -> bool:
    return callable(getattr(model, "sample", None))
