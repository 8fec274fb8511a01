"""The playground's state, apart from the web: runs in a workspace folder, each an ordinary
run directory trained by a worker process (:mod:`.worker`), and the live view of a run
(density, samples, loss against the true entropy, the grid layer by layer) computed from its
files. Everything the page shows is read back from the run directory, so a refreshed page or
a restarted server loses nothing but a worker's steps since its last checkpoint.

What it serves is its own: a run is a real folder directly in the workspace (a symbolic link
is no run), the zip of a run holds only its regular files (no link is followed), and a run's
data is shown, and a run resumed, only when it is a toy data set as the page makes it or a
file the playground wrote in the workspace's ``.data`` folder (an upload, drawn points, or
the copy of a typed path made when its run starts), whatever else a ``config.yaml`` names.
At most ``max_trainings`` workers train at once.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import re
import secrets
import stat
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowforge.config import ConfigError, parse_config
from flowforge.objectives.results import read_evaluation
from flowforge.run_files import LAST
from flowforge.runs.directory import RunDirectory
from flowforge.serve.sources import (
    MAX_FILE_BYTES,
    TOY,
    UPLOAD,
    PlaygroundError,
    check_points,
    file_section,
    json_rounded,
    points_section,
    preview,
    save_upload,
    toy_section,
    uploaded,
)
from flowforge.serve.worker import read_status, train_worker

__all__ = ["DEFAULT", "FAMILIES", "Busy", "Playground", "PlaygroundError"]


class Busy(PlaygroundError):
    """A training refused because ``max_trainings`` workers train already (HTTP 429)."""


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
MAX_TRAININGS = 4  # workers training at once, by default (each holds a few hundred MB)
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
# the keys of the data section of a run on a file (drawn points, an upload, a typed path)
FILE_KEYS = {"name", "path", "n_train", "n_val", "n_test", "standardize"}


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


def _test_nll(summary: Any) -> dict[str, Any] | None:
    """The finished run's test NLL measure (its typed results' ``nll``), ``None`` before."""
    results = read_evaluation(summary)
    return None if results is None or results.nll is None else results.nll.to_dict()


def _finite(value: Any) -> float | None:
    """A loss for the page: ``None`` when missing or not finite (JSON has no NaN)."""
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _regular_file(name: str, folder: int) -> bytes | None:
    """The content of the file ``name`` in the open folder ``folder`` when it is a regular
    file; ``None`` for a symbolic link (never followed), a pipe, a device or a file gone."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError:  # ELOOP: a symbolic link
        return None
    with os.fdopen(fd, "rb") as f:
        return f.read() if stat.S_ISREG(os.fstat(fd).st_mode) else None


def _steps(records: list[Any]) -> list[dict[str, Any]]:
    """The metrics records that carry a step count (a hand-edited file may hold others)."""
    return [
        r
        for r in records
        if isinstance(r, dict)
        and isinstance(r.get("step"), int)
        and not isinstance(r["step"], bool)
    ]


def _label(filename: str) -> str:
    """A file's name as a part of a run name (``[a-z0-9-]``)."""
    stem = re.sub(r"[^a-z0-9]+", "-", Path(filename).stem.lower()).strip("-")[:20].strip("-")
    return stem or "file"


