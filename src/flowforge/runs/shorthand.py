"""The command line's short forms, as the configs they stand for.

- ``flowforge train --data FILE [--model nsf|maf|realnvp] [--context COLS]``: maximum
  likelihood on the user's file (:mod:`flowforge.data.files`) with an 80/10/10 split, the
  recipe of :func:`default_model`, a linear-Gaussian standardisation inside the flow
  (:mod:`flowforge.data.standardization`) and a mixture base
  started from the data, so the flow starts as a Gaussian-mixture baseline and is validated
  before its first step (``train.eval_at_start``); a model sized from the rows and features
  (:mod:`flowforge.models.sizing`); and a training length from the rows: at most 200 epochs
  (between 3,000 and 50,000 steps) or :func:`default_seconds` of wall-clock, whichever comes
  first, stopping early after 30 validations without improvement;
- ``flowforge fit-target TARGET [--model planar]``: a ``reverse_kl`` run;
- ``--device``, ``--compile``, ``--time``, ``--threads``: ``--set`` overrides of the config's
  keys (:func:`option_overrides`).

:func:`data_file_config` and :func:`fit_target_config` return a raw config mapping;
:func:`data_file_run_config` and :func:`fit_target_run_config` the validated config of the
command, its ``--set`` overrides applied, and :func:`train_config` that of ``flowforge train``,
from a config file or the short form. The run writes the resolved config, so what a short
form chose is on disk and can be changed with ``--set`` like any key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from flowforge.config import ConfigError, RunConfig, apply_overrides, load_config, parse_config
from flowforge.data.files import usable_shape
from flowforge.models.sizing import SIZED, sized_options

__all__ = [
    "data_file_config",
    "data_file_run_config",
    "fit_target_config",
    "fit_target_run_config",
    "option_overrides",
    "train_config",
]


def option_overrides(
    overrides: list[str] | None = None,
    device: str | None = None,
    compile: str | bool | None = None,
    max_seconds: float | None = None,
    threads: int | None = None,
) -> list[str]:
    """``overrides`` (``--set KEY=VALUE``) followed by those the options of ``flowforge train``
    stand for: ``--device`` (``device``), ``--compile``/``--no-compile`` (``train.compile``:
    ``"true"`` or ``True``, ``"false"``), ``--time``
    (``train.max_seconds``) and ``--threads`` (``train.threads``), each when given."""
    out = list(overrides or [])
    out += [f"device={device}"] if device else []
    compile = "true" if compile is True else compile
    out += [f"train.compile={compile}"] if isinstance(compile, str) else []
    out += [] if max_seconds is None else [f"train.max_seconds={max_seconds}"]
    out += [] if threads is None else [f"train.threads={threads}"]
    return out


def train_config(
    config: str | None = None,
    data: str | None = None,
    overrides: list[str] | None = None,
    model: str | None = None,
    context: list[str] | None = None,
    features: list[str] | None = None,
    drop_na: bool = False,
) -> RunConfig:
    """The config ``flowforge train [CONFIG] [--data FILE [--model M] [--context C1,C2]
    [--features A,B] [--drop-na]] [--set KEY=VALUE ...]`` trains: the YAML file ``config``
    (:func:`~flowforge.config.load_config`; ``None``: the default, RealNVP on the parabola) or
    the short form of ``data`` (:func:`data_file_run_config`), with ``overrides`` applied. The
    short form's options without ``data``, or a config file with it, are a
    :class:`~flowforge.config.ConfigError`."""
    if data is None:
        if model or context or features or drop_na:
            raise ConfigError(
                "--model, --context, --features and --drop-na go with --data FILE (in a "
                "config: model.name, data.context, data.features, data.drop_nonfinite)"
            )
        return load_config(config, overrides)
    if config is not None:
        raise ConfigError("give CONFIG or --data FILE, not both")
    return data_file_run_config(data, overrides, model, context, features, drop_na)


def data_file_config(
    path: str,
    model: str | None = None,
    context: list[str] | None = None,
    features: list[str] | None = None,
    drop_na: bool = False,
    val_path: str | None = None,
    test_path: str | None = None,
) -> dict:
    """The config of ``flowforge train --data PATH --model MODEL [--context C1,C2]
    [--features A,B] [--drop-na]``: the splits are sized from the rows left after dropping
    those with missing values (``drop_na``), the model from the feature columns chosen (by
    default every numeric column not in the context and not a row index; see
    :mod:`flowforge.data.files`). A split with its own file (``val_path``, ``test_path``)
    takes all its usable rows; the main file's are split between the others."""
    if model is not None and model not in SIZED:
        raise ConfigError(
            f"--model: the short form sizes {', '.join(SIZED)}; for {model!r} "
            f"write a config with data.name: file"
        )
    file = Path(path)
    own = {"val": val_path, "test": test_path}
    try:
        rows, n_features = usable_shape(file.resolve(), features, context, drop_na)
        sizes = {
            split: usable_shape(Path(other).resolve(), features, context, drop_na)[0]
            for split, other in own.items()
            if other is not None
        }
    except ValueError as e:
        raise ConfigError(f"--data: {e}") from None
    for split in own:  # the splits held in the main file: a tenth of its rows each
        sizes.setdefault(split, max(2, rows // 10))
    n_val, n_test = sizes["val"], sizes["test"]
    n_train = rows - sum(sizes[s] for s in own if own[s] is None)
    if n_train < 2:
        raise ConfigError(f"--data: {file} has {rows} usable rows; too few")
    batch = min(256, n_train)
    epochs = math.ceil(n_train / batch)
    steps = int(min(50_000, max(3_000, 200 * epochs)))
    data: dict[str, Any] = {
        "name": "file",
        "path": str(file.resolve()),
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "standardize": "linear",
    }
    data.update({f"{s}_path": str(Path(p).resolve()) for s, p in own.items() if p is not None})
    if features:
        data["features"] = list(features)
    if context:
        data["context"] = list(context)
    if drop_na:
        data["drop_nonfinite"] = True
    return {
        "name": file.stem or "file",
        "data": data,
        "model": {
            "name": (model := model or default_model(n_train)),
            **sized_options(model, n_features, n_train),
        },
        "train": {
            "steps": steps,
            "batch_size": batch,
            "lr": 1e-3,
            "eval_every": max(20, steps // 200),
            "patience": 30,
            "max_seconds": default_seconds(n_train),
            "eval_at_start": True,
        },
    }


def data_file_run_config(
    path: str,
    overrides: list[str] | None = None,
    model: str | None = None,
    context: list[str] | None = None,
    features: list[str] | None = None,
    drop_na: bool = False,
) -> RunConfig:
    """The config of ``flowforge train --data PATH [--model M] [--context C1,C2] [--features
    A,B] [--drop-na] [--set KEY=VALUE ...]``: :func:`data_file_config` sized with what the
    overrides say of the data too (``--set data.context=[...]``, ``data.features``,
    ``data.drop_nonfinite``, ``data.val_path``, ``data.test_path``), the overrides applied,
    and the data files' paths absolute (those of ``--set`` included), so the run can be
    resumed or evaluated from anywhere."""
    overrides = list(overrides or [])
    data = apply_overrides({}, overrides).get("data") or {}
    raw = data_file_config(
        path,
        model,
        context or data.get("context"),
        features or data.get("features"),
        drop_na or data.get("drop_nonfinite") is True,
        data.get("val_path"),
        data.get("test_path"),
    )
    raw = apply_overrides(raw, overrides)
    files = raw.get("data") or {}
    for key in ("path", "val_path", "test_path"):
        if isinstance(files.get(key), str):
            files[key] = str(Path(files[key]).resolve())
    return parse_config(raw)


def default_model(n_train: int) -> str:
    """The short form's recipe: ``nsf`` below 20,000 training rows, ``maf`` from there. On the
    panel of ``benchmarks/tabular_panel.py`` the spline flow tied or beat the baselines more
    often on small tables (crabs given species: +0.02 ± 0.03 nats/row against MAF's
    +0.28 ± 0.22; commutes given city: -0.40 ± 0.08 against -0.07 ± 0.03), while on a large
    one MAF's cheaper steps went further in the time budget (diamonds, 300 s: 9,435 steps to
    0.24 ± 0.02 nats/row below the best baseline, against the spline's 2,937 steps to 0.15)."""
    return "nsf" if n_train < 20_000 else "maf"


def default_seconds(n_train: int) -> float:
    """The short form's wall-clock budget: one second per hundred training rows, between one
    and five minutes (runs on small files stop early on validation well before)."""
    return float(min(300, max(60, n_train // 100)))


def fit_target_config(
    target: str,
    model: str,
    model_options: dict[str, Any],
    steps: int,
    batch_size: int,
    lr: float,
    anneal: int,
    seed: int,
) -> dict:
    """The config of ``flowforge fit-target``: reverse KL to ``target`` (``anneal`` steps of
    annealing, 0: off), Adam with a cosine schedule and no clipping, as Rezende and Mohamed."""
    return {
        "name": f"vi-{target}-{model}",
        "seed": seed,
        "objective": {"name": "reverse_kl", "target": target, "anneal": anneal},
        "model": {"name": model, **model_options},
        "train": {
            "steps": steps,
            "batch_size": batch_size,
            "lr": lr,
            "grad_clip": 0,
            "eval_every": max(1, steps // 10),
        },
    }


def fit_target_run_config(
    target: str,
    model: str = "planar",
    settings: list[str] | None = None,
    steps: int = 5000,
    batch_size: int = 256,
    lr: float = 1e-3,
    anneal: int = 0,
    seed: int = 0,
) -> RunConfig:
    """The config of ``flowforge fit-target TARGET [--set KEY=VALUE ...]``
    (:func:`fit_target_config`): a setting ``KEY=VALUE`` without a section is a recipe option,
    ``section.key=VALUE`` any config key."""
    settings = list(settings or [])
    model_options = [s for s in settings if "." not in s.split("=", 1)[0]]
    config_keys = [s for s in settings if s not in model_options]
    options = apply_overrides({}, model_options)
    raw = fit_target_config(target, model, options, steps, batch_size, lr, anneal, seed)
    return parse_config(apply_overrides(raw, config_keys))
