"""Starting and resuming a run: config -> data, objective, model -> trainer -> summary.

``train_run(cfg)`` writes ``<output_dir>/<name>/`` (see :mod:`flowforge.runs.directory`).
Everything that can be wrong with the config, the data or the model is found before the
directory is created. ``train_run(resume=RUN_DIR, overrides=[...])`` continues a run from
``last.pt``: the overrides are applied to the run's ``config.yaml``, which is rewritten, so
the config on disk is always the one that resumes (a metrics record notes the change), and
a checkpoint whose model, objective or data differ from the run's is refused.
"""

from __future__ import annotations

import math
import sys
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowforge.config import ConfigError, RunConfig, apply_overrides, parse_config
from flowforge.run_files import BEST, CONFIG, LAST, SUMMARY
from flowforge.runs.build import (
    build_from_spec,
    load_data,
    make_objective,
    model_spec,
    resolve_device,
)
from flowforge.runs.directory import RunDirectory
from flowforge.runs.figures import draw_run_figures
from flowforge.runs.load import load
from flowforge.train.checkpoint import CheckpointError, load_checkpoint, load_model_state
from flowforge.train.distributed import Group
from flowforge.train.loggers import check_log_config, make_loggers
from flowforge.train.schedule import seed_everything
from flowforge.train.threads import torch_threads
from flowforge.train.trainer import Trainer, TrainingDiverged, stop_signals

__all__ = ["RunResult", "start_line", "train_run"]


@dataclass
class RunResult:
    """Where a run wrote its files, and its summary."""

    run_dir: Path
    summary: dict[str, Any]


