"""The playground's state, apart from the web: runs in a workspace folder, each an ordinary
run directory trained by a worker process (:mod:`.worker`), and the live view of a run
(density, samples, loss against the true entropy, the grid layer by layer) computed from its
files. Everything the page shows is read back from the run directory, so a refreshed page or
a restarted server loses nothing but a worker's steps since its last checkpoint.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import re
import secrets
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowforge.config import ConfigError, parse_config
from flowforge.runs.directory import RunDirectory
from flowforge.serve.sources import (
    PlaygroundError,
    check_points,
    compact,
    file_section,
    points_section,
    preview,
    save_upload,
    toy_section,
    uploaded,
)
from flowforge.serve.worker import read_status, train_worker

__all__ = ["DEFAULT", "FAMILIES", "Playground", "PlaygroundError"]


@dataclass(frozen=True)
class Family:
    label: str
    depth: tuple[int, int, int]  # min, default, max


# the flow families of the page, and the model config each depth gives
MODEL_OPTIONS = {
    "realnvp": lambda d: {"name": "realnvp", "couplings": d, "hidden": [64, 64]},
    "nsf": lambda d: {
        "name": "nsf",
        "kind": "coupling",
        "layers": d,
        "hidden": 64,
        "residual_blocks": 1,
        "bins": 8,
        "bound": 4.0,
    },
    "maf": lambda d: {"name": "maf", "layers": d, "hidden": [64, 64], "batch_norm": False},
    "planar": lambda d: {"name": "planar", "layers": d},
    "radial": lambda d: {"name": "radial", "layers": d},
    "ffjord": lambda d: {
        "name": "ffjord",
        "blocks": d,
        "hidden": [32, 32],
        "method": "rk4",
        "step_size": 0.1,
    },
    "resflow": lambda d: {"name": "resflow", "blocks": d, "hidden": [32, 32]},
    # Glow's step in 2-D: actnorm, a learned invertible 2 x 2 map (the 1x1 convolution, LU
    # form), then an affine coupling
    "glow": lambda d: {"name": "realnvp", "couplings": d, "hidden": [64, 64], "glow": True},
}
FAMILIES = {
    "realnvp": Family("RealNVP (affine coupling)", (1, 6, 16)),
    "nsf": Family("NSF (rational-quadratic spline coupling)", (1, 8, 12)),
    "maf": Family("MAF (masked autoregressive)", (1, 5, 12)),
    "planar": Family("Planar", (1, 16, 64)),
    "radial": Family("Radial", (1, 16, 64)),
    "ffjord": Family("FFJORD (continuous)", (1, 1, 3)),
    "resflow": Family("Residual Flow", (1, 4, 12)),
    "glow": Family("Glow steps (actnorm + invertible linear + affine coupling)", (1, 6, 16)),
}
# what the page starts with: of the candidates measured by benchmarks/playground_default.py,
# the one that ends closest to the true entropy in about 30 s on one core
# (docs/figures-report-serve.md, "The default")
DEFAULT: dict[str, Any] = {
    "data": "moons",
    "family": "nsf",
    "depth": 8,
    "steps": 1000,
    "lr": 5e-3,
    "measured": (
        "The default (NSF, 8 spline couplings, 1000 steps on moons) was measured to end "
        "0.016 nats above the true entropy on average over 3 seeds (0.007 to 0.024), after "
        "23 to 28 s of training on one core of a 2-core machine (longer when it is busy)."
    ),
}
MAX_STEPS = 20000
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise PlaygroundError(f"{what}: should be a whole number, got {value!r}"[:200])
    try:
        f = float(value)
    except ValueError:
        raise PlaygroundError(f"{what}: should be a whole number, got {value!r}"[:200]) from None
    if not math.isfinite(f) or f != int(f) or not lo <= f <= hi:
        raise PlaygroundError(f"{what}: should be a whole number in [{lo}, {hi}], got {value!r}")
    return int(f)


def _finite(value: Any) -> float | None:
    """A loss for the page: ``None`` when missing or not finite (JSON has no NaN)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _label(filename: str) -> str:
    """A file's name as a part of a run name (``[a-z0-9-]``)."""
    stem = re.sub(r"[^a-z0-9]+", "-", Path(filename).stem.lower()).strip("-")[:20].strip("-")
    return stem or "file"


