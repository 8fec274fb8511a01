"""The run config's schema: its sections as dataclasses, each key's type and range checked, the
objective's, data set's and recipe's options checked against their signatures, ``--set``
overrides, and :func:`load_config`, which reads, overrides and validates a config file (the
YAML read with bounded aliases, :mod:`flowforge.config.bounded_yaml`)."""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flowforge.config.bounded_yaml import load_yaml, read_yaml
from flowforge.config.errors import ConfigError, _brief

__all__ = [
    "OPTIMIZERS",
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "RunConfig",
    "TrainConfig",
    "apply_overrides",
    "check_name",
    "load_config",
    "parse_config",
    "registered_names",
]


@dataclass
class DataConfig:
    """``data:`` section. ``options`` are the loader's own keyword arguments."""

    name: str = "parabola"
    n_train: int = 20000
    n_val: int = 5000
    n_test: int = 20000
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveConfig:
    """``objective:`` section: ``mle`` (default), ``elbo``, ``iwae``, ``reverse_kl``,
    ``distill``, or a baseline's ``gan``, ``wgan``, ``wgan_gp``, ``cd``, ``likelihood``
    (:data:`flowforge.objectives.OBJECTIVES`). ``options`` are the objective's keyword
    arguments."""

    name: str = "mle"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    """``model:`` section. ``options`` are the recipe's keyword arguments."""

    name: str = "realnvp"
    options: dict[str, Any] = field(default_factory=lambda: {"couplings": 5, "hidden": [32, 32]})


@dataclass
class TrainConfig:
    """``train:`` section: the optimiser, its schedule and the run's budget.

    Attributes:
        steps: optimisation steps.
        batch_size: examples per step.
        lr: peak learning rate.
        optimizer: ``"adamw"`` (default; AdamW, Loshchilov & Hutter 2019), ``"adam"`` (Kingma &
            Ba 2015) or ``"rmsprop"`` (Tieleman & Hinton 2012, as torch defines it). The GAN
            papers' generator optimisers: RMSProp for WGAN, Adam with ``betas: [0, 0.9]`` for
            WGAN-GP, Adam with ``betas: [0.5, 0.999]`` for DCGAN.
        betas: Adam(W)'s moment decays ``[beta1, beta2]``, each in [0, 1) (unset: torch's
            ``[0.9, 0.999]``); only with ``adam``/``adamw``.
        momentum: RMSprop's momentum in [0, 1) (unset: 0); only with ``rmsprop``.
        alpha: RMSprop's decay of the squared-gradient average in (0, 1) (unset: torch's
            0.99); only with ``rmsprop``.
        weight_decay: weight decay: decoupled for AdamW, an L2 term in the gradient for Adam
            and RMSprop.
        schedule: ``"constant"`` or ``"cosine"`` (to zero at the last step).
        warmup: linear warm-up steps.
        grad_clip: max gradient norm (0 disables clipping).
        eval_every: steps between validation evaluations (and checkpoints).
        patience: evaluations without validation improvement before stopping (0: never).
        max_seconds: training wall-clock budget in seconds, summed over resumes (0: none),
            counted from the first step: the start of ``eval_at_start`` (its data-dependent
            initialisation and validation; the ``elapsed`` of the ``start`` record in
            ``metrics.jsonl``) is not training. When it runs out the run evaluates, saves and
            writes its summary as if at the last step; the learning-rate schedule still
            follows ``steps``.
        ema: decay of an exponential moving average of the parameters (Polyak averaging, as
            Glow and Residual Flows evaluate; 0: off; 0.999 is usual). Evaluation, ``best.pt``
            and the summary use the averaged parameters, training goes on from the raw ones.
            The decay ramps up as ``min(ema, n / (n + 10))`` after ``n`` steps.
        eval_batch_size: batch size of evaluation passes.
        max_bad_steps: consecutive non-finite losses or gradients before rolling back.
        max_rollbacks: rollbacks (each halving the learning rate) before giving up.
        log: experiment logs beside ``metrics.jsonl``, by logger name (``{tensorboard: true}``;
            see :mod:`flowforge.train.loggers`).
        compile: ``"auto"`` (default), ``true`` or ``false``: run the training step's loss
            terms (a flow's ``log_prob``) through ``torch.compile`` (static shapes), which fuses
            the many small element-wise ops of each layer; the first step compiles, for tens
            of seconds on a CPU. ``auto`` compiles when the run is long enough to repay that
            (per model family, measured: :mod:`flowforge.train.compiling`; the default
            config's 3,000 steps are not) and never where compiling cannot apply (an objective
            with steps of its own, a model with data-dependent control flow, a machine without
            a compiler). The summary, the metrics start record and the checkpoints record the
            decision (``compile: {mode, used, why}``), and a resumed ``auto`` run keeps it. A
            compilation that fails prints one line and the run trains eagerly. Evaluation and
            sampling stay eager.
        threads: CPU threads of the run's training, evaluation and figures (0: automatic:
            half the CPUs available, at least 1; the process's own count when
            ``OMP_NUM_THREADS`` is set; see :mod:`flowforge.train.threads`). The summary
            records the count used.
        eval_at_start: before the first step, start the model's data-dependent parts on the
            first batch (actnorm) and on whole splits (a mixture base, chosen on validation:
            the objective's ``start``) and validate it, so ``best.pt`` holds the
            starting model until training beats it on validation (the ``--data`` short form,
            whose flows start as a Gaussian or mixture baseline, sets it).
    """

    steps: int = 3000
    batch_size: int = 512
    lr: float = 1e-3
    optimizer: str = "adamw"
    betas: list[float] | None = None
    momentum: float | None = None
    alpha: float | None = None
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: int = 0
    grad_clip: float = 5.0
    eval_every: int = 250
    patience: int = 0
    max_seconds: float = 0.0
    ema: float = 0.0
    eval_batch_size: int = 4096
    max_bad_steps: int = 10
    max_rollbacks: int = 3
    compile: bool | str = "auto"
    threads: int = 0
    eval_at_start: bool = False
    log: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """A whole run. The default is the classic RealNVP toy experiment on the parabola."""

    name: str = "realnvp-parabola"
    seed: int = 0
    device: str = "cpu"
    output_dir: str = "runs"
    deterministic: bool = False
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def uses_data(self) -> bool:
        """Whether the objective reads a data set (the ``data`` section)."""
        from flowforge.objectives import OBJECTIVES

        return OBJECTIVES[self.objective.name].uses_data

    def to_dict(self) -> dict[str, Any]:
        """The config as the YAML layout (options flattened into their sections); it parses
        back to an equal config."""
        d = dataclasses.asdict(self)
        for section in ("objective", "data", "model"):
            options = d[section].pop("options")
            d[section].update(options)
        if d["data"]["seed"] is None:
            del d["data"]["seed"]
        if not self.uses_data:
            del d["data"]
        return d


