r"""Whether a run compiles its training step (``train.compile``), and the fallback to eager.

``train.compile: true`` runs the objective's training module through
``torch.compile(dynamic=False)``, ``false`` never does, and ``auto`` (the default) compiles
when the run is long enough to repay the compilation. With, for the model's family (measured
by ``benchmarks/compile_pays.py``, :data:`COSTS`), :math:`C` the seconds a first compilation
takes, :math:`s` the fraction of an eager step compiling saves, and :math:`\hat t` the
estimated eager step (:func:`estimated_step_seconds`), a run of ``steps`` steps and a
``max_seconds`` budget (0: none) compiles when

.. math:: s \cdot \min(\text{steps} \cdot \hat t,\ \text{max\_seconds}) > k \cdot C,

the wall-clock it saves more than :data:`PAYBACK` (:math:`k`) times the compilation
(:func:`pays`). A time-budgeted run gains :math:`T s - C` seconds of eager steps against
:math:`T` eager seconds, so the budget alone decides there.

``auto`` never compiles where compiling cannot apply or was not measured (:func:`decide`
says which, in ``why``): an objective with steps of its own outside the training module (a
GAN's critic; ``true`` is refused there), a model family without a measurement (continuous
flows integrate with adaptive, data-dependent step counts; residual flows draw a random number
of series terms), an objective other than the measured ones, a device other than the CPU, and
a machine where ``torch.compile`` is unavailable (:func:`backend_missing`: Dynamo unsupported,
no C++ compiler for inductor, no Triton on a GPU).

The decision (:class:`Decision`: mode, used, why) goes into the run's metrics start record,
every checkpoint and the summary; a resumed ``auto`` run takes the recorded one instead of
deciding again, so it computes as the uninterrupted run would. :class:`CompiledStep` calls the
compiled module and, if compiling fails, prints one line and computes eagerly from then on
(the decision then says so).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "COSTS",
    "MEASURED_OBJECTIVES",
    "PAYBACK",
    "CompiledStep",
    "Cost",
    "Decision",
    "backend_missing",
    "decide",
    "estimated_step_seconds",
    "family",
    "mode_name",
    "pays",
]

#: compile only when the saving exceeds this many times the compilation (the estimates
#: vary about twofold with the machine's load and the model's size)
PAYBACK = 2.0
#: how an eager step's time grows with parameters x batch (:func:`estimated_step_seconds`)
WORK_EXPONENT = 0.5


@dataclass(frozen=True)
class Cost:
    """A model family's measured compile cost (``benchmarks/compile_pays.py``, one thread).

    Attributes:
        compile_seconds: CPU seconds of a first (cold-cache) compilation.
        saving: the fraction of an eager training step that compiling saves.
        step_seconds: the eager step's CPU seconds at ``work`` (parameters x batch).
        work: parameters x batch size of the measured row.
    """

    compile_seconds: float
    saving: float
    step_seconds: float
    work: int


#: measured per family (``model.name``, ``nsf-<kind>`` for the spline flows) by
#: ``python benchmarks/compile_pays.py`` (docs/benchmarks.md), one thread: the slowest
#: compilation and the smallest saving of the family's rows, the eager step of its first row
COSTS: dict[str, Cost] = {
    "realnvp": Cost(36.0, 0.30, 6.6e-3, 5930 * 512),  # 2-D parabola row; 32-D row s = 0.41
    "maf": Cost(21.0, 0.16, 9.7e-3, 63144 * 512),  # gmm8 row; gmm32 row s = 0.16
    "nsf-coupling": Cost(57.0, 0.50, 36e-3, 73964 * 512),
    "nsf-autoregressive": Cost(74.0, 0.49, 48e-3, 146744 * 512),
    "nice": Cost(16.0, 0.16, 10e-3, 133638 * 256),
    "vae": Cost(16.0, 0.015, 11e-3, 688464 * 100),  # its matrix products are the step
    "realnvp_image": Cost(27.0, 0.058, 89e-3, 6036432 * 128),
    # digits row; the MNIST row (77,788 x 32) took 63 ms, the work's estimate 31: conv
    # steps grow with the image too, so longer images are estimated short (compiled later)
    "glow": Cost(108.0, 0.03, 28e-3, 30524 * 64),
}

#: the objectives whose training modules the costs were measured through
MEASURED_OBJECTIVES = ("mle", "elbo", "iwae")

#: families ``auto`` never compiles, and why (others without a cost are "not measured")
NEVER = {
    "ffjord": "an adaptive ODE solver's step count depends on the data",
    "resflow": "the log-determinant's series draws a random number of terms",
    "iresnet": "the log-determinant's series and inverse iterate data-dependently",
}


def mode_name(value: bool | str) -> str:
    """``train.compile`` as a word: ``"auto"``, ``"true"`` or ``"false"``."""
    return value if isinstance(value, str) else ("true" if value else "false")


@dataclass
class Decision:
    """Whether the training step is compiled, under which ``train.compile``, and why."""

    mode: str
    used: bool
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "used": self.used, "why": self.why}

    @classmethod
    def from_dict(cls, raw: Any) -> Decision:
        """A recorded decision; a ``ValueError`` says what is wrong with it."""
        ok = (
            isinstance(raw, dict)
            and raw.get("mode") in ("auto", "true", "false")
            and isinstance(raw.get("used"), bool)
            and isinstance(raw.get("why"), str)
        )
        if not ok:
            raise ValueError(
                f"should be {{mode: auto|true|false, used: bool, why: str}}, got {raw!r:.200}"
            )
        return cls(raw["mode"], raw["used"], raw["why"])


def family(model_name: str, options: dict[str, Any]) -> str:
    """The cost family of a model: its name, and the spline flow's kind (``nsf-coupling``,
    ``nsf-autoregressive``), whose steps differ."""
    if model_name == "nsf":
        return f"nsf-{options.get('kind', 'autoregressive')}"
    return model_name


def estimated_step_seconds(cost: Cost, work: int) -> float:
    """The eager step's seconds for ``work`` (parameters x batch) from the measured row's, as
    :math:`t_0 (w / w_0)^{1/2}`: a step's fixed costs make it grow more slowly than its
    work (measured: RealNVP 2-D to 32-D, 25x the work, 4.6x the time; MAF 8-D to 32-D,
    1.6x the work, 1.2x the time: exponents 0.47 and 0.4)."""
    return cost.step_seconds * (max(work, 1) / cost.work) ** WORK_EXPONENT


def pays(cost: Cost, steps: int, max_seconds: float, step_seconds: float) -> tuple[bool, str]:
    """The rule of the module docstring, and its numbers in words."""
    eager = steps * step_seconds
    length = f"{steps:,} steps x ~{1e3 * step_seconds:.3g} ms"
    if 0 < max_seconds < eager:
        eager, length = max_seconds, f"a budget of {max_seconds:g} s"
    saved, price = cost.saving * eager, PAYBACK * cost.compile_seconds
    verdict = ">" if saved > price else "<="
    why = (
        f"{length} (est.) x {cost.saving:.0%} saved = ~{saved:.3g} s {verdict} "
        f"{PAYBACK:g} x ~{cost.compile_seconds:.3g} s to compile"
    )
    return saved > price, why


def backend_missing(device: torch.device) -> str | None:
    """Why ``torch.compile`` cannot compile for ``device`` here, or ``None``: Dynamo
    unsupported (Python version, platform), no C++ compiler for inductor's CPU code, no
    Triton for a GPU's. Imports Dynamo (about a second), so it is asked last."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python or platform"
    if device.type == "cpu":
        from torch._inductor import cpp_builder

        try:
            cpp_builder.get_cpp_compiler()
        except Exception as e:  # inductor's InvalidCxxCompiler, a failed probe
            return f"no C++ compiler for inductor ({_first_line(e)})"
    elif device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "no Triton for inductor's GPU code"
    return None


