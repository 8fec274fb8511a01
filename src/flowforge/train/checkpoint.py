"""Checkpoints written atomically and loaded without executing code.

A checkpoint is a ``torch.save`` of plain tensors and containers, read back with
``torch.load(weights_only=True)``, which refuses any pickle that would run code. It is
written atomically (:func:`flowforge.run_files.atomic_write`), so a crash leaves either the
old or the new file, never a torn one. A model whose
parameters are not all finite is never written, nor read back.

Loading checks the archive's CRC-32 of every member (a flipped bit anywhere in a tensor's bytes
is an error, not a NaN likelihood), then every tensor against what it is loaded into:
:func:`check_model_state` before ``Module.load_state_dict``, :func:`check_optimizer_state`
before ``Optimizer.load_state_dict`` (the fused AdamW kernel trusts the state's sizes and
writes out of bounds when they are too small) and :func:`check_state` for everything else (an
objective's own state, its optimisers included, and the random states), against a template of
what each part is loaded into.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from flowforge.run_files import atomic_write
from flowforge.train.averaging import ParameterAverage

__all__ = [
    "FORMAT",
    "CheckpointError",
    "check_averaged_parameters",
    "check_model_state",
    "check_optimizer_kind",
    "check_optimizer_state",
    "check_state",
    "load_averaged_parameters",
    "load_checkpoint",
    "load_model_state",
    "save_checkpoint",
]

FORMAT = "flowforge-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: the message names the file and the problem."""


def _finite(t: torch.Tensor) -> bool:
    """Whether every element is finite. A NaN or inf makes the sum NaN or inf, so a finite sum
    settles it in one pass (5x faster than ``isfinite``); only an overflowing sum needs the
    element-wise test."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _all_finite(state: dict[str, torch.Tensor]) -> bool:
    return all(_finite(v) for v in state.values() if torch.is_floating_point(v))


class _Sink:
    """A binary file that remembers the first ``OSError`` its ``write`` raised."""

    def __init__(self, f: Any) -> None:
        self.f, self.error = f, None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Atomically writes ``payload`` (must hold a finite ``"model"`` state dict) to ``path``."""
    path = Path(path)
    if not _all_finite(payload["model"]):
        raise CheckpointError(f"refusing to write {path}: the model has NaN or infinite weights")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f: BinaryIO) -> None:
        sink = _Sink(f)
        try:
            torch.save({"format": FORMAT, **payload}, sink)
        except RuntimeError:
            if sink.error is None:
                raise
            # torch's zip writer swallows the file's OSError (a full disk) and fails later
            # with "unexpected pos": raise the real cause, naming the file
            e = sink.error
            raise OSError(e.errno, f"{e.strerror} (writing a checkpoint)", str(path)) from None

    atomic_write(path, write)