_POSITIVE = {
    "data.n_train",
    "data.n_val",
    "data.n_test",
    "train.steps",
    "train.batch_size",
    "train.lr",
    "train.eval_every",
    "train.eval_batch_size",
    "train.max_bad_steps",
}
_NON_NEGATIVE = {
    "train.weight_decay",
    "train.warmup",
    "train.grad_clip",
    "train.patience",
    "train.max_seconds",
    "train.max_rollbacks",
    "train.threads",
}
#: bounds that keep a typo (1e12) from exhausting memory or promising a run that never ends
MAX_ROWS, MAX_STEPS, MAX_THREADS = 10**9, 10**9, 1024
#: the optimisers of ``train.optimizer`` (built by :func:`flowforge.train.trainer.make_optimizer`)
OPTIMIZERS = ("adamw", "adam", "rmsprop")
_CHOICES = {"train.schedule": ("constant", "cosine"), "train.optimizer": OPTIMIZERS}
#: ``train`` keys that belong to some optimisers only, by key
_OPTIMIZER_KEYS = {"betas": ("adam", "adamw"), "momentum": ("rmsprop",), "alpha": ("rmsprop",)}


def _type_ok(value: Any, annotation: Any) -> bool:
    """Whether ``value`` fits a simple annotation (int, float, str, bool, dict, sequences)."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool}.get(annotation, Any)
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or getattr(origin, "__name__", "") == "Sequence":
        args = typing.get_args(annotation)
        return (
            isinstance(value, (list, tuple)) and all(_type_ok(v, args[0]) for v in value)
            if args
            else isinstance(value, (list, tuple))
        )
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True


def _coerce(value: Any, annotation: Any) -> Any:
    """YAML 1.1 reads ``3e-4`` as a string: accept numeric strings where a float is expected."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = typing.get_args(annotation) if union else (annotation,)  # float | None too
    if isinstance(value, str) and any(a in (float, "float") for a in members):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _describe(annotation: Any) -> str:
    if typing.get_origin(annotation) is not None:
        return str(annotation).replace("typing.", "").replace("collections.abc.", "")
    return getattr(annotation, "__name__", str(annotation))


