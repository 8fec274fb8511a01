"""Run records and the paper-protocol table generated from them (issue 27: results from
records, not by hand).

A record is a small folder under ``records/``: a run's ``config.yaml``, ``metrics.jsonl`` and
``summary.json`` (once it finished; never checkpoints), and ``record.yaml`` with what the run
is measured against: the paper, its number and unit, the command that runs (or resumes) it,
and the threads it trained with. The table in ``docs/results.md`` (between the
``records:begin`` and ``records:end`` comments) and the curves in ``docs/images/records/``
are written from the records alone:

    python scripts/records.py add RUN_DIR --paper "Dinh et al. 2014" --value 4.36 \\
        --unit bits/dim --command "flowforge train --resume runs/nice"   # or refresh
    python scripts/records.py tables           # writes the table and the curves
    python scripts/records.py tables --check   # exit 1 when the docs differ (a test runs it)

Each row: the paper's number, ours (test split when the run finished, else the best
validation so far, marked as such), the gap, the budget reached (steps of the configured
total, CPU-hours = training wall-clock x threads) and whether the paper's number is reached
(within 1 %).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from flowforge.runs import RunDirectory

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "records"
DOCS = ROOT / "docs" / "results.md"
CURVES = ROOT / "docs" / "images" / "records"
BEGIN, END = "<!-- records:begin -->", "<!-- records:end -->"
# unit -> (the summary's and metrics' key, decimals); "logit-space nats": the NLL of an image
# flow's logit-space variable (the MAF paper's MNIST tables print its negative); "nats (IWAE
# bound)": a VAE's test NLL bound, whose runs validate the looser -ELBO while in progress
UNITS = {
    "nats": ("nll", 3),
    "bits/dim": ("bpd", 3),
    "logit-space nats": ("logit_nll", 1),
    "nats (IWAE bound)": ("nll", 2),
}
#: the validation key of a unit whose runs validate another number than they test
VALIDATION = {"nats (IWAE bound)": ("neg_elbo", "-ELBO, an upper bound looser than the IWAE's")}
FIELDS = ("title", "paper", "value", "unit", "command", "threads")


def read_record(folder: Path) -> dict[str, Any]:
    """A record's files as one dict: ``record`` (record.yaml), ``config``, ``metrics``
    (evaluation records, in order), ``summary`` (or ``None``)."""
    meta = yaml.safe_load((folder / "record.yaml").read_text())
    missing = [k for k in FIELDS if k not in meta]
    if missing or meta["unit"] not in UNITS:
        raise SystemExit(f"error: {folder}/record.yaml: needs {FIELDS} with unit in {list(UNITS)}")
    files = RunDirectory(folder)  # a run's record files, read as the run's own
    metrics = [r for r in files.read_metrics() if "event" not in r and "elapsed" in r]
    return {
        "name": folder.name,
        "record": meta,
        "config": files.read_config(),
        "metrics": metrics,
        "summary": files.read_summary(),
    }


def ours(rec: dict[str, Any]) -> tuple[float, float, str]:
    """Our number in the record's unit, its standard error, and which split it is."""
    key = UNITS[rec["record"]["unit"]][0]
    s = rec["summary"]
    if s is not None:
        return s[f"test_{key}"], s.get(f"test_{key}_stderr", s.get("test_stderr", 0.0)), "test"
    if not rec["metrics"]:
        raise SystemExit(f"error: record {rec['name']}: no evaluation yet")
    key, what = validation_key(rec["record"]["unit"])
    best = min(rec["metrics"], key=lambda r: r[f"val_{key}"])
    se = best.get(f"val_{key}_stderr", best["val_stderr"])
    if key == "bpd":  # val_stderr is in nats per example
        se = se * best["val_bpd"] / best["val_nll"]
    return best[f"val_{key}"], se, f"validation{what} (best of step {best['step']:,}), in progress"


def validation_key(unit: str) -> tuple[str, str]:
    """The metrics key a run in progress is read from, and what to call it (after
    "validation")."""
    if unit in VALIDATION:
        key, what = VALIDATION[unit]
        return key, f" {what}"
    return UNITS[unit][0], ""


