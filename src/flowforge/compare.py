r"""``flowforge compare CONFIG``: several models, any objective, on the same data and budget.

A comparison config names one data set (and its splits, whose ``data.seed`` is fixed so every
run sees the same ones), one training budget (``train.steps`` and/or ``train.max_seconds``,
shared), the seeds (at least 3) and a list of models, each a run-config fragment
(``objective``, ``model``, and ``train`` keys other than the budget)::

    name: compare-8gaussians
    seeds: [0, 1, 2]
    samples: 2000            # points for the sample-quality measures and the throughput
    data: {name: 8gaussians, n_train: 20000, n_val: 2000, n_test: 5000, seed: 0}
    train: {steps: 2000, batch_size: 256, eval_every: 250}
    models:
      - {label: realnvp, objective: {name: mle}, model: {name: realnvp, couplings: 4}}
      - {label: wgan-gp, objective: {name: wgan_gp}, model: {name: gan}, train: {lr: 1e-4}}

Every (model, seed) is a full run in ``<output>/runs/``; ``<output>/`` gets ``report.md`` and
``report.json`` (per model: the test NLL where there is one, and what kind: exact for flows and
NADE, the IWAE bound with its ``k`` for VAEs, AIS for the RBM with its error bar, the
mean-field bound with AIS's log Z for the DBM, none for GANs; the sample-quality measures of
:mod:`flowforge.metrics` on the test split; training time; sampling throughput; which latent
inference the model has; mean and standard deviation over the seeds, and how many runs
diverged; on MNIST digits also the Fréchet distance in the
features of flowforge's shipped MNIST classifier and the classes it finds among the samples,
with the classifier's test accuracies), ``samples.png`` (seed 0's samples beside the
data) and ``curves.png`` (validation curves). Samples are what each model's ``sample``
returns: for the VAE and the RBM on binary data the Bernoulli means, not binary draws, which
the sample measures then compare with binary test images. A run that diverges
(:class:`~flowforge.train.trainer.TrainingDiverged`) is reported as diverged, not dropped.

Runs are kept between invocations, so a long comparison survives an interruption: running the
same command again reuses every finished run (its ``summary.json``) and scores it again,
resumes an interrupted one from its ``last.pt`` and starts the rest. A run directory whose
config differs from the comparison's (another budget, say) is an error, never reused; give
another ``--out`` or remove it.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from flowforge.config import (
    ConfigError,
    ObjectiveConfig,
    RunConfig,
    _brief,
    check_name,
    parse_config,
    read_yaml,
)
from flowforge.metrics import DIGIT_IMAGE_DATA, load_digit_classifier, sample_quality
from flowforge.objectives.results import read_evaluation
from flowforge.run_files import LAST
from flowforge.runs import load, train_run
from flowforge.runs.build import load_data
from flowforge.runs.directory import RunDirectory
from flowforge.runs.training import RunResult
from flowforge.train.trainer import TrainingDiverged, TrainingInterrupted

__all__ = ["Comparison", "load_comparison", "run_comparison"]

BUDGET = ("steps", "max_seconds")
DEFAULT_OBJECTIVE = ObjectiveConfig.name  # an entry without ``objective`` gets the config's
NUMBERS = ("headline_value", "test_nll", "mmd", "swd", "modes_covered", "modes_off_manifold", "fd")
NUMBERS += ("classes_covered", "classes_largest_share", "steps", "train_seconds")
NUMBERS += ("samples_per_second",)


@dataclass
class Comparison:
    """A validated comparison config (see the module docstring)."""

    name: str
    data: dict[str, Any]
    train: dict[str, Any]
    seeds: list[int]
    models: list[dict[str, Any]]
    samples: int = 2000
    output_dir: str = "runs/compare"
    raw: dict[str, Any] = field(default_factory=dict)

    def run_config(self, entry: dict[str, Any], seed: int, runs_dir: Path) -> dict[str, Any]:
        """The full run config of model ``entry`` at ``seed``."""
        train = {**self.train, **entry.get("train", {})}
        return {
            "name": f"{entry['label']}-seed{seed}",
            "seed": seed,
            "output_dir": str(runs_dir),
            "objective": entry.get("objective", {"name": DEFAULT_OBJECTIVE}),
            "data": self.data,
            "model": entry["model"],
            "train": train,
        }


def load_comparison(path: str | Path, overrides: dict[str, Any] | None = None) -> Comparison:
    """Reads and validates a comparison config like a run config (the bounded YAML reading
    of :func:`~flowforge.config.read_yaml`, then every key's type and range); every run
    config is checked before any training starts. The name (and every label, part of a
    run's name) is one plain directory name, so nothing is written outside ``output_dir``."""
    path = Path(path)
    raw = read_yaml(path)
    raw.update(overrides or {})
    unknown = set(raw) - set(KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown, key=str)}; allowed: {KEYS}")
    name = raw.get("name", path.stem)
    check_name(name, "name")
    seeds = raw.get("seeds", [0, 1, 2])
    if not isinstance(seeds, list) or not all(_is_int(s) and 0 <= s < 2**32 for s in seeds):
        raise ConfigError(f"seeds: should be a list of integers in [0, 2**32), got {_brief(seeds)}")
    if len(seeds) < 3 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds: give at least 3 distinct seeds, got {seeds}")
    samples = raw.get("samples", 2000)
    if not (_is_int(samples) and 0 < samples <= MAX_SAMPLES):
        raise ConfigError(
            f"samples: should be an integer in [1, {MAX_SAMPLES:,}], got {_brief(samples)}"
        )
    output_dir = raw.get("output_dir", "runs/compare")
    if not isinstance(output_dir, str) or not output_dir:
        raise ConfigError(f"output_dir: should be a path, got {_brief(output_dir)}")
    data = _section(raw, "data", "data")
    if not isinstance(data.get("name"), str):
        raise ConfigError(f"data: should name a data set (data.name), got {_brief(data)}")
    data.setdefault("seed", 0)  # the same splits for every seed
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise ConfigError(f"models: should be a non-empty list of mappings, got {_brief(models)}")
    models = [_entry(m, i) for i, m in enumerate(models)]
    labels = [m["label"] for m in models]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"models: each label should be unique, got {labels}")
    cmp = Comparison(
        name=name,
        data=data,
        train=_section(raw, "train", "train"),
        seeds=seeds,
        models=models,
        samples=samples,
        output_dir=output_dir,
        raw=raw,
    )
    for m in models:
        parse_config(cmp.run_config(m, seeds[0], Path(cmp.output_dir)))
    return cmp