class Playground:
    """The runs of the workspace folder ``workspace`` and their worker processes."""

    def __init__(
        self, workspace: str | Path, threads: int = 1, max_trainings: int = MAX_TRAININGS
    ) -> None:
        self.workspace = Path(workspace).resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.workspace = self.workspace.resolve()
        self.threads = threads
        self.max_trainings = max_trainings
        self.workers: dict[str, multiprocessing.process.BaseProcess] = {}
        self.lock = threading.RLock()
        self._cache: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._mp = multiprocessing.get_context("spawn")
        self.uploads = self.workspace / ".data"  # drawn points and uploaded files
        self._data: dict[str, dict[str, Any]] = {}

    # -- files ---------------------------------------------------------------------------------
    def run_dir(self, run: str) -> Path:
        if not isinstance(run, str) or not NAME.match(run):
            raise PlaygroundError(f"no run {str(run)[:40]!r}")
        path = self.workspace / run
        if path.is_symlink() or (
            not RunDirectory(path).config_file.is_file() and not self._status_file(run).is_file()
        ):
            raise PlaygroundError(f"no run {run!r} in the playground")
        return path

    def _status_file(self, run: str) -> Path:
        return self.workspace / ".status" / f"{run}.json"

    def _points_file(self, run: str) -> Path:
        return self.uploads / f"{run}.npy"

    def _own_file(self, path: Any) -> bool:
        """Whether ``path`` names a file the playground writes: an upload, drawn points or a
        typed path's copy, directly in ``.data`` (no link on the way), a regular file of a
        size the playground reads (or gone: the view says so)."""
        if not isinstance(path, str) or "\0" in path:
            return False
        name = Path(path).name
        own = UPLOAD.match(name) or (name.endswith(".npy") and NAME.match(name[:-4]))
        if not own or os.path.realpath(path) != str(self.uploads / name):
            return False
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return True
        return stat.S_ISREG(st.st_mode) and st.st_size <= MAX_FILE_BYTES

    def served_data(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """The data section of the run config ``cfg`` when it is one the playground made: a
        toy data set with the page's sizes, or a file of its own (:meth:`_own_file`). Anything
        else (another file, another data set) is a :class:`PlaygroundError`: a ``config.yaml``
        is a file anyone with the workspace can write, and the page would show its rows."""
        data = cfg.get("data")
        name = data.get("name") if isinstance(data, dict) else None
        if name in TOY and data == toy_section(name):
            return data
        if name == "file" and set(data) <= FILE_KEYS and self._own_file(data.get("path")):
            return data
        shown = data.get("path", name) if isinstance(data, dict) else data
        raise PlaygroundError(
            f"the run's data ({str(shown)[:80]!r}) is not one the playground made: it shows "
            f"and resumes runs on its toy data sets and on the files in {self.uploads}"
        )

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
        if not isinstance(family, str) or family not in FAMILIES:
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
        self._check_capacity()  # before any file is written
        written = None
        if points is not None:
            written = self._points_file(name)
            written.parent.mkdir(parents=True, exist_ok=True)
            np.save(written, points)
            raw["data"]["path"] = str(written)
        elif request.get("path") is not None:  # a copy the run keeps: its data is its own
            raw["data"] = self._copy_in(raw["data"])
            written = Path(raw["data"]["path"])
        try:
            parse_config(raw)  # every config error is the page's before a process starts
            self._spawn(name, raw, None, [])  # it creates the run directory
        except (ConfigError, Busy) as e:
            if written is not None:
                written.unlink(missing_ok=True)
            raise e if isinstance(e, Busy) else PlaygroundError(str(e)) from None
        return name

    def _copy_in(self, section: dict[str, Any]) -> dict[str, Any]:
        """The data section of a copy, in ``.data``, of the user's file that ``section``
        names (checked again: the file may have changed since it was opened)."""
        source = section["path"]
        try:
            with open(source, "rb") as f:
                content = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise PlaygroundError(f"{source}: cannot be read: {e.strerror}") from None
        copy = self.uploads / save_upload(self.uploads, source, content)
        try:
            copied = file_section(str(copy))
        except PlaygroundError:
            copied = None
        if copied is None or {**copied, "path": source} != section:
            copy.unlink()
            raise PlaygroundError(f"{source} changed since it was opened: open it again")
        return copied

    def training(self) -> int:
        """The number of workers training now."""
        return sum(proc.is_alive() for proc in self.workers.values())

    def _check_capacity(self) -> None:
        if self.training() >= self.max_trainings:
            raise Busy(
                f"{self.max_trainings} runs are training already, the playground's limit "
                f"(--max-trainings): stop one, or wait for one to finish"
            )

    def _spawn(self, name: str, raw: dict | None, resume: str | None, overrides: list) -> None:
        from flowforge.serve.worker import write_status

        with self.lock:
            self._check_capacity()
            status = self._status_file(name)
            write_status(status, state="starting")
            proc = self._mp.Process(
                target=train_worker,
                args=(str(status), raw, resume, overrides, self.threads, os.getpid()),
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
        proc = self.workers.get(run)
        if proc is not None and proc.is_alive():
            raise PlaygroundError(f"{run} is training already (in another tab?)")
        directory = RunDirectory(path)
        if not directory.checkpoint_path(LAST).is_file():
            raise PlaygroundError(f"{run} has no checkpoint yet to resume from")
        try:
            self.served_data(directory.read_config())
            records = directory.read_metrics()
        except ConfigError as e:
            raise PlaygroundError(str(e)) from None
        done = max((r["step"] for r in _steps(records)), default=0)
        with self.lock:  # one resume at a time: a second tab is told the run trains
            proc = self.workers.get(run)
            if proc is not None and proc.is_alive():
                raise PlaygroundError(f"{run} is training already (in another tab?)")
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
            own = path.is_dir() and not path.is_symlink() and NAME.match(path.name)
            if own and RunDirectory(path).config_file.is_file():
                out.append({"run": path.name, **self.state(path.name)})
        return out

    def archive(self, run: str) -> bytes:
        """The run directory as a zip file: its regular files (not its lock file, nor
        temporary ones), read through open folders without following any symbolic link, so
        nothing outside the run folder gets in."""
        path = self.run_dir(run)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
            for folder, dirs, files, fd in os.fwalk(path, follow_symlinks=False):
                dirs.sort()
                inside = Path(folder).relative_to(path)
                for name in sorted(files):
                    if RunDirectory.is_transient(name):
                        continue
                    content = _regular_file(name, fd)
                    if content is not None:
                        z.writestr(f"{run}/{(inside / name).as_posix()}", content)
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
        directory = RunDirectory(path)
        if not directory.config_file.is_file():  # the worker is starting (or failed to)
            return {"run": run, **self.state(run), "records": []}
        try:
            linked = directory.linked_files()
            if linked:
                raise PlaygroundError(f"{linked[0]} is a symbolic link, not the run's own file")
            records = [r for r in _steps(directory.read_metrics()) if "event" not in r]
            summary = directory.read_summary()
            cfg = directory.read_config()
        except (ValueError, OSError) as e:  # a config or metrics file that is not the run's
            message = f"the run's files cannot be read: {str(e)[:300]}"
            return {"run": run, **self.state(run), "records": [], "view_error": message}
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
            "summary": summary if isinstance(summary, dict) else None,
            "nll": _test_nll(summary),
        }
        seed = cfg.get("seed", 0)
        try:
            section = self.served_data(cfg)
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise PlaygroundError(f"the run's seed is not a whole number: {seed!r}"[:80])
            data = self._data.get(run)
            if data is None:  # the data a run was trained on does not change: read it once
                data = self._data[run] = preview(section, seed)
        except PlaygroundError as e:  # the user's file went away: the run's numbers stay
            return {**shown, "view_error": str(e)}
        last = directory.checkpoint_path(LAST)
        key = (last.stat().st_mtime_ns if last.is_file() else None, len(records))
        cached = self._cache.get(run)
        if cached is None or cached[0] != key:
            model_view = self._model_view(path, data["box"]) if key[0] is not None else {}
            cached = (key, model_view)
            self._cache[run] = cached
        return {
            **shown,
            "config": {"model": cfg["model"], "data": section["name"], "train": cfg["train"]},
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
            "density": {"n": n, "values": json_rounded(dens)},
            "samples": json_rounded(samples),
            "stages": [
                {
                    "title": title,
                    "lines": [json_rounded(line) for line in h.split(40)],
                }
                for title, h in stages
            ],
        }