def decide(
    mode: bool | str,
    *,
    model_name: str,
    model_options: dict[str, Any],
    objective: str,
    own_steps: str,
    params: int,
    batch_size: int,
    steps: int,
    max_seconds: float,
    device: torch.device,
    missing: Callable[[torch.device], str | None] | None = None,
) -> Decision:
    """What ``train.compile: mode`` means for this run (module docstring). ``true`` and
    ``false`` are taken as said (an objective with steps of its own refuses ``true``
    earlier, in the trainer); ``auto`` compiles only where every condition holds, asking
    ``missing`` (default :func:`backend_missing`) last."""
    name = mode_name(mode)
    if name != "auto":
        return Decision(name, mode is True, "set by train.compile")

    def eager(why: str) -> Decision:
        return Decision("auto", False, why)

    if own_steps:
        return eager(f"objective {objective!r} takes steps of its own ({own_steps})")
    kind = family(model_name, model_options)
    if kind in NEVER:
        return eager(f"model {model_name!r}: {NEVER[kind]}")
    if kind not in COSTS:
        return eager(f"model {kind!r}: compile cost not measured")
    if objective not in MEASURED_OBJECTIVES:
        return eager(f"objective {objective!r}: compile cost not measured")
    if device.type != "cpu":
        return eager(f"compile cost measured on the CPU only, not {device.type}")
    cost = COSTS[kind]
    worth, why = pays(cost, steps, max_seconds, estimated_step_seconds(cost, params * batch_size))
    if not worth:
        return eager(why)
    problem = (missing or backend_missing)(device)
    return eager(problem) if problem else Decision("auto", True, why)


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip().splitlines()
    line = f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _backward_compiled_too() -> AbstractContextManager[Any]:
    """Inductor compiles the backward graph at the first backward pass unless told to compile
    it with the forward: told, a failure to compile either surfaces in the forward call, before
    the step has computed anything."""
    config = getattr(torch._functorch, "config", None)
    if config is None or not hasattr(config, "force_non_lazy_backward_lowering"):
        return nullcontext()
    return config.patch(force_non_lazy_backward_lowering=True)