def _fill(cls: type, raw: Any, where: str) -> Any:
    """Builds dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: should be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.name != "options"}
    has_options = "options" in hints
    kwargs: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key in fields:
            if dataclasses.is_dataclass(hints[key]):
                kwargs[key] = _fill(hints[key], value if value is not None else {}, path)
                continue
            value = _coerce(value, hints[key])
            if not _type_ok(value, hints[key]):
                raise ConfigError(f"{path}: should be {_describe(hints[key])}, got {_brief(value)}")
            kwargs[key] = float(value) if hints[key] is float else value
        elif has_options:
            options[key] = value
        else:
            raise ConfigError(f"{path}: unknown key; allowed keys: {sorted(fields)}")
    obj = cls(**kwargs)
    if has_options:
        obj.options = {**(obj.options if "name" not in raw else {}), **options}
    return obj


def _check_values(cfg: RunConfig, check_data: bool = True) -> None:
    for path in _POSITIVE | _NON_NEGATIVE | set(_CHOICES):
        section, key = path.split(".")
        value = getattr(getattr(cfg, section), key)
        if path in _POSITIVE and not value > 0:
            raise ConfigError(f"{path}: should be positive, got {value}")
        if path in _NON_NEGATIVE and value < 0:
            raise ConfigError(f"{path}: should be >= 0, got {value}")
        if path in _CHOICES and value not in _CHOICES[path]:
            raise ConfigError(
                f"{path}: should be one of {list(_CHOICES[path])}, got {_brief(value)}"
            )
    for path, seed in (("seed", cfg.seed), ("data.seed", cfg.data.seed)):
        if seed is not None and not 0 <= seed < 2**32:
            raise ConfigError(f"{path}: should be in [0, 2**32), got {seed}")
    if isinstance(cfg.train.compile, str) and cfg.train.compile != "auto":
        raise ConfigError(
            f"train.compile: should be auto, true or false, got {_brief(cfg.train.compile)}"
        )
    if not 0.0 <= cfg.train.ema < 1.0:
        raise ConfigError(f"train.ema: should be in [0, 1), got {cfg.train.ema}")
    _check_optimizer(cfg.train)
    check_name(cfg.name)
    rows = cfg.data.n_train + cfg.data.n_val + cfg.data.n_test
    if rows > MAX_ROWS:
        raise ConfigError(
            f"data: n_train + n_val + n_test = {rows:.3g} rows; at most {MAX_ROWS:.0e} (a data "
            f"set is held in memory)"
        )
    if cfg.train.steps > MAX_STEPS:
        raise ConfigError(f"train.steps: at most {MAX_STEPS:.0e}, got {cfg.train.steps:.3g}")
    if cfg.train.threads > MAX_THREADS:
        raise ConfigError(f"train.threads: at most {MAX_THREADS}, got {cfg.train.threads:.3g}")
    for key in ("lr", "weight_decay", "grad_clip", "max_seconds", "ema"):
        if not math.isfinite(getattr(cfg.train, key)):
            raise ConfigError(f"train.{key}: should be finite, got {getattr(cfg.train, key)}")
    if not (cfg.device in ("cpu", "auto") or cfg.device.startswith(("cuda", "mps"))):
        raise ConfigError(
            f"device: should be 'cpu', 'auto', 'cuda[:N]' or 'mps', got {_brief(cfg.device)}"
        )
    _check_options("objective", cfg.objective.name, cfg.objective.options)
    if check_data:
        _check_options("data", cfg.data.name, cfg.data.options)
    _check_options("model", cfg.model.name, cfg.model.options)


def check_name(name: Any, where: str = "name") -> None:
    """Refuses a run's or a comparison's name that is not one plain directory name: one that
    is empty, holds a path separator or NUL, starts with ``.`` (``..``, hidden), or is longer
    than 200 bytes; so ``output_dir/name`` always lies inside ``output_dir``."""
    bad = not isinstance(name, str) or not name or name.startswith(".")
    if bad or any(c in name for c in "/\\\0") or len(name.encode("utf-8", "replace")) > 200:
        raise ConfigError(
            f"{where}: should be a plain directory name (no '/', NUL or leading '.', at most 200 "
            f"bytes), got {_brief(name, 40)}"
        )


def _check_optimizer(train: TrainConfig) -> None:
    """The optimiser's own keys: set only for an optimiser that has them, and in range."""
    for key, optimizers in _OPTIMIZER_KEYS.items():
        if getattr(train, key) is not None and train.optimizer not in optimizers:
            raise ConfigError(
                f"train.{key}: only for train.optimizer {' or '.join(optimizers)}, "
                f"not {train.optimizer!r}"
            )
    betas = train.betas
    if betas is not None and not (len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas)):
        raise ConfigError(f"train.betas: should be [beta1, beta2], each in [0, 1), got {betas}")
    if train.momentum is not None and not 0.0 <= train.momentum < 1.0:
        raise ConfigError(f"train.momentum: should be in [0, 1), got {train.momentum}")
    if train.alpha is not None and not 0.0 < train.alpha < 1.0:
        raise ConfigError(f"train.alpha: should be in (0, 1), got {train.alpha}")


