"""From a config to the objects of a run: device, data, objective, model.

The model is built from a **spec**, the part of a checkpoint that rebuilds it without the
data::

    {"name": "glow", "options": {...}, "event_shape": [1, 28, 28],
     "context_features": 10, "context_classes": 10}

Every error here is a :class:`~flowforge.config.ConfigError` raised before a run directory
is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from flowforge.config import ConfigError, RunConfig
from flowforge.data.registry import Splits, load_dataset
from flowforge.models import build_model
from flowforge.objectives import OBJECTIVES, Objective, ObjectiveError, Setting

__all__ = [
    "SpecTooLarge",
    "build_from_spec",
    "build_within",
    "check_spec",
    "load_data",
    "make_objective",
    "model_spec",
    "resolve_device",
]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` picks CUDA when available; an unavailable device is a config error. A plain
    ``"cuda"`` is GPU ``local_rank`` (the process's GPU under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} requested but CUDA is not available here")
        try:
            index = local_rank if name == "cuda" else int(name.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"device: should be 'cuda' or 'cuda:N', got {name!r}") from None
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device: {name!r}, but there are {torch.cuda.device_count()} GPUs")
        return torch.device("cuda", index)
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' requested but MPS is not available here")
    return torch.device(name)


def load_data(cfg: RunConfig) -> Splits | None:
    """The configured data set, or ``None`` for objectives that read no data."""
    if not cfg.uses_data:
        return None
    d = cfg.data
    seed = cfg.seed if d.seed is None else d.seed
    try:
        splits = load_dataset(d.name, d.n_train, d.n_val, d.n_test, seed, **d.options)
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"data: {e}") from None
    for split in ("train", "val", "test"):
        if getattr(splits, split).shape[0] < 1:
            raise ConfigError(f"data: the {split} split of {d.name!r} is empty")
    return splits


def make_objective(
    cfg: RunConfig,
    device: torch.device,
    data: Splits | None,
    load_model: Any = None,
) -> Objective:
    """The configured objective over ``data``; ``load_model(run_dir)`` opens other runs."""
    setting = Setting(
        seed=cfg.seed,
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        device=device,
        data=data,
        load_model=load_model,
        steps=cfg.train.steps,
    )
    try:
        return OBJECTIVES[cfg.objective.name](setting, **cfg.objective.options)
    except (ObjectiveError, FileNotFoundError) as e:
        raise ConfigError(f"objective: {e}") from None


def model_spec(cfg: RunConfig, objective: Objective) -> dict[str, Any]:
    """What rebuilds the configured model without the data (see the module docstring)."""
    return {
        "name": cfg.model.name,
        "options": dict(cfg.model.options),
        "context_classes": 0,
        **objective.model_inputs(),
    }


class SpecTooLarge(ConfigError):
    """A model spec whose model would create more tensor bytes than allowed."""


class _OverBudget(Exception):  # noqa: N818 (not a ValueError: recipes' handlers let it pass)
    """Raised inside the build by :class:`_AllocationBudget`."""


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors among a call's arguments (directly or in a list, tuple or mapping)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def _meta(value: Any) -> Any:
    """A tensor as a ``meta`` tensor (its shape and dtype, no memory), also inside a list or
    tuple; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to("meta")
    if isinstance(value, (list, tuple)):
        return type(value)(_meta(v) for v in value)
    return value


def _nbytes(out: Any) -> int:
    return sum(t.numel() * t.element_size() for t in _tensors(out))