def train_run(
    cfg: RunConfig | None = None,
    resume: str | Path | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    plots: bool = True,
    accept_unidentified: bool = False,
) -> RunResult:
    """Trains ``cfg``, or resumes the run in directory ``resume`` (its own config, with
    ``overrides`` applied; or ``cfg`` when given). A ``last.pt`` that does not record which
    model, objective and data it belongs to is refused unless ``accept_unidentified``.

    Under torchrun every process calls it and they train one model data-parallel
    (:mod:`flowforge.train.distributed`); rank 0 writes the files.
    """
    directory = None
    if resume is not None:
        _check_started(Path(resume))
        directory = RunDirectory.open(resume)
        if not directory.checkpoint_path(LAST).is_file():
            raise CheckpointError(
                f"nothing to resume: {directory.checkpoint_path(LAST)} was never written "
                f"(the run stopped before its first checkpoint); start the run again"
            )
        if cfg is None:
            saved = directory.read_config()
            cfg = parse_config(apply_overrides(saved, overrides or []))
            _check_resume_overrides(saved, cfg)
    elif cfg is None:
        raise ConfigError("give a config, or a run directory to resume")
    elif overrides:
        cfg = parse_config(apply_overrides(cfg.to_dict(), overrides))
    group = Group.from_environment()
    _check_group(cfg, group)
    try:
        check_log_config(cfg.train.log)
    except ValueError as e:
        raise ConfigError(str(e)) from None

    device = resolve_device(cfg.device, group.local_rank)
    seed_everything(cfg.seed, cfg.deterministic)
    objective = make_objective(cfg, device, load_data(cfg), load_model=load)
    spec = model_spec(cfg, objective)
    model = build_from_spec(spec).to(device)
    try:
        objective.check_model(model)
    except ValueError as e:
        raise ConfigError(f"model: {e}") from None
    identity = {
        "spec": spec,
        "objective": cfg.objective.name,
        "fingerprint": objective.fingerprint(),
    }
    group.join(device)

    if directory is None:
        created = RunDirectory.create(cfg.output_dir, cfg.name) if group.is_main else None
        directory = RunDirectory(group.broadcast(None if created is None else str(created.path)))
    # rank 0 holds the directory's lock for all ranks; training, evaluation and figures
    # compute with train.threads CPU threads (the process's count is restored afterwards)
    with directory.lock() if group.is_main else nullcontext(), torch_threads(cfg.train.threads):
        try:
            loggers = make_loggers(cfg.train.log, directory.path) if group.is_main else []
        except ValueError as e:
            raise ConfigError(str(e)) from None
        trainer = Trainer(cfg, objective, model, directory, identity, group, loggers)
        if resume is not None:
            _check_belongs(directory.checkpoint_path(LAST), identity, accept_unidentified)
            trainer.restore(directory.checkpoint_path(LAST))
            step = trainer.progress.step
            if group.is_main:
                directory.remove_temporary_files()
                directory.truncate_metrics(step)
                if cfg.to_dict() != directory.read_config():
                    directory.write_config(cfg.to_dict())
                    directory.append_metrics(
                        {"step": step, "event": "resume", "overrides": list(overrides or [])}
                    )
                if trainer.compile.used and not trainer.compile_resumed:
                    trainer.note_compile()  # decided now: a checkpoint recording none, or true
                print(f"resuming {directory.path} at step {step}", file=sys.stderr)
        else:
            if group.is_main:
                directory.write_config(cfg.to_dict())
                if progress:
                    print(start_line(cfg, objective, model, directory.path), file=sys.stderr)
            trainer.start()
        if group.active:
            trainer.wrap_data_parallel()
        try:
            with stop_signals() as stop:
                trainer.fit(progress, stop)
        finally:
            for logger in loggers:
                logger.close()
        scores = _summarise(trainer, directory) if group.is_main else None
        if plots and group.is_main:
            draw_run_figures(cfg, objective, model, directory)
    scores = group.broadcast(scores)
    bad = [k for k, v in scores.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise TrainingDiverged(
            f"{directory.path}: the trained model's {', '.join(bad)} is not finite "
            f"(see {SUMMARY}); its checkpoints are kept"
        )
    return RunResult(directory.path, directory.read_summary() or {})


def start_line(cfg: RunConfig, objective: Any, model: Any, path: Path) -> str:
    """What a new run is about to do, in one line: model and size, rows per split, length
    (steps, and the time budget when one is set), where it writes."""
    params = sum(p.numel() for p in model.parameters())
    what = f"training {cfg.model.name} ({params:,} parameters, {cfg.objective.name})"
    data = getattr(objective, "data", None)
    if data is not None:
        rows = "/".join(f"{getattr(data, k).shape[0]:,}" for k in ("train", "val", "test"))
        what += f" on {cfg.data.name}: {rows} rows (train/val/test)"
    length = f"up to {cfg.train.steps:,} steps"
    if cfg.train.max_seconds:
        length += f" or {cfg.train.max_seconds:g} s"
    if cfg.train.patience:
        length += f", early stop after {cfg.train.patience} evaluations without improvement"
    return f"{what}, {length}; writing {path}/"


def _check_started(path: Path) -> None:
    """A run killed before it wrote ``config.yaml`` holds only its lock file (taken first):
    named as a run with nothing to resume, not as a foreign directory."""
    run = RunDirectory(path)
    if path.is_dir() and run.lock_file.exists() and not run.config_file.exists():
        raise CheckpointError(
            f"nothing to resume: {path} stopped before it wrote its {CONFIG}; start the run again"
        )


#: keys a resume cannot change, and why: the run keeps its folder and its random state
FIXED_ON_RESUME = {
    "name": "the run keeps its directory",
    "output_dir": "the run keeps its directory",
    "seed": f"the random state is restored from {LAST}",
}


def _check_resume_overrides(saved: dict[str, Any], cfg: RunConfig) -> None:
    """Refuses a resume-time override that would be silently ignored (:data:`FIXED_ON_RESUME`);
    the model, objective and data are checked against the checkpoint's identity later."""
    for key, why in FIXED_ON_RESUME.items():
        if key in saved and getattr(cfg, key) != saved[key]:
            raise ConfigError(
                f"--set {key}: cannot change on --resume ({why}); start a new run with it"
            )


def _check_group(cfg: RunConfig, group: Group) -> None:
    if cfg.train.batch_size % group.world_size:
        raise ConfigError(
            f"train.batch_size: {cfg.train.batch_size} examples cannot be split evenly over "
            f"{group.world_size} processes"
        )
    if group.active and cfg.device.startswith("cuda:"):
        raise ConfigError(
            f"device: under torchrun give 'cuda' (each process takes GPU LOCAL_RANK), "
            f"not {cfg.device!r}"
        )
    from flowforge.objectives import OBJECTIVES

    if group.active and not OBJECTIVES[cfg.objective.name].data_parallel:
        raise ConfigError(
            f"objective {cfg.objective.name!r} trains in one process: run it without torchrun"
        )


def _check_belongs(path: Path, identity: dict[str, Any], accept_unidentified: bool) -> None:
    """Refuses a checkpoint of another model, objective or data set (e.g. a ``last.pt``
    copied from another run), and one without these identity keys (one of another run with
    them removed, or from before they were stored) unless ``accept_unidentified``: its fit
    is then judged by its tensors alone."""
    payload = load_checkpoint(path)
    missing = [key for key in ("spec", "objective", "fingerprint") if key not in payload]
    if missing and not accept_unidentified:
        raise CheckpointError(
            f"{path}: does not record its {', '.join(missing)}, so nothing shows it belongs "
            f"to this run; resume with --accept-unidentified if you know it does"
        )
    for key in ("spec", "objective", "fingerprint"):
        if key in payload and payload[key] != identity[key]:
            what = _difference(payload[key], identity[key])
            raise CheckpointError(
                f"{path}: its {key} differs from this run's ({what}); it belongs to another run"
            )


def _difference(a: Any, b: Any) -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        return f"{', '.join(map(str, keys))} changed"
    return f"{a!r} vs {b!r}"


def _summarise(trainer: Trainer, directory: RunDirectory) -> dict[str, Any]:
    """Loads ``best.pt`` into the model and writes the summary: the run's facts and the
    objective's test numbers (the same numbers ``flowforge eval`` prints); returns those."""
    cfg, model, objective = trainer.cfg, trainer.model, trainer.objective
    best = directory.checkpoint_path(BEST)
    if best.exists():
        load_model_state(best, model, load_checkpoint(best, map_location=trainer.device))
    summary: dict[str, Any] = {
        "name": cfg.name,
        "objective": cfg.objective.name,
        "model": cfg.model.name,
        "data": cfg.data.name if cfg.uses_data else None,
        "steps": trainer.progress.step,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": round(trainer.elapsed(), 2),
        "eval_seconds": round(trainer.progress.eval_elapsed, 2),
        "stopped": trainer.stopped,
        "threads": trainer.threads,
        "compile": trainer.compile.to_dict(),
        f"best_val_{objective.metric}": trainer.progress.best_val,
    }
    names = trainer.identity["spec"].get("names")
    if names:  # file data: its columns by name, and what was done to its rows
        summary.update(features=names["features"], context=names["context"])
        info = objective.data.info
        summary.update({k: info[k] for k in ("dequantized", "dropped_rows") if info.get(k)})
    results = objective.evaluate(model, "test").to_dict()
    directory.write_summary({**summary, **results})
    return results