def registered_names() -> dict[str, list[str]]:
    """The names a config may give, by kind (``flowforge list``): ``objectives`` (in
    registration order), ``models`` and ``data sets`` (sorted), and the ``targets`` of
    ``reverse_kl`` (in registration order)."""
    from flowforge.data.registry import DATASETS
    from flowforge.models import MODELS
    from flowforge.objectives import OBJECTIVES
    from flowforge.targets import TARGETS

    return {
        "objectives": list(OBJECTIVES),
        "models": sorted(MODELS),
        "data sets": sorted(DATASETS),
        "targets": list(TARGETS),
    }


def _check_options(section: str, name: str, options: dict[str, Any]) -> None:
    """Checks ``options`` against the registered objective's, loader's or recipe's
    signature."""
    from flowforge.data.registry import DATASETS, dataset_options
    from flowforge.models import MODELS
    from flowforge.objectives import OBJECTIVES, objective_options

    registry: dict[str, Any] = {"data": DATASETS, "model": MODELS, "objective": OBJECTIVES}[section]
    if name not in registry:
        what = {"data": "data set", "model": "model", "objective": "objective"}[section]
        raise ConfigError(
            f"{section}.name: unknown {what} {_brief(name)}; choose one of {sorted(registry)}"
        )
    fn = registry[name]
    if section == "data":
        params = dataset_options(name)
    elif section == "objective":
        params = objective_options(name)
        fn = fn.__init__
    else:  # the first argument (features or shape) and the context size come from the data
        params = dict(list(inspect.signature(fn).parameters.items())[1:])
        params.pop("context_features", None)
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    for key, value in options.items():
        if key not in params:
            raise ConfigError(
                f"{section}.{key}: unknown option for {section} {name!r}; allowed: {sorted(params)}"
            )
        annotation = hints.get(key, params[key].annotation)
        options[key] = value = _coerce(value, annotation)
        if not _type_ok(value, annotation):
            raise ConfigError(
                f"{section}.{key}: should be {_describe(annotation)}, got {_brief(value)}"
            )


def parse_config(raw: dict[str, Any] | None, check_data: bool = True) -> RunConfig:
    """Validates a raw mapping (from YAML) into a :class:`RunConfig`. ``check_data=False``
    leaves the data section unchecked: opening a finished run needs no registered data set
    (reading its data later checks it then)."""
    cfg = _fill(RunConfig, raw or {}, "")
    _check_values(cfg, check_data)
    if not cfg.uses_data and "data" in (raw or {}):
        raise ConfigError(
            f"data: objective {cfg.objective.name!r} reads no data set; remove the data section"
        )
    return cfg


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``key.sub=value`` overrides (values parsed as YAML) to a raw config mapping."""
    raw = load_yaml(yaml.safe_dump(raw), "config")  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: should look like key=value, e.g. train.lr=3e-4")
        path, text = item.split("=", 1)
        keys = path.strip().split(".")
        if not all(keys):
            raise ConfigError(f"--set {item!r}: empty key in {path!r}")
        value = load_yaml(text, f"--set {_brief(item)}: value")
        node = raw
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {k!r} is not a section")
        node[keys[-1]] = value
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Reads, overrides and validates a config; ``path=None`` starts from the defaults."""
    raw = {} if path is None else read_yaml(path)
    return parse_config(apply_overrides(raw, overrides or []))