class Playground:
    """The runs of the workspace folder ``workspace`` and their worker processes."""

    def __init__(self, workspace: str | Path, threads: int = 1) -> None:
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.threads = threads
        self.workers: dict[str, multiprocessing.process.BaseProcess] = {}
        self.lock = threading.Lock()
        self._cache: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._mp = multiprocessing.get_context("spawn")
        self.uploads = self.workspace / ".data"  # drawn points and uploaded files
        self._data: dict[str, dict[str, Any]] = {}

    # -- files ---------------------------------------------------------------------------------
    def run_dir(self, run: str) -> Path:
        if not isinstance(run, str) or not NAME.match(run):
            raise PlaygroundError(f"no run {str(run)[:40]!r}")
        path = self.workspace / run
        if not (path / "config.yaml").is_file() and not self._status_file(run).is_file():
            raise PlaygroundError(f"no run {run!r} in the playground")
        return path

    def _status_file(self, run: str) -> Path:
        return self.workspace / ".status" / f"{run}.json"

    def _points_file(self, run: str) -> Path:
        return self.uploads / f"{run}.npy"

    # -- data ----------------------------------------------------------------------------------
    def preview(self, dataset: Any) -> dict[str, Any]:
        """The toy data set ``dataset`` as the page draws it before training."""
        return preview(toy_section(dataset))

    def open_path(self, path: Any) -> dict[str, Any]:
        """Checks the user's file at ``path`` (as ``train --data`` would); returns its preview
        and the source the page sends back to train on it."""
        section = file_section(path)
        return {
            "source": {"path": section["path"]},
            "name": Path(section["path"]).name,
            **preview(section),
        }

    def upload(self, filename: Any, content: bytes) -> dict[str, Any]:
        """Saves and checks an uploaded file (a refused one is deleted); returns its preview
        and the source the page sends back to train on it."""
        name = save_upload(self.uploads, filename, content)
        shown = Path(str(filename)).name[:80]
        try:
            section = file_section(str(self.uploads / name))
        except PlaygroundError as e:  # its message names the file as the user knows it
            (self.uploads / name).unlink()
            stored = str(self.uploads / name)
            raise PlaygroundError(str(e).replace(stored, shown).replace(name, shown)) from None
        return {"source": {"file": name, "filename": shown}, "name": shown, **preview(section)}

    # -- starting, stopping, resuming ----------------------------------------------------------
    def config(self, request: dict[str, Any]) -> tuple[str, dict[str, Any], np.ndarray | None]:
        """Validates the page's request; returns the run's name, config and drawn points."""
        if not isinstance(request, dict):
            raise PlaygroundError("the request should be a JSON object")
        family = request.get("family")
        if family not in FAMILIES:
            raise PlaygroundError(
                f"unknown flow family {str(family)[:40]!r}; choose one of {', '.join(FAMILIES)}"
            )
        lo, _, hi = FAMILIES[family].depth
        depth = _int(request.get("depth", FAMILIES[family].depth[1]), "depth", lo, hi)
        steps = _int(request.get("steps", DEFAULT["steps"]), "steps", 10, MAX_STEPS)
        lr = request.get("lr", DEFAULT["lr"])
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 1e-6 <= lr <= 0.1:
            raise PlaygroundError(f"learning rate: should be in [1e-6, 0.1], got {lr!r}"[:200])
        points = None
        sources = [k for k in ("points", "file", "path") if request.get(k) is not None]
        if len(sources) > 1:
            raise PlaygroundError(f"give one source of data, not {' and '.join(sources)}")
        if request.get("points") is not None:
            points = check_points(request["points"])
            data = points_section(len(points))
            label = "drawn"
        elif request.get("file") is not None:
            file = uploaded(self.uploads, request["file"])
            data = file_section(str(file))
            label = _label(str(request.get("filename") or "file"))
        elif request.get("path") is not None:
            data = file_section(request["path"])
            label = _label(data["path"])
        else:
            data = toy_section(request.get("data", DEFAULT["data"]))
            label = data["name"]
        name = f"{family}-{label}-{secrets.token_hex(3)}"
        raw = {
            "name": name,
            "seed": 0,
            "device": "cpu",
            "output_dir": str(self.workspace),
            "data": data,
            "model": MODEL_OPTIONS[family](depth),
            "train": {
                "steps": steps,
                "batch_size": min(256, data["n_train"]),
                "lr": float(lr),
                "eval_every": max(10, steps // 40),
            },
        }
        return name, raw, points

    def start(self, request: dict[str, Any]) -> str:
        """Starts a new run from the page's request; returns its name."""
        name, raw, points = self.config(request)
        if points is not None:
            file = self._points_file(name)
            file.parent.mkdir(parents=True, exist_ok=True)
            np.save(file, points)
            raw["data"]["path"] = str(file)
        try:
            parse_config(raw)  # every config error is the page's before a process starts
        except ConfigError as e:
            raise PlaygroundError(str(e)) from None
        self._spawn(name, raw, None, [])  # it creates the run directory
        return name

    def _spawn(self, name: str, raw: dict | None, resume: str | None, overrides: list) -> None:
        from flowforge.serve.worker import write_status

        status = self._status_file(name)
        write_status(status, state="starting")
        proc = self._mp.Process(
            target=train_worker,
            args=(str(status), raw, resume, overrides, self.threads),
            name=f"flowforge-train-{name}",
            daemon=True,
        )
        proc.start()
        self.workers[name] = proc

    def stop(self, run: str) -> None:
        """Asks the run's worker to stop (it saves ``last.pt`` first)."""
        self.run_dir(run)
        proc = self.workers.get(run)
        if proc is None or not proc.is_alive():
            raise PlaygroundError(f"{run} is not training")
        proc.terminate()  # SIGTERM: the trainer checkpoints and stops

    def resume(self, run: str, more_steps: Any = 500) -> None:
        """Continues the run from ``last.pt`` for ``more_steps`` more steps."""
        path = self.run_dir(run)
        more = _int(more_steps, "steps", 10, MAX_STEPS)
        with self.lock:
            proc = self.workers.get(run)
            if proc is not None and proc.is_alive():
                raise PlaygroundError(f"{run} is training already (in another tab?)")
            if not (path / "checkpoints" / "last.pt").is_file():
                raise PlaygroundError(f"{run} has no checkpoint yet to resume from")
            records = RunDirectory(path).read_metrics()
            done = max((r.get("step", 0) for r in records), default=0)
            self._spawn(run, None, str(path), [f"train.steps={done + more}"])

    def state(self, run: str) -> dict[str, Any]:
        proc = self.workers.get(run)
        status = read_status(self._status_file(run))
        if proc is not None and proc.is_alive():
            return {"state": "training" if status.get("state") != "starting" else "starting"}
        if status.get("state") in ("training", "starting"):
            # the worker died without a word (killed, or the server restarted)
            return {"state": "stopped", "message": "the training process ended; resume it"}
        return {k: v for k, v in status.items() if k in ("state", "message")} or {"state": "idle"}

    def runs(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.workspace.iterdir()):
            if path.is_dir() and (path / "config.yaml").is_file() and NAME.match(path.name):
                out.append({"run": path.name, **self.state(path.name)})
        return out

    def archive(self, run: str) -> bytes:
        """The run directory as a zip file (without its lock file)."""
        path = self.run_dir(run)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.name != ".lock" and not f.name.endswith(".tmp"):
                    z.write(f, f"{run}/{f.relative_to(path).as_posix()}")
        return buffer.getvalue()

    def shutdown(self) -> None:
        for proc in self.workers.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self.workers.values():
            proc.join(timeout=10)

    # -- the live view -------------------------------------------------------------------------
    def view(self, run: str) -> dict[str, Any]:
        """What the page draws: the data, the model's density, samples and layer grids (from
        ``last.pt``), the loss records and the true entropy, and the run's state."""
        path = self.run_dir(run)
        if not (path / "config.yaml").is_file():  # the worker is starting (or failed to)
            return {"run": run, **self.state(run), "records": []}
        directory = RunDirectory(path)
        records = [r for r in directory.read_metrics() if "event" not in r]
        shown = {
            "run": run,
            **self.state(run),
            "records": [
                {
                    "step": r["step"],
                    "train": _finite(r.get("train_nll")),
                    "val": _finite(r.get("val_nll")),
                }
                for r in records
            ],
            "summary": directory.read_summary(),
        }
        cfg = directory.read_config()
        data = self._data.get(run)
        if data is None:  # the data a run was trained on does not change: read it once
            try:
                data = self._data[run] = preview(cfg["data"], cfg["seed"])
            except PlaygroundError as e:  # the user's file went away: the run's numbers stay
                return {**shown, "view_error": str(e)}
        last = path / "checkpoints" / "last.pt"
        key = (last.stat().st_mtime_ns if last.is_file() else None, len(records))
        cached = self._cache.get(run)
        if cached is None or cached[0] != key:
            model_view = self._model_view(path, data["box"]) if key[0] is not None else {}
            cached = (key, model_view)
            self._cache[run] = cached
        return {
            **shown,
            "config": {"model": cfg["model"], "data": cfg["data"]["name"], "train": cfg["train"]},
            "entropy": data["entropy"],
            "data": data["points"],
            "box": data["box"],
            **cached[1],
        }

    def _model_view(self, path: Path, box: tuple[float, ...]) -> dict[str, Any]:
        """The model's density over ``box``, its samples and the grid layer by layer, from
        ``last.pt``."""
        from flowforge.runs import load
        from flowforge.viz.run_figures import _grid_lines, density_grid, layer_stages

        try:
            flow = load(path, "last")
        except Exception as e:  # a checkpoint being replaced, or a broken one: say so
            return {"view_error": f"the view could not load the model: {str(e)[:300]}"}
        n = 64
        with torch.no_grad():
            dens = density_grid(lambda p: flow.log_prob(p.to(torch.float32)), box, n)
            samples = flow.sample(600).float()
        samples = samples[torch.isfinite(samples).all(1)]
        lines = _grid_lines(box, 11, 40)
        stages = layer_stages(flow, torch.cat(lines), max_stages=5)
        return {
            "density": {"n": n, "values": compact(dens)},
            "samples": compact(samples),
            "stages": [
                {
                    "title": title,
                    "lines": [compact(line) for line in h.split(40)],
                }
                for title, h in stages
            ],
        }