KEYS = ("name", "data", "train", "seeds", "models", "samples", "output_dir")
ENTRY_KEYS = ("label", "objective", "model", "train")
#: most samples a model draws for the sample measures (their MMD is quadratic in the count)
MAX_SAMPLES = 100_000


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _section(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """``raw[key]``, a mapping (a copy; absent or empty: ``{}``)."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: should be a mapping, got {_brief(value)}")
    return dict(value)


def _entry(m: Any, i: int) -> dict[str, Any]:
    """One ``models`` entry, checked: a mapping with a plain ``label`` (it names the runs), a
    ``model`` mapping that names a recipe, and ``objective``/``train`` mappings without the
    budget; returned without its empty (``null``) keys."""
    if not isinstance(m, dict):
        raise ConfigError(f"models[{i}]: should be a mapping with a label, got {_brief(m)}")
    check_name(m.get("label"), f"models[{i}].label")
    where = f"models[{m['label']}]"
    unknown = set(m) - set(ENTRY_KEYS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown keys {sorted(unknown, key=str)}; allowed: {ENTRY_KEYS}"
        )
    for key in ("objective", "model", "train"):
        _section(m, key, f"{where}.{key}")
    if not isinstance((m.get("model") or {}).get("name"), str):
        raise ConfigError(f"{where}.model: should name a model (model.name)")
    if set(m.get("train") or {}) & set(BUDGET):
        raise ConfigError(f"{where}: the budget ({BUDGET}) is shared")
    return {k: v for k, v in m.items() if v is not None}


def latent_inference(model: nn.Module) -> str:
    """What maps data to latents, as the model declares it (its ``latent_inference``: a
    flow's exact inverse, a VAE's encoder, ...); ``"none"`` for a model that declares none
    (GANs, NADE)."""
    return str(getattr(model, "latent_inference", "none"))


def nll_scores(summary: dict[str, Any]) -> dict[str, Any]:
    """A run's NLL as the comparison tabulates it, from its typed results
    (:func:`~flowforge.objectives.results.read_evaluation`): ``test_nll``, its standard
    error, and ``nll_kind``, what the number is (``"exact"``, ``"IWAE bound, k=..."``, or
    ``"none"`` for a model without a likelihood)."""
    results = read_evaluation(summary)
    nll = None if results is None else results.nll
    if nll is None:
        return {"test_nll": None, "test_nll_stderr": None, "nll_kind": "none"}
    return {"test_nll": nll.value, "test_nll_stderr": nll.stderr, "nll_kind": nll.description}


def headline_scores(summary: dict[str, Any]) -> dict[str, Any]:
    """A run's headline measure as the comparison tabulates it: ``headline`` (its name, unit,
    kind and how), ``headline_value`` and ``headline_stderr`` (``None`` without results)."""
    results = read_evaluation(summary)
    if results is None:
        return {"headline": None, "headline_value": None, "headline_stderr": None}
    h = results.headline.to_dict()
    value, stderr = h.pop("value"), h.pop("stderr")
    return {"headline": h, "headline_value": value, "headline_stderr": stderr}


def nll_kind(summary: dict[str, Any]) -> str:
    """What the summary's NLL is (:func:`nll_scores`)."""
    return str(nll_scores(summary)["nll_kind"])