def row(rec: dict[str, Any]) -> str:
    meta, cfg = rec["record"], rec["config"]
    value, se, split = ours(rec)
    digits = UNITS[meta["unit"]][1]
    last = rec["metrics"][-1] if rec["metrics"] else {"step": 0, "elapsed": 0.0}
    hours = last["elapsed"] * meta["threads"] / 3600
    total = cfg["train"]["steps"]
    gap = value - meta["value"]
    reached = "**reached**" if gap <= 0.01 * abs(meta["value"]) else "not yet"
    if reached != "not yet" and split != "test":  # the paper's number is a test number
        reached = "on validation so far; test pending"
    cells = [
        meta["title"],
        meta["paper"],
        f"{meta['value']:.{digits}f}",
        f"{value:.{digits}f} ± {se:.{digits}f} ({split})",
        f"{gap:+.{digits}f}",
        f"{last['step']:,} of {total:,} steps ({100 * last['step'] / total:.1f} %), "
        f"{hours:.1f} CPU-h",
        reached,
        f"`{meta['command']}`",
        f"[curve](images/records/{rec['name']}.png)",
    ]
    return "| " + " | ".join(cells) + " |"


def table(records: list[dict[str, Any]]) -> str:
    head = (
        "| model and data | paper | paper's number | ours | gap | budget so far | "
        "paper's number | command | curve |\n|---|---|---:|---|---:|---|---|---|---|\n"
    )
    return head + "\n".join(row(r) for r in records) + "\n"


def all_records() -> list[dict[str, Any]]:
    return [read_record(f) for f in sorted(RECORDS.iterdir()) if (f / "record.yaml").is_file()]


def docs_block(text: str) -> tuple[int, int]:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"error: {DOCS} has no {BEGIN} ... {END} block")
    return start + len(BEGIN), end


def curve(rec: dict[str, Any], path: Path) -> None:
    """Validation (and the test number, once finished) against CPU-hours, with the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = rec["record"]
    key = validation_key(meta["unit"])[0]
    hours = [r["elapsed"] * meta["threads"] / 3600 for r in rec["metrics"]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(hours, [r[f"val_{key}"] for r in rec["metrics"]], ".-", label="validation")
    ax.axhline(meta["value"], color="k", ls="--", label=f"{meta['paper']}: {meta['value']}")
    if rec["summary"] is not None:
        value, _, _ = ours(rec)
        ax.plot(hours[-1:], [value], "o", color="C3", label="test")
    ax.set(xlabel="CPU-hours of training", ylabel=meta["unit"], title=meta["title"])
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def tables(check: bool) -> int:
    records = all_records()
    text = DOCS.read_text()
    start, end = docs_block(text)
    block = "\n" + table(records)
    if check:
        if text[start:end] != block:
            print(f"{DOCS}: the records table is stale: run python scripts/records.py tables")
            return 1
        return 0
    DOCS.write_text(text[:start] + block + text[end:])
    for rec in records:
        curve(rec, CURVES / f"{rec['name']}.png")
    print(f"wrote the table of {len(records)} records to {DOCS} and their curves to {CURVES}")
    return 0


def add(run: Path, meta: dict[str, Any]) -> int:
    """Copies a run's record files (never checkpoints) to ``records/<run name>/``."""
    folder = RECORDS / run.name
    folder.mkdir(parents=True, exist_ok=True)
    files = RunDirectory(run)
    for source in (files.config_file, files.metrics_file, files.summary_file):
        if source.is_file():
            shutil.copyfile(source, folder / source.name)
    old = folder / "record.yaml"
    merged = {**(yaml.safe_load(old.read_text()) if old.is_file() else {}), **meta}
    old.write_text(yaml.safe_dump(merged, sort_keys=False))
    read_record(folder)  # complete and readable
    print(f"recorded {run} in {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="copy a run's record files into records/")
    a.add_argument("run", type=Path)
    for field in FIELDS:
        a.add_argument(f"--{field}", type=int if field == "threads" else str)
    t = sub.add_parser("tables", help="write (or --check) the docs table and curves")
    t.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "tables":
        return tables(args.check)
    meta = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    if "value" in meta:
        meta["value"] = float(meta["value"])
    return add(args.run, meta)


if __name__ == "__main__":
    sys.exit(main())