def _verify_archive(path: Path) -> None:
    """Refuses a file that is not a complete zip archive, or one whose members fail their
    CRC-32 (``torch.load`` never checks it: a flipped bit would load as a wrong weight)."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint (not a complete archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()  # reads every member, checks its CRC-32
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})"
        ) from None
    if damaged is not None:
        raise CheckpointError(
            f"{path}: corrupt checkpoint: archive member {damaged} fails its CRC-32 check "
            "(damaged on disk or in a copy)"
        )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a flowforge checkpoint without executing code; clear errors for bad files: a
    damaged archive (CRC-32), a foreign file, or a model state that is not all finite."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    _verify_archive(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the file holds objects that would execute code when "
            f"unpickled ({str(e).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(
            f"{path}: not a flowforge checkpoint (format {found!r}, expected {FORMAT!r})"
        )
    _check_saved_weights_finite(path, payload)
    return payload


def _check_saved_weights_finite(path: Path, payload: dict[str, Any]) -> None:
    """The model state (and the average, if kept) must be tensors, all finite: such a file is
    never written, so one that holds NaN is damaged and never "the last good checkpoint"."""
    model = payload.get("model")
    if not isinstance(model, dict):
        raise CheckpointError(f"{path}: holds no model state (a mapping of tensors)")
    for key, value in model.items():
        _check_finite(path, f"model tensor {key!r}", value)
    for i, value in enumerate(payload.get("ema", [])):
        _check_finite(path, f"averaged tensor {i}", value)


def _check_finite(path: Path, what: str, value: Any) -> None:
    """``value`` must be a dense tensor, all finite when floating point."""
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
        raise CheckpointError(f"{path}: {what} is a {type(value).__name__}, not a dense tensor")
    if value.is_floating_point() and not _finite(value):
        raise CheckpointError(f"{path}: {what} holds NaN or infinite values")


def _check_like(path: Path, what: str, value: Any, like: torch.Tensor) -> None:
    """``value`` must be a finite tensor of ``like``'s shape, dtype and device (a ``meta``
    template leaves the device open)."""
    _check_finite(path, what, value)
    if value.shape != like.shape:
        raise CheckpointError(
            f"{path}: {what} has shape {tuple(value.shape)}, expected {tuple(like.shape)}"
        )
    if value.dtype != like.dtype:
        raise CheckpointError(f"{path}: {what} has dtype {value.dtype}, expected {like.dtype}")
    if like.device.type != "meta" and value.device != like.device:
        raise CheckpointError(f"{path}: {what} is on {value.device}, expected {like.device}")


def _few(keys: list[str]) -> str:
    """At most three keys, and how many more."""
    more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
    return ", ".join(repr(k) for k in keys[:3]) + more


def check_model_state(path: Path, model: nn.Module, state: Any) -> None:
    """Refuses ``state`` unless it holds exactly ``model``'s state-dict keys, each a tensor of
    the model's shape and dtype, floating ones all finite. ``load_state_dict`` would cast a
    wrong dtype silently and load NaN as it is."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the model state is a {type(state).__name__}, not a mapping")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: does not fit this model (from another model or config?): "
            f"missing keys [{_few(missing)}], unexpected keys [{_few(unexpected)}]"
        )
    for key, like in expected.items():
        _check_like(path, f"model tensor {key!r}", state[key], like)


def load_model_state(path: Path, model: nn.Module, payload: dict[str, Any]) -> None:
    """Loads ``payload["model"]`` into ``model`` after :func:`check_model_state`."""
    check_model_state(path, model, payload.get("model"))
    model.load_state_dict(payload["model"])


def _check_number(path: Path, what: str, value: Any) -> None:
    """``value`` must be a finite number, or a tuple/list of them, or a finite tensor."""
    if isinstance(value, torch.Tensor):
        _check_finite(path, what, value)
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _check_number(path, f"{what}[{i}]", v)
    elif isinstance(value, (int, float)) and not math.isfinite(value):
        raise CheckpointError(f"{path}: {what} is {value}, not a finite number")


def _saved_sections(
    path: Path, what: str, state: Any
) -> tuple[list[dict[str, Any]], dict[Any, Any]]:
    """The ``param_groups`` and per-parameter ``state`` of a saved optimiser state dict."""
    groups = state.get("param_groups") if isinstance(state, dict) else None
    per_param = state.get("state") if isinstance(state, dict) else None
    if not (isinstance(groups, list) and all(isinstance(g, dict) for g in groups)):
        raise CheckpointError(f"{path}: the {what} state has no list of parameter groups")
    if not isinstance(per_param, dict):
        raise CheckpointError(f"{path}: the {what} state has no per-parameter state")
    return groups, per_param