def _score_run(
    run_dir: Path, test: torch.Tensor, data_name: str, n: int
) -> tuple[dict[str, Any], torch.Tensor]:
    model = load(run_dir)
    torch.manual_seed(0)
    model.sample(min(n, 16))  # type: ignore[operator]  # warm-up: not timed
    start = time.perf_counter()
    samples = model.sample(n).reshape(n, -1).cpu()  # type: ignore[operator]
    seconds = time.perf_counter() - start
    reference = test[:n].reshape(min(n, len(test)), -1)
    quality = sample_quality(samples, reference, data_name)
    out = {
        **quality,
        "samples_per_second": n / max(seconds, 1e-9),
        "latent_inference": latent_inference(model),
    }
    return out, samples


def train_or_reuse(cfg: RunConfig, progress: bool) -> RunResult:
    """The finished run ``output_dir/name`` of this very config, resumed when it was
    interrupted, or trained now."""
    path = Path(cfg.output_dir) / cfg.name
    if path.is_dir() and not RunDirectory(path).config_file.exists():
        _remove_unstarted(RunDirectory(path))
    if not path.exists():
        return train_run(cfg, progress=progress, plots=False)
    directory = RunDirectory.open(path)
    # parsed again, so that options added to flowforge since (with their defaults) compare equal
    if parse_config(directory.read_config(), check_data=False).to_dict() != cfg.to_dict():
        raise ConfigError(
            f"{path} holds a run of another config than this comparison's; remove it or "
            f"give --out another directory"
        )
    summary = directory.read_summary()
    if summary is not None:
        return RunResult(path, summary)
    if not directory.checkpoint_path(LAST).is_file():  # killed before its first checkpoint
        shutil.rmtree(path)
        return train_run(cfg, progress=progress, plots=False)
    return train_run(cfg, resume=path, progress=progress, plots=False)


def _remove_unstarted(directory: RunDirectory) -> None:
    """Removes a member's run folder that a kill left before its ``config.yaml`` was written
    (it is written before the first step, so nothing was trained in it); under its lock, so a
    process that is starting that run right now keeps it."""
    with directory.lock():
        if not directory.config_file.exists():
            shutil.rmtree(directory.path)


