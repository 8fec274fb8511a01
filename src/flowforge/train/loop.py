"""Maximum-likelihood training runs: data, model, optimiser, checkpoints, metrics, summary.

``train_run(config)`` writes ``<output_dir>/<name>/``::

    config.yaml       the resolved config
    metrics.jsonl     one JSON record per evaluation (and per rollback)
    checkpoints/      last.pt (resume point) and best.pt (best validation NLL)
    summary.json      test NLL, its standard error, the gap to the true entropy
    plots/            density, samples, latents and curves (2-D data)

Everything that can be wrong with the config, the data or the model is found before the
directory is created. Batches depend only on the seed and the step, so a resumed run replays
exactly the batches an uninterrupted run would see. A non-finite loss or gradient skips the
step; ``max_bad_steps`` in a row roll back to the last checkpoint with half the learning rate,
and after ``max_rollbacks`` the run stops with :class:`TrainingDiverged`.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor

from flowforge import __version__
from flowforge.config import ConfigError, RunConfig, parse_config
from flowforge.data.registry import Splits, load_dataset
from flowforge.flows import Flow
from flowforge.models import RECIPES
from flowforge.train.averaging import ParameterAverage
from flowforge.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from flowforge.train.distributed import Group, LogProb, needs_data_init
from flowforge.train.metrics import bits_per_dim, evaluate_nll
from flowforge.transforms.continuous import regularization

__all__ = ["RunResult", "TrainingDiverged", "TrainingInterrupted", "build_model", "train_run"]


class TrainingDiverged(RuntimeError):
    """Training produced non-finite values and could not recover by rolling back."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; a checkpoint was saved and the message says how to resume."""