def _shape_argument(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[int] | None:
    """The shape a factory call (``empty(2, 3)``, ``zeros((2, 3))``, ``full((2, 3), x)``,
    ``randint(0, 5, (2, 3))``) asks for, or ``None`` where it is not plainly there."""
    size = kwargs.get("size")
    if size is None:
        size = next((a for a in args if isinstance(a, (list, tuple))), None)
    if size is None and args and all(isinstance(a, int) for a in args):
        size = args
    if isinstance(size, (list, tuple)) and all(isinstance(n, int) for n in size):
        return list(size)
    return None


def _factory_bytes(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> int | None:
    """The bytes of the tensor a common factory call makes, read from its arguments
    (cheaper than the meta device, whose first ``randn`` or ``eye`` takes 1-2 s); ``None``
    for other calls."""
    name = getattr(func, "__name__", "")
    dtype = kwargs.get("dtype")
    if name in ("empty", "zeros", "ones", "full", "rand", "randn", "randint", "empty_strided"):
        shape = _shape_argument(args[:1] if name == "empty_strided" else args, kwargs)
        if shape is None:
            return None
        numel = math.prod(shape)
        if dtype is None:
            dtype = torch.int64 if name == "randint" else torch.get_default_dtype()
    elif name == "eye" and args and all(isinstance(a, int) for a in args[:2]):
        numel = args[0] * (args[1] if len(args) > 1 else args[0])
        dtype = dtype or torch.get_default_dtype()
    elif name == "arange" and args and all(isinstance(a, (int, float)) for a in args):
        start, end, step = (0, args[0], 1) if len(args) == 1 else (*args, 1)[:3]
        numel = math.ceil((end - start) / step) if step else 0
        integral = all(isinstance(a, int) for a in args)
        dtype = dtype or (torch.int64 if integral else torch.get_default_dtype())
    else:
        return None
    return max(numel, 0) * dtype.itemsize


#: calls whose result is sized by their integer arguments, not bounded by their tensors'
_SIZED_BY_ARGUMENTS = frozenset(
    "repeat tile repeat_interleave new_empty new_zeros new_ones new_full new_tensor pad "
    "one_hot interpolate resize_ unfold".split()
)


class _AllocationBudget(TorchFunctionMode):
    """Inside the block, tensors made from nothing (``torch.empty``, ``zeros``, ``randn``,
    ``eye``, ...) may add up to ``limit`` bytes, and no result of a call may pass it.

    A call whose result could pass the budget is made first on the ``meta`` device (its
    tensors' shapes and dtypes, no memory, no random numbers drawn), which sizes the result
    before it is allocated: every factory call, every call sized by its integer arguments
    (``repeat``, ``new_zeros``, ...) and every other call whose tensors' element counts, taken
    as a product (an outer product, a matrix product) or a sum (a concatenation), could
    reach it. The rest, and a call the meta device cannot make (one that reads values, such
    as ``item``), are sized after they ran; sizing every call on the meta device would make
    some builds 30 times slower."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit, self.used = limit, 0

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        tensors = _tensors((args, kwargs))
        factory = not tensors
        size = self._meta_size(func, args, kwargs) if self._may_pass(func, tensors) else None
        if size is not None:
            self._check(size, factory)
        out = func(*args, **kwargs)
        if size is None:
            self._check(_nbytes(out), factory)
        return out

    def _may_pass(self, func: Callable[..., Any], tensors: list[torch.Tensor]) -> bool:
        if not tensors or getattr(func, "__name__", "") in _SIZED_BY_ARGUMENTS:
            return True
        counts = [t.numel() for t in tensors]
        product = 1
        for n in counts:
            product = min(product * max(n, 1), self.limit + 1)
        return max(product, sum(counts)) * 16 > self.limit  # 16: the widest element

    def _meta_size(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> int | None:
        """The result's bytes, read from a common factory call's arguments or from the call
        made on the meta device; ``None`` if that fails."""
        planned = _factory_bytes(func, args, kwargs)
        if planned is not None:
            return planned
        meta_args, meta_kwargs = _meta(args), {k: _meta(v) for k, v in kwargs.items()}
        if not _tensors((args, kwargs)):
            meta_kwargs["device"] = "meta"
        try:
            return _nbytes(func(*meta_args, **meta_kwargs))
        except Exception:  # noqa: BLE001 (whatever the meta device cannot do: sized after)
            return None

    def _check(self, size: int, factory: bool) -> None:
        if size > self.limit:
            raise _OverBudget(f"a tensor of {size:,} bytes")
        if factory:
            self.used += size
            if self.used > self.limit:
                raise _OverBudget(f"{self.used:,} bytes of new tensors")


def build_within(spec: dict[str, Any], limit: int) -> nn.Module:
    """:func:`build_from_spec` creating at most ``limit`` bytes of tensors (see
    :class:`_AllocationBudget`); more is a :class:`SpecTooLarge` raised before the tensor
    that would pass it is allocated. What bounds a model rebuilt from a checkpoint's spec by
    the weights the checkpoint stores: a spec asking for a 40000 x 40000 layer beside a few
    kilobytes of weights allocates nothing of it."""
    try:
        with _AllocationBudget(limit):
            return build_from_spec(spec)
    except _OverBudget as e:
        raise SpecTooLarge(
            f"model: the spec of {spec.get('name')!r} asks for more than {limit:,} bytes of "
            f"tensors (it reached {e})"
        ) from None


def check_spec(spec: Any) -> None:
    """Refuses a spec that is not the mapping of the module docstring: a model name, a
    mapping of options, an event shape of positive ints, a count of context features."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError(f"model spec is a {type(spec).__name__} without a model name")
    shape, context = spec.get("event_shape"), spec.get("context_features", 0)
    if not isinstance(spec.get("options"), dict):
        raise ConfigError(f"model spec of {spec['name']!r}: its options are not a mapping")
    if not (isinstance(shape, list) and shape and all(_count(n) and n > 0 for n in shape)):
        raise ConfigError(f"model spec of {spec['name']!r}: event_shape {shape!r}")
    if not _count(context):
        raise ConfigError(f"model spec of {spec['name']!r}: context_features {context!r}")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def build_from_spec(spec: dict[str, Any]) -> nn.Module:
    """The model a spec describes, with freshly initialised parameters."""
    check_spec(spec)
    try:
        return build_model(
            spec["name"],
            spec["options"],
            spec["event_shape"],
            spec.get("context_features", 0),
            spec.get("standardize"),
        )
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model: {spec['name']!r} cannot be built: {e}") from None
    except KeyError as e:
        raise ConfigError(f"model spec without {e}") from None