def run_comparison(
    cmp: Comparison, output: str | Path | None = None, progress: bool = False
) -> Path:
    """Trains every model at every seed and writes the report; returns its directory."""
    out = Path(output or Path(cmp.output_dir) / cmp.name)
    runs_dir = out / "runs"
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.yaml").write_text(yaml.safe_dump(cmp.raw, sort_keys=False))
    splits = load_data(parse_config(cmp.run_config(cmp.models[0], cmp.seeds[0], runs_dir)))
    assert splits is not None
    results: list[dict[str, Any]] = []
    samples: dict[str, torch.Tensor] = {}
    for entry in cmp.models:
        for seed in cmp.seeds:
            cfg = parse_config(cmp.run_config(entry, seed, runs_dir))
            record: dict[str, Any] = {"label": entry["label"], "seed": seed}
            try:
                result = train_or_reuse(cfg, progress)
            except TrainingInterrupted as e:
                raise TrainingInterrupted(
                    f"{str(e).split('. Resume with')[0]}. Continue the comparison with the same "
                    f"command: its finished runs are reused and this one resumes"
                ) from None
            except TrainingDiverged as e:
                record.update(status="diverged", error=str(e).splitlines()[0])
                results.append(record)
                continue
            s = result.summary
            scores, x = _score_run(result.run_dir, splits.test, cmp.data["name"], cmp.samples)
            if seed == cmp.seeds[0]:
                samples[entry["label"]] = x
            record.update(
                status="ok",
                run_dir=str(result.run_dir),
                objective=s["objective"],
                model=s["model"],
                steps=s["steps"],
                train_seconds=s["train_seconds"],
                **headline_scores(s),
                **nll_scores(s),
                entropy=s.get("entropy"),
                **{k: s[k] for k in ("test_nll_low", "test_nll_high") if k in s},
                **scores,
            )
            results.append(record)
    table = summarise(cmp, results)
    # a known density's test-set entropy: the NLL a perfect model would reach
    entropy = next((r["entropy"] for r in results if r.get("entropy") is not None), None)
    report = {"name": cmp.name, "data": cmp.data, "train": cmp.train, "seeds": cmp.seeds}
    report.update(samples=cmp.samples, entropy=entropy, models=table, runs=results)
    if cmp.data["name"] in DIGIT_IMAGE_DATA:
        report["digit_classifier"] = digit_classifier_facts()
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.md").write_text(markdown(cmp, table, entropy))
    from flowforge.viz.compare import plot_curves, plot_samples

    plot_samples(samples, splits.test[: cmp.samples], out / "samples.png")
    curves: dict[str, list[list[dict[str, Any]]]] = {}
    for r in results:  # each model's validation records, one list per finished seed
        finished = curves.setdefault(r["label"], [])
        if r["status"] == "ok":
            finished.append(RunDirectory(r["run_dir"]).read_metrics())
    plot_curves(curves, out / "curves.png")
    return out


def _spread(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "n": len(values)}


