"""Collecting a run's files into a :class:`RunReport` and rendering the page (see the package
docstring)."""

from __future__ import annotations

import base64
import datetime
import html
import platform
import shlex
import sys
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from flowforge.config import ConfigError
from flowforge.objectives.results import Evaluation, Measure, read_evaluation
from flowforge.report.yardstick import Yardstick, yardstick_view
from flowforge.run_files import METRICS, PLOTS, SUMMARY, atomic_write_text
from flowforge.runs.directory import RunDirectory
from flowforge.runs.figures import draw_missing_figures
from flowforge.version import __version__

__all__ = ["RunReport", "collect_run", "render_report", "write_report"]

# the order figures appear in, and what each shows
CAPTIONS = {
    "data": "The test data.",
    "density": "The learned density (one panel per context for a conditional flow).",
    "samples": "Samples of the trained model beside the test data.",
    "latent": "The test data mapped to latent space; the base density's 1, 2, 3 sd circles.",
    "layers": "A grid over the data, pushed layer by layer from data space to latent space.",
    "fit": "The target density beside the fitted q: its density and a histogram of samples.",
    "pairs": (
        "A corner plot: test data below the diagonal, samples of the model above it, both "
        "histograms on the diagonal; up to 4 dimensions, those most correlated with the others "
        "in standardised units; a conditional run's points coloured by their context."
    ),
    "marginals": (
        "The marginal of each dimension, test data (filled) vs samples (line); each panel says "
        "how many points fall outside its range."
    ),
    "curves": "Training loss and validation metric (with standard errors) against the step.",
}
COLUMNS = ["objective", "model", "data", "steps", "parameters", "train_seconds"]
# summary keys the page shows in sections of their own, not in the summary table
SHOWN_APART = ("yardstick", "headline", "nll", "measures")
# why a run stopped (``summary["stopped"]``), in words
STOPPED = {
    "finished": "it ran all its steps",
    "early_stop": "early stopping: the validation NLL stopped improving",
    "time_budget": "its time budget ran out",
    "signal": "it was interrupted (a signal); the last checkpoint was kept",
}


@dataclass
class Figure:
    name: str
    caption: str
    data_uri: str
    svg: str | None  # a relative link to the SVG beside the page, when there is one


@dataclass
class RunReport:
    """What the page shows of one run."""

    path: Path
    name: str
    summary: dict[str, Any]
    config_text: str
    records: list[dict[str, Any]]
    figures: list[Figure]
    commands: list[str]
    trained_with: str | None
    results: Evaluation | None = None
    metric_keys: list[str] = field(default_factory=list)

    @property
    def headline(self) -> Measure | None:
        """The measure the run is judged by (:mod:`flowforge.objectives.results`)."""
        return None if self.results is None else self.results.headline

    @property
    def yardstick(self) -> Yardstick | None:
        """The summary's yardstick block as the page shows it."""
        return yardstick_view(self.summary.get("yardstick"))

    @property
    def names(self) -> dict[str, list[str]]:
        """The data's feature and context names (``summary["features"]``, ``["context"]``)."""
        out = {}
        for key in ("features", "context"):
            value = self.summary.get(key)
            if isinstance(value, list) and value:
                out[key] = [str(v) for v in value]
        return out

    @property
    def stopped(self) -> str | None:
        """Why the run stopped, in words (``summary["stopped"]``)."""
        why = self.summary.get("stopped")
        return None if why is None else STOPPED.get(str(why), str(why))