@dataclass
class RunResult:
    """Where a run wrote its files, and its summary."""

    run_dir: Path
    summary: dict[str, Any]


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` picks CUDA when available; an unavailable device is a config error. A plain
    ``"cuda"`` is GPU ``local_rank`` (the process's GPU under torchrun)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but CUDA is not available here")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def build_model(cfg: RunConfig, splits: Splits) -> Flow:
    """Builds the configured recipe for the data's event shape and context size."""
    recipe = RECIPES[cfg.model.name]
    shape = splits.event_shape
    first = shape[0] if len(shape) == 1 else shape
    kwargs = dict(cfg.model.options)
    if splits.context_features:
        kwargs["context_features"] = splits.context_features
    try:
        return recipe(first, **kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"model: {cfg.model.name!r} cannot be built: {e}") from None


def learning_rate(cfg: RunConfig, step: int) -> float:
    """The scheduled learning rate at ``step`` (linear warm-up, then constant or cosine)."""
    t = cfg.train
    if step < t.warmup:
        return t.lr * (step + 1) / t.warmup
    if t.schedule == "cosine":
        progress = (step - t.warmup) / max(1, t.steps - t.warmup)
        return t.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return t.lr


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> Tensor:
    """Indices of the batch at ``step``: epoch-wise permutations drawn from ``(seed, epoch)``."""
    per_epoch = max(1, n // batch_size)
    epoch, i = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return perm[i * batch_size : (i + 1) * batch_size]


def _rng_state() -> dict[str, Any]:
    """Torch's generator states: the only randomness a step uses (batches come from the step)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_seed(seed: int, rank: int, step: int) -> int:
    """The seed of a rank > 0's random stream, distinct per (seed, rank, step)."""
    return (seed * 1_000_003 + rank) * 1_000_033 + step


def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True)


def _unique_dir(base: Path) -> Path:
    if not base.exists():
        return base
    k = 2
    while (base.parent / f"{base.name}-{k}").exists():
        k += 1
    return base.parent / f"{base.name}-{k}"


@contextmanager
def _stop_signals() -> Iterator[list[str]]:
    """Records SIGINT/SIGTERM instead of dying mid-step; restores the handlers afterwards."""
    received: list[str] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    try:
        yield received
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class _Run:
    """State of one training run (kept small: the loop lives in :meth:`fit`)."""

    def __init__(
        self, cfg: RunConfig, splits: Splits, flow: Flow, run_dir: Path, group: Group | None = None
    ) -> None:
        self.cfg, self.splits, self.flow, self.run_dir = cfg, splits, flow, run_dir
        self.group = group or Group()
        self.device = next(flow.buffers(), torch.zeros(())).device
        self.ckpt_dir = run_dir / "checkpoints"
        self.train_log_prob = self._compiled(flow.log_prob)
        # the fused kernel updates every parameter in one pass: 9-13 % off a MAF/RealNVP step
        self.optimizer = torch.optim.AdamW(
            flow.parameters(),
            lr=cfg.train.lr,
            weight_decay=cfg.train.weight_decay,
            fused=self.device.type in ("cpu", "cuda"),
        )
        ema = cfg.train.ema
        self.average = ParameterAverage(flow, ema) if ema else None
        self.step = 0
        self.best_val = math.inf
        self.evals_since_best = 0
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.loss_sum, self.loss_n = 0.0, 0  # training loss since the last evaluation
        self.started = time.time()
        self.elapsed_before = 0.0

    def wrap_data_parallel(self) -> None:
        """Under torchrun: data-dependent initialisation on the step's whole batch, rank 0's
        parameters on every rank, and the training density through DDP."""
        from torch.nn.parallel import DistributedDataParallel

        self.init_data_dependent()
        devices = [self.device] if self.device.type == "cuda" else None
        ddp = DistributedDataParallel(LogProb(self.flow), device_ids=devices)
        self.train_log_prob = self._compiled(ddp)

    def _compiled(self, fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
        """The training density, compiled for the fixed training batch shape when asked."""
        return torch.compile(fn, dynamic=False) if self.cfg.train.compile else fn

    def init_data_dependent(self) -> None:
        """Initialises ActNorm-like layers on the current step's batch (the batch a single
        process would initialise them on), then copies rank 0's state to every rank."""
        if needs_data_init(self.flow):
            x, c = self.batch(self.indices(), shard=False)
            with torch.no_grad():
                self.flow.log_prob(x, c)
        self.group.sync(self.flow)

    def indices(self) -> Tensor:
        t = self.cfg.train
        return batch_indices(self.splits.train.shape[0], t.batch_size, self.cfg.seed, self.step)

    def batch(self, idx: Tensor, shard: bool = True) -> tuple[Tensor, Tensor | None]:
        """The training examples at ``idx`` (this rank's part of them when ``shard``)."""
        s = self.splits
        idx = self.group.shard(idx) if shard else idx
        x = s.train[idx].to(self.device)
        c = None if s.train_context is None else s.train_context[idx].to(self.device)
        return x, c

    # -- checkpoints -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The resume point; collective under torchrun (it gathers every rank's random state)."""
        rng = _rng_state()
        ranks = self.group.gather(rng) if self.group.active else None
        return {
            "model": self.flow.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "best_val": self.best_val,
            "evals_since_best": self.evals_since_best,
            "lr_scale": self.lr_scale,
            "rollbacks": self.rollbacks,
            "loss_sum": self.loss_sum,
            "loss_n": self.loss_n,
            "elapsed": self.elapsed(),
            "rng": rng,
            **({"rng_ranks": ranks} if ranks else {}),
            **({"ema": self.average.shadow} if self.average else {}),
            "config": self.cfg.to_dict(),
            "version": __version__,
        }

    def restore(self, path: Path) -> None:
        payload = load_checkpoint(path, map_location=self.device)
        load_model_state(path, self.flow, payload)
        try:
            self.optimizer.load_state_dict(payload["optimizer"])
            self.step = int(payload["step"])
            self.best_val = float(payload["best_val"])
            self.evals_since_best = int(payload["evals_since_best"])
            self.lr_scale = float(payload["lr_scale"])
            self.rollbacks = int(payload["rollbacks"])
            # absent from checkpoints written before the accumulator was saved: start it at zero
            self.loss_sum = float(payload.get("loss_sum", 0.0))
            self.loss_n = int(payload.get("loss_n", 0))
            self.elapsed_before = float(payload["elapsed"])
            _set_rng_state(self._rank_rng(payload))
            if self.average is not None:  # a run that turns averaging on starts it here
                if "ema" in payload:
                    self.average.load(payload["ema"])
                else:
                    self.average.reset()
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{path}: incomplete training state ({e})") from None

    def _rank_rng(self, payload: dict[str, Any]) -> dict[str, Any]:
        """This rank's random state: its own when the checkpoint was written by as many ranks,
        else rank 0's (ranks > 0 then re-seed from the seed, rank and step)."""
        g = self.group
        ranks = payload.get("rng_ranks")
        if not g.active or g.rank == 0:
            return payload["rng"]
        if ranks and len(ranks) == g.world_size:
            return ranks[g.rank]
        torch.manual_seed(_rank_seed(self.cfg.seed, g.rank, self.step))
        return _rng_state()

    def save(self, name: str, payload: dict[str, Any] | None = None) -> Path:
        """Writes a checkpoint (rank 0 only); without ``payload`` the full resume state, which
        is collective under torchrun."""
        path = self.ckpt_dir / name
        payload = payload or self.state()
        if self.group.is_main:
            save_checkpoint(path, payload)
        return path

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    # -- metrics -----------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if not self.group.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def truncate_log(self, step: int) -> None:
        """Drops records written after ``step`` (a resumed run writes them again)."""
        path = self.run_dir / "metrics.jsonl"
        if self.group.is_main and path.exists():
            keep = [
                line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step
            ]
            path.write_text("".join(line + "\n" for line in keep))

    def value(self, nll: float) -> float:
        """NLL in the data's unit (nats per point, or bits per dimension)."""
        if self.splits.unit == "bits/dim":
            return bits_per_dim(nll, math.prod(self.splits.event_shape))
        return nll

    # -- training ----------------------------------------------------------------------------
    def train_step(self, idx: Tensor) -> tuple[float, str | None]:
        """One optimiser step; returns the loss (the mean over ranks) and, if non-finite, what
        diverged."""
        x, c = self.batch(idx)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.cfg, self.step) * self.lr_scale
        self.optimizer.zero_grad(set_to_none=True)
        loss = -self.train_log_prob(x, c).mean()
        penalty = regularization(self.flow)  # RNODE terms of continuous flows, if any
        if penalty is not None:
            loss = loss + penalty
        mean = self.group.mean(loss)  # every rank takes the same decision
        if not torch.isfinite(mean):
            return mean.item(), "loss"
        loss.backward()
        # one fused norm over all gradients: it clips and detects NaN/inf in a single pass
        max_norm = self.cfg.train.grad_clip if self.cfg.train.grad_clip > 0 else math.inf
        total = torch.nn.utils.clip_grad_norm_(self.flow.parameters(), max_norm)
        if not torch.isfinite(total):
            bad = next(
                (
                    name
                    for name, p in self.flow.named_parameters()
                    if p.grad is not None and not bool(torch.isfinite(p.grad).all())
                ),
                "all parameters (norm overflow)",
            )
            return mean.item(), f"gradient of {bad}"
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.step)
        return mean.item(), None

    def evaluate(self) -> tuple[float, float]:
        s = self.splits
        return evaluate_nll(self.flow, s.val, s.val_context, self.cfg.train.eval_batch_size)

    def fit(self, progress: bool, stop: list[str]) -> None:
        t = self.cfg.train
        from tqdm import tqdm

        bar = tqdm(
            total=t.steps,
            initial=self.step,
            disable=not (progress and self.group.is_main),
            desc=self.cfg.name,
            dynamic_ncols=True,
            file=sys.stderr,
        )
        bad = 0
        if self.step < t.steps and self.group.any(0 < t.max_seconds <= self.elapsed()):
            self.say(bar, f"time budget of {t.max_seconds:g} s already used up: no step taken")
            bar.close()
            return
        while self.step < t.steps:
            if self.group.any(bool(stop)):
                path = self.save("last.pt")
                bar.close()
                raise TrainingInterrupted(
                    f"{stop[0] if stop else 'a signal to another process'} received at step "
                    f"{self.step}: "
                    f"checkpoint saved to {path}. Resume with: {self.launcher()} train "
                    f"--resume {self.run_dir}"
                )
            loss, diverged = self.train_step(self.indices())
            if diverged:
                bad += 1
                if bad >= t.max_bad_steps:
                    self.roll_back(diverged)
                    bad = 0
                    bar.n = self.step
                continue
            bad = 0
            self.loss_sum, self.loss_n = self.loss_sum + loss, self.loss_n + 1
            self.step += 1
            bar.update(1)
            out_of_time = self.group.any(0 < t.max_seconds <= self.elapsed())
            if self.step % t.eval_every == 0 or self.step == t.steps or out_of_time:
                self.group.check_same(self.flow)
                if self.group.is_main:  # the other ranks wait in save()
                    val = self.evaluate_and_log()
                    bar.set_postfix(val=f"{val:.4f}")
                self.loss_sum, self.loss_n = 0.0, 0
                self.save("last.pt")
                self.evals_since_best = self.group.broadcast(self.evals_since_best)
                if t.patience and self.evals_since_best >= t.patience:
                    self.say(
                        bar,
                        f"early stop at step {self.step}: no validation improvement in "
                        f"{t.patience} evaluations",
                    )
                    break
                if out_of_time:
                    self.say(
                        bar,
                        f"time budget of {t.max_seconds:g} s used up at step {self.step} "
                        f"({self.elapsed():.0f} s of training)",
                    )
                    break
        bar.close()

    def launcher(self) -> str:
        g = self.group
        if g.active:
            return f"torchrun --nproc_per_node={g.world_size} -m flowforge.cli"
        return "flowforge"

    def say(self, bar: Any, message: str) -> None:
        """A message under the progress bar, from rank 0 only."""
        if self.group.is_main:
            bar.write(message)

    def averaged(self) -> AbstractContextManager[None]:
        """The averaged parameters in the model inside the block, if ``train.ema`` is on."""
        return self.average.applied() if self.average is not None else nullcontext()

    def evaluate_and_log(self) -> float:
        """Validation NLL (of the averaged parameters, if any): keeps the best model in
        best.pt and appends a metrics record."""
        with self.averaged():
            val, val_se = self.evaluate()
            if val < self.best_val:
                self.best_val, self.evals_since_best = val, 0
                self.save(
                    "best.pt",
                    {
                        "model": self.flow.state_dict(),
                        "step": self.step,
                        "val_nll": val,
                        "config": self.cfg.to_dict(),
                        "version": __version__,
                    },
                )
            else:
                self.evals_since_best += 1
        record = {
            "step": self.step,
            "train_nll": self.loss_sum / max(self.loss_n, 1),
            "val_nll": val,
            "val_stderr": val_se,
            "lr": self.optimizer.param_groups[0]["lr"],
            "elapsed": round(self.elapsed(), 3),
        }
        if self.splits.unit == "bits/dim":
            record["val_bpd"] = self.value(val)
        self.log(record)
        return val

    def roll_back(self, what: str) -> None:
        last = self.ckpt_dir / "last.pt"
        t = self.cfg.train
        if self.rollbacks >= t.max_rollbacks:
            raise TrainingDiverged(
                f"non-finite {what} in {t.max_bad_steps} consecutive steps at step {self.step}, "
                f"after {self.rollbacks} rollbacks with a halved learning rate each. The last "
                f"good checkpoint is {last}; lower train.lr or raise train.grad_clip and resume."
            )
        rollbacks, step = self.rollbacks + 1, self.step
        self.restore(last)
        self.rollbacks, self.lr_scale = rollbacks, self.lr_scale * 0.5
        if self.group.active:  # a step-0 checkpoint predates ActNorm's initialisation
            self.init_data_dependent()
        self.truncate_log(self.step)
        self.log(
            {
                "step": self.step,
                "event": "rollback",
                "diverged": what,
                "at_step": step,
                "lr_scale": self.lr_scale,
            }
        )
        if self.group.is_main:
            print(
                f"warning: non-finite {what} at step {step}; rolled back to step {self.step} "
                f"with learning rate x{self.lr_scale}",
                file=sys.stderr,
            )


def _write_summary(run: _Run) -> dict[str, Any]:
    s, cfg = run.splits, run.cfg
    best = run.ckpt_dir / "best.pt"
    if best.exists():
        payload = load_checkpoint(best, map_location=run.device)
        load_model_state(best, run.flow, payload)
    test, test_se = evaluate_nll(run.flow, s.test, s.test_context, cfg.train.eval_batch_size)
    summary: dict[str, Any] = {
        "name": cfg.name,
        "model": cfg.model.name,
        "data": cfg.data.name,
        "steps": run.step,
        "parameters": sum(p.numel() for p in run.flow.parameters()),
        "train_seconds": round(run.elapsed(), 2),
        "best_val_nll": run.best_val,
        "test_nll": test,
        "test_stderr": test_se,
        "n_test": int(s.test.shape[0]),
        "unit": "nats",
    }
    if s.unit == "bits/dim":
        dims = math.prod(s.event_shape)
        summary.update(
            test_bpd=bits_per_dim(test, dims), test_bpd_stderr=bits_per_dim(test_se, dims)
        )
    if s.entropy is not None:
        summary.update(entropy=s.entropy, entropy_stderr=s.entropy_stderr, gap=test - s.entropy)
    (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def prepare(cfg: RunConfig, local_rank: int = 0) -> tuple[Splits, Flow, torch.device]:
    """Loads the data and builds the model; every error here happens before any file is written."""
    device = resolve_device(cfg.device, local_rank)
    _seed_everything(cfg.seed, cfg.deterministic)
    try:
        splits = load_dataset(
            cfg.data.name,
            cfg.data.n_train,
            cfg.data.n_val,
            cfg.data.n_test,
            cfg.seed,
            **cfg.data.options,
        )
    except (ValueError, FileNotFoundError) as e:
        raise ConfigError(f"data: {e}") from None
    flow = build_model(cfg, splits).to(device)
    return splits, flow, device


def train_run(
    cfg: RunConfig, resume: Path | None = None, progress: bool = True, plots: bool = True
) -> RunResult:
    """Trains ``cfg`` by maximum likelihood, or resumes the run in directory ``resume``.

    Under torchrun every process calls it and they train one model data-parallel
    (:mod:`flowforge.train.distributed`); rank 0 writes the files.
    """
    if resume is not None:
        resume = Path(resume)
        if not (resume / "checkpoints" / "last.pt").is_file():
            raise CheckpointError(
                f"nothing to resume: {resume / 'checkpoints' / 'last.pt'} not found"
            )
    group = Group.from_environment()
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
    splits, flow, device = prepare(cfg, group.local_rank)
    group.join(device)
    return _train(cfg, resume, progress, plots, splits, flow, group)


def _train(
    cfg: RunConfig,
    resume: Path | None,
    progress: bool,
    plots: bool,
    splits: Splits,
    flow: Flow,
    group: Group,
) -> RunResult:
    main = group.is_main
    run_dir = resume or group.broadcast(
        _unique_dir(Path(cfg.output_dir) / cfg.name) if main else None
    )
    run = _Run(cfg, splits, flow, run_dir, group)
    if resume is not None:
        run.restore(run_dir / "checkpoints" / "last.pt")
        run.truncate_log(run.step)
        if main:
            print(f"resuming {run_dir} at step {run.step}", file=sys.stderr)
    else:
        if group.rank > 0:  # its own random stream (dequantization noise, estimator probes)
            torch.manual_seed(_rank_seed(cfg.seed, group.rank, 0))
        if main:
            run_dir.mkdir(parents=True)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        run.save("last.pt")  # step 0: a good state to roll back to from the start
    if group.active:
        run.wrap_data_parallel()
    with _stop_signals() as stop:
        run.fit(progress, stop)
    summary = _write_summary(run) if main else None
    if plots and main and splits.event_shape == (2,):
        from flowforge.viz.plots import plot_2d_run

        plot_2d_run(run.flow, splits, run_dir)
    return RunResult(run_dir, group.broadcast(summary))


def load_run(run_dir: str | Path, checkpoint: str = "best.pt") -> tuple[RunConfig, Splits, Flow]:
    """Rebuilds a finished (or interrupted) run's config, data and model from its directory."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise ConfigError(f"not a run directory (no config.yaml): {run_dir}")
    cfg = parse_config(yaml.safe_load(config_path.read_text()))
    splits, flow, device = prepare(cfg)
    path = run_dir / "checkpoints" / checkpoint
    if not path.is_file():
        path = run_dir / "checkpoints" / "last.pt"
    payload = load_checkpoint(path, map_location=device)
    load_model_state(path, flow, payload)
    flow.eval()
    return cfg, splits, flow