def summarise(cmp: Comparison, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model: mean and sd over its seeds that did not diverge."""
    rows = []
    for entry in cmp.models:
        mine = [r for r in results if r["label"] == entry["label"]]
        ok = [r for r in mine if r["status"] == "ok"]
        row: dict[str, Any] = {
            "label": entry["label"],
            "objective": entry.get("objective", {}).get("name", DEFAULT_OBJECTIVE),
            "model": entry["model"]["name"],
            "runs": len(mine),
            "diverged": len(mine) - len(ok),
        }
        if ok:
            first = ok[0]
            row.update({k: first[k] for k in ("nll_kind", "latent_inference")})
            row["modes"] = first.get("modes_modes")
            row["classes"] = first.get("classes_classes")
            row["nll_stderr_per_run"] = [r.get("test_nll_stderr") for r in ok]
            row["headline"] = first.get("headline")
            row["headline_stderr_per_run"] = [r.get("headline_stderr") for r in ok]
            for key in NUMBERS:
                row[key] = _spread([r.get(key) for r in ok])
        rows.append(row)
    return rows


def _headline_cell(row: dict[str, Any]) -> str:
    """``"test NLL 1.42 ± 0.01 nats (se 0.02; exact)"``: the headline's mean ± sd over seeds,
    the mean per-run standard error and its kind."""
    h = row.get("headline")
    if not h:
        return "none"
    se = [v for v in row.get("headline_stderr_per_run", []) if v is not None]
    unit = f" {h['unit']}" if h.get("unit") else ""
    per_run = f"se {statistics.fmean(se):.2g}; " if se else ""
    return f"{h['name']} {_cell(row['headline_value'], 4)}{unit} ({per_run}{h['how'] or h['kind']})"


def _cell(spread: dict[str, float] | None, digits: int = 3) -> str:
    if spread is None:
        return "none"
    return f"{spread['mean']:.{digits}g} ± {spread['sd']:.2g}"


def digit_classifier_facts() -> dict[str, Any]:
    """What the FD's features are: the shipped MNIST classifier's size and test accuracies."""
    _, meta = load_digit_classifier()
    keys = ("architecture", "features", "parameters", "test_accuracy_grey")
    return {k: meta[k] for k in (*keys, "test_accuracy_binarized", "test_images", "command")}


def markdown(cmp: Comparison, rows: list[dict[str, Any]], entropy: float | None = None) -> str:
    """The report's table (mean ± sd over seeds); the image columns (FD, classes covered)
    only for MNIST digits (:data:`~flowforge.metrics.DIGIT_IMAGE_DATA`); ``entropy``: a known
    density's true test NLL."""
    budget = ", ".join(f"{k} {cmp.train[k]}" for k in BUDGET if cmp.train.get(k))
    digits = cmp.data["name"] in DIGIT_IMAGE_DATA
    measures = (
        f"Sample measures on {cmp.samples} samples vs as many test points: MMD^2 (Gaussian "
        "kernel, median-heuristic bandwidth on the test points), sliced 2-Wasserstein (SWD)."
    )
    if digits:
        c = digit_classifier_facts()
        measures += (
            f" FD: the Fréchet distance (Heusel et al. 2017) between Gaussians fitted to the "
            f"{c['features']} penultimate-layer features of flowforge's shipped MNIST classifier "
            f"({c['parameters']:,} parameters; test accuracy {c['test_accuracy_grey']:.2%} on "
            f"grey and {c['test_accuracy_binarized']:.2%} on binarized test images) of the "
            "samples and of the test points; classes covered: digits the classifier predicts "
            "for at least a quarter of their fair share of the samples (of 10), and the largest "
            "class's share of the samples."
        )
    image_header = ["FD", "classes covered", "largest class"] if digits else []
    header = ["model", "objective", "headline", "test NLL (nats)", "NLL kind", "per-run se"]
    header += ["MMD^2", "SWD"]
    header += ["modes covered", "off-manifold", *image_header, "steps", "train s", "samples/s"]
    header += ["latent inference", "diverged"]
    lines = [
        f"# {cmp.name}",
        "",
        f"Data: `{cmp.data['name']}` (splits {cmp.data.get('n_train')}/{cmp.data.get('n_val')}/"
        f"{cmp.data.get('n_test')}, data seed {cmp.data['seed']}); budget: {budget}, batch "
        f"{cmp.train.get('batch_size')}; seeds {cmp.seeds}. Cells: mean ± sd over seeds. "
        + measures,
        "",
        *(
            [
                f"The density is known: the true NLL of the test set (its entropy) is "
                f"{entropy:.4f} nats.",
                "",
            ]
            if entropy is not None
            else []
        ),
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for r in rows:
        if "nll_kind" not in r:
            blank = [""] * (len(header) - 4)
            cells = [r["label"], r["objective"], "diverged", *blank, f"{r['diverged']}/{r['runs']}"]
            lines.append("| " + " | ".join(cells) + " |")
            continue
        modes = "n/a" if r["modes"] is None else f"{_cell(r['modes_covered'])} of {r['modes']}"
        off = "n/a" if r["modes"] is None else _cell(r["modes_off_manifold"], 2)
        se = [v for v in r["nll_stderr_per_run"] if v is not None]
        image_cells = []
        if digits:
            image_cells = [
                _cell(r["fd"]),
                f"{_cell(r['classes_covered'])} of {r['classes']}",
                _cell(r["classes_largest_share"], 2),
            ]
        cells = [
            r["label"],
            r["objective"],
            _headline_cell(r),
            _cell(r["test_nll"], 4),
            r["nll_kind"],
            f"{statistics.fmean(se):.2g}" if se else "none",
            _cell(r["mmd"], 2),
            _cell(r["swd"], 2),
            modes,
            off,
            *image_cells,
            _cell(r["steps"]),
            _cell(r["train_seconds"]),
            _cell(r["samples_per_second"], 2),
            r["latent_inference"],
            f"{r['diverged']}/{r['runs']}",
        ]
        # a pipe inside a cell (q(z|x)) is escaped
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += [
        "",
        "headline: each objective's own measure (mean ± sd over seeds), its unit, the mean "
        "per-run standard error and what the number is (exact, a bound, an estimate).",
        "",
        "per-run se: the mean over seeds of each run's standard error of its test NLL (for AIS "
        "combined with log Z's over the chains; report.json has each run's 3-sigma AIS "
        "interval as test_nll_low/high).",
        "",
        "Figures: `samples.png` (seed 0), `curves.png` (validation metric per model).",
        "",
    ]
    return "\n".join(lines)