def _required_state(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> tuple[str, ...]:
    """The per-parameter entries the optimiser's step reads once a parameter has state."""
    if isinstance(optimizer, torch.optim.Adam):  # AdamW too
        amsgrad = ("max_exp_avg_sq",) if group.get("amsgrad") else ()
        return ("step", "exp_avg", "exp_avg_sq") + amsgrad
    if isinstance(optimizer, torch.optim.RMSprop):
        momentum = ("momentum_buffer",) if group.get("momentum") else ()
        return ("step", "square_avg") + momentum + (("grad_avg",) if group.get("centered") else ())
    return ()


def _match_groups(
    path: Path, what: str, optimizer: torch.optim.Optimizer, groups: list[dict[str, Any]]
) -> dict[int, tuple[torch.Tensor, tuple[str, ...]]]:
    """Saved parameter id -> (this optimiser's parameter, required entries), paired in order
    as ``Optimizer.load_state_dict`` pairs them; counts and hyperparameters checked."""
    if len(groups) != len(optimizer.param_groups):
        raise CheckpointError(
            f"{path}: the {what} state has {len(groups)} parameter groups, "
            f"this {what} {len(optimizer.param_groups)}"
        )
    matched = {}
    for i, (saved, group) in enumerate(zip(groups, optimizer.param_groups, strict=True)):
        ids = saved.get("params")
        if not (isinstance(ids, list) and all(type(k) is int for k in ids)):
            raise CheckpointError(f"{path}: {what} parameter group {i} has no list of ids")
        if len(ids) != len(group["params"]):
            raise CheckpointError(
                f"{path}: {what} parameter group {i} holds {len(ids)} parameters, "
                f"this {what}'s {len(group['params'])}"
            )
        for key, value in saved.items():
            if key != "params":
                _check_number(path, f"{what} parameter group {i} {key!r}", value)
        required = _required_state(optimizer, saved)
        matched.update((k, (p, required)) for k, p in zip(ids, group["params"], strict=True))
    return matched


def _check_step(path: Path, what: str, value: Any) -> None:
    """An optimiser step count: a finite, non-negative scalar (number or 0-d tensor)."""
    if isinstance(value, torch.Tensor) and value.dim() != 0:
        raise CheckpointError(f"{path}: {what} has shape {tuple(value.shape)}, not a scalar")
    if not isinstance(value, (torch.Tensor, int, float)) or isinstance(value, bool):
        raise CheckpointError(f"{path}: {what} is a {type(value).__name__}, not a number")
    if not (math.isfinite(float(value)) and float(value) >= 0):
        raise CheckpointError(f"{path}: {what} is {float(value)}, not a finite count >= 0")


def _check_parameter_state(
    path: Path, what: str, entry: Any, param: torch.Tensor, required: tuple[str, ...]
) -> None:
    """One parameter's optimiser state: the required entries, each tensor shaped, typed and
    laid out as the parameter (the fused kernels index it with the parameter's layout)."""
    if not isinstance(entry, dict):
        raise CheckpointError(f"{path}: {what} is a {type(entry).__name__}, not a mapping")
    missing = [k for k in required if k not in entry]
    if entry and missing:
        raise CheckpointError(f"{path}: {what} lacks {_few(missing)}")
    for key, value in entry.items():
        if key == "step":
            _check_step(path, f"{what} 'step'", value)
            continue
        _check_like(path, f"{what} {key!r}", value, param)
        same_layout = value.stride() == param.stride()
        if not (same_layout or (value.is_contiguous() and param.is_contiguous())):
            raise CheckpointError(
                f"{path}: {what} {key!r} has strides {value.stride()}, "
                f"expected {param.stride()} (the parameter's layout)"
            )


def check_optimizer_kind(path: Path, optimizer: str, payload: dict[str, Any]) -> None:
    """Refuses to resume with another ``train.optimizer`` than the one that wrote the
    checkpoint (its saved config's; checkpoints from before the key existed are AdamW's):
    one optimiser's moments mean nothing to another."""
    config = payload.get("config")
    train = config.get("train") if isinstance(config, dict) else None
    saved = train.get("optimizer", "adamw") if isinstance(train, dict) else "adamw"
    if saved != optimizer:
        raise CheckpointError(
            f"{path}: written with train.optimizer {saved!r}, this run uses {optimizer!r}; "
            f"resume with --set train.optimizer={saved}, or start a new run"
        )


def check_optimizer_state(
    path: Path, optimizer: torch.optim.Optimizer, state: Any, what: str = "optimiser"
) -> None:
    """Refuses a saved optimiser state that does not fit ``optimizer``, before
    ``optimizer.load_state_dict(state)``: the number of parameter groups and of parameters in
    each, finite hyperparameters, and for every parameter with state its tensors (Adam's
    ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``) of the parameter's shape, dtype and
    layout, all finite, and ``step`` a finite scalar (RMSprop's ``square_avg``,
    ``momentum_buffer`` and ``grad_avg`` likewise). The fused AdamW kernel trusts these
    sizes: a smaller ``exp_avg`` makes it write out of bounds (heap corruption, SIGSEGV).
    ``what`` names the optimiser in messages (an objective's own: see :func:`check_state`)."""
    groups, per_param = _saved_sections(path, what, state)
    matched = _match_groups(path, what, optimizer, groups)
    for key, entry in per_param.items():
        if key not in matched:
            raise CheckpointError(
                f"{path}: {what} state for parameter id {key!r}, which no group holds"
            )
        param, required = matched[key]
        _check_parameter_state(path, f"{what} state of parameter {key}", entry, param, required)


def check_averaged_parameters(path: Path, model: nn.Module, tensors: Any) -> None:
    """A saved moving average (``payload["ema"]``): one finite tensor per parameter of
    ``model``, of its shape and dtype, before ``ParameterAverage.load``."""
    params = list(model.parameters())
    if not isinstance(tensors, list) or len(tensors) != len(params):
        count = len(tensors) if isinstance(tensors, list) else type(tensors).__name__
        raise CheckpointError(f"{path}: {count} averaged tensors for {len(params)} parameters")
    for i, (t, p) in enumerate(zip(tensors, params, strict=True)):
        _check_like(path, f"averaged tensor {i}", t, p)


def check_state(path: Path, what: str, saved: Any, template: Any) -> None:
    """Refuses a saved state tree that does not fit ``template``, what it will be loaded into,
    before any of it is used; one check for every state a checkpoint carries beside the model
    (an objective's :meth:`~flowforge.objectives.Objective.state_template`, the random
    states). Node by node, ``template`` is

    - an optimiser: the saved node is its state dict, checked by
      :func:`check_optimizer_state` against the optimiser's parameter groups;
    - a tensor: the saved node a tensor of its shape, dtype and device, finite when floating;
    - a mapping: the saved node a mapping whose keys the template has (a key it lacks is a
      part not yet created, such as chains before the first step, and is left as it is);
    - a list or tuple: the saved node one of as many entries;
    - a number, string, bool or ``None``: the saved node of its type, finite when a float.

    ``what`` names the tree in messages (``objective state 'chains'``)."""
    if isinstance(template, torch.optim.Optimizer):
        check_optimizer_state(path, template, saved, f"{what}: optimiser")
    elif isinstance(template, torch.Tensor):
        _check_like(path, what, saved, template)
    elif isinstance(template, dict):
        if not isinstance(saved, dict):
            raise CheckpointError(f"{path}: {what} is a {type(saved).__name__}, not a mapping")
        unexpected = [k for k in saved if k not in template]
        if unexpected:
            expected = f"[{_few([str(k) for k in template])}]" if template else "none"
            raise CheckpointError(
                f"{path}: {what} holds unexpected keys [{_few([str(k) for k in unexpected])}] "
                f"(expected {expected})"
            )
        for key, value in saved.items():
            check_state(path, f"{what} {key!r}", value, template[key])
    elif isinstance(template, (list, tuple)):
        if not isinstance(saved, (list, tuple)) or len(saved) != len(template):
            count = len(saved) if isinstance(saved, (list, tuple)) else type(saved).__name__
            raise CheckpointError(f"{path}: {what} holds {count} entries, expected {len(template)}")
        for i, (value, like) in enumerate(zip(saved, template, strict=True)):
            check_state(path, f"{what}[{i}]", value, like)
    elif type(saved) is not type(template):
        raise CheckpointError(
            f"{path}: {what} is a {type(saved).__name__}, expected a {type(template).__name__}"
        )
    elif isinstance(saved, float) and not math.isfinite(saved):
        raise CheckpointError(f"{path}: {what} is {saved}, not a finite number")


def load_averaged_parameters(path: Path, model: nn.Module, payload: dict[str, Any]) -> bool:
    """Puts a training checkpoint's moving average of the parameters (``train.ema``, saved
    under ``"ema"``) into ``model``'s parameters, after :func:`load_model_state` has loaded
    the rest of its state. Returns False, leaving the model as it is, when the checkpoint
    holds no average; a wrong count, shape or dtype is a :class:`CheckpointError`."""
    if "ema" not in payload:
        return False
    check_averaged_parameters(path, model, payload["ema"])
    average = ParameterAverage(model, 0.0)
    average.load(payload["ema"])
    average.copy_to_module()
    return True