def _versions() -> dict[str, str]:
    out = {"flowforge": __version__, "python": platform.python_version()}
    for pkg in ("torch", "numpy", "matplotlib", "jinja2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    out["platform"] = platform.platform()
    return out


def _commands(run: RunDirectory, records: list[dict[str, Any]]) -> list[str]:
    """The commands that made the run: the training command its config reproduces, then one
    per resume recorded in its metrics."""
    path = shlex.quote(str(run.path))
    config = f"{path}/{run.config_file.name}"
    out = [f"flowforge train {config}    # the resolved config (a new directory)"]
    for r in records:
        if r.get("event") == "resume":
            sets = "".join(f" --set {shlex.quote(str(s))}" for s in r.get("overrides") or [])
            out.append(f"flowforge train --resume {path}{sets}    # at step {r.get('step')}")
    return out


def _trained_with(run: RunDirectory) -> str | None:
    """The flowforge version in the run's last checkpoint."""
    from flowforge.train.checkpoint import load_checkpoint

    for name in ("last", "best"):
        try:
            payload = load_checkpoint(run.model_checkpoint(name))
        except Exception:  # a report never fails on a checkpoint it cannot read
            continue
        v = payload.get("version")
        return None if v is None else str(v)
    return None


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is a regular file inside the (resolved) folder ``root``, symlinks
    followed: a figure linked from elsewhere (``plots/x.png -> /etc/passwd``) is not the run's
    and is never inlined into a page."""
    return path.is_file() and path.resolve().is_relative_to(root)


def collect_run(path: str | Path, page_dir: Path | None = None) -> RunReport:
    """A run directory's report; figures are read from ``plots/`` (PNG inlined, SVG linked
    relative to ``page_dir``, the folder the page is written to)."""
    run = RunDirectory.open(path)
    summary = run.read_summary() or {}
    records = run.read_metrics()
    figures = []
    root = run.path.resolve()
    names = [p.stem for p in sorted(run.plots.glob("*.png")) if _inside(p, root)]
    order = [n for n in CAPTIONS if n in names] + [n for n in names if n not in CAPTIONS]
    for name in order:
        png = run.plots / f"{name}.png"
        uri = "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode()
        svg = run.plots / f"{name}.svg"
        link = None
        if _inside(svg, root) and page_dir is not None:
            try:
                link = svg.resolve().relative_to(page_dir.resolve()).as_posix()
            except ValueError:
                link = svg.resolve().as_uri()
        figures.append(Figure(name, CAPTIONS.get(name, name), uri, link))
    keys = sorted({k for r in records if "event" not in r for k in r if k != "step"})
    return RunReport(
        path=run.path,
        name=str(summary.get("name") or run.path.name),
        summary=summary,
        config_text=run.config_file.read_text(),
        records=[r for r in records if "event" not in r],
        figures=figures,
        commands=_commands(run, records),
        trained_with=_trained_with(run),
        results=read_evaluation(summary),
        metric_keys=keys,
    )


def fmt(value: Any) -> str:
    """A value for the page: integers as they are, floats to 6 significant digits, lists
    joined by commas."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def fixed(value: Any) -> str:
    """An NLL for the yardstick table: three decimals (``—`` when missing)."""
    return "—" if value is None else f"{value:.3f}"


def _environment() -> Any:
    try:
        import jinja2
    except ImportError:
        raise ConfigError(
            "flowforge report needs Jinja2 (the report extra): pip install 'flowforge[report]'"
        ) from None
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("flowforge.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["fixed"] = fixed
    return env


def render_report(runs: list[RunReport], title: str | None = None) -> str:
    """The page's HTML for one or several runs."""
    if not runs:
        raise ConfigError("report: give at least one run directory")
    template = _environment().get_template("report.html.j2")
    columns = COLUMNS + sorted(
        {k for r in runs for k in ("entropy", "gap") if r.summary.get(k) is not None},
        reverse=True,
    )
    return template.render(
        title=title or (runs[0].name if len(runs) == 1 else f"{len(runs)} runs compared"),
        runs=runs,
        columns=columns,
        yardsticks=any(r.yardstick is not None for r in runs),
        shown_apart=SHOWN_APART,
        versions=_versions(),
        command="flowforge report " + " ".join(shlex.quote(str(r.path)) for r in runs),
        written=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        argv=html.escape(" ".join(sys.argv)),
        files={"summary": SUMMARY, "figures": f"{PLOTS}/", "metrics": METRICS},
    )


def write_report(
    paths: list[str | Path], out: str | Path | None = None, draw: bool = False
) -> Path:
    """Writes the page of the runs at ``paths`` to ``out`` (default: ``RUN/report.html`` for
    one run, ``report.html`` here for several); returns its path. ``draw``: first draw the
    figures of the runs that have none (:func:`~flowforge.runs.figures.draw_missing_figures`),
    as ``flowforge report`` does unless ``--no-draw``."""
    if not paths:
        raise ConfigError("report: give at least one run directory")
    if draw:
        draw_missing_figures(paths)
    if out is None:
        out = Path(paths[0]) / "report.html" if len(paths) == 1 else Path("report.html")
    out = Path(out)
    if out.suffix != ".html":
        raise ConfigError(f"--out: the page should be an .html file, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = [collect_run(p, out.parent) for p in paths]
    atomic_write_text(out, render_report(runs))
    out.chmod(0o644)  # a page to share, not a private temporary file
    return out