#: the first calls, which compile: the compiler's own notes are silenced for them
_QUIET_CALLS = 3


@contextmanager
def _quiet_compiler(quiet: bool) -> Iterator[None]:
    """Silences the compiler's notes to its developers while it compiles (Dynamo's graph-break
    hints, Inductor's deprecation warnings): a user's run prints its own lines only. Errors
    still raise, and a failed compilation is named by :class:`CompiledStep`."""
    if not quiet:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("torch._dynamo", "torch._inductor")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


class CompiledStep:
    """``module`` through ``torch.compile(dynamic=False)``. If a call fails to compile (or
    fails compiled), it prints one line on stderr, marks ``decision`` as not used with the
    reason, calls ``on_fallback(decision)`` and computes eagerly from then on; an error that
    eager computation raises too is the model's and propagates."""

    def __init__(
        self,
        module: Callable[..., Tensor],
        decision: Decision,
        on_fallback: Callable[[Decision], None] = lambda d: None,
    ) -> None:
        self.module, self.decision, self.on_fallback = module, decision, on_fallback
        self.compiled: Callable[..., Tensor] | None = torch.compile(module, dynamic=False)
        self.calls = 0

    def __call__(self, *args: Any) -> Tensor:
        if self.compiled is not None:
            try:
                with _backward_compiled_too(), _quiet_compiler(self.calls < _QUIET_CALLS):
                    self.calls += 1
                    return self.compiled(*args)
            except Exception as e:  # any failure: eager decides whether it is the model's
                self.compiled = None
                reason = _first_line(e)
                self.decision.used = False
                self.decision.why = f"compiling failed ({reason}); trained eagerly"
                print(
                    f"notice: train.compile: compiling the training step failed ({reason}); "
                    f"training eagerly",
                    file=sys.stderr,
                )
                self.on_fallback(self.decision)
        return self.module(*args)
