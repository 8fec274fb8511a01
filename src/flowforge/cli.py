"""The ``flowforge`` command: it parses the command line and calls the library's verbs.

``flowforge --help`` lists the commands (train, eval, sample, interpolate, manipulate, inpaint,
fit-target, compare, report, serve, check, list), ``flowforge COMMAND --help`` their options.
Each command calls a library function (:mod:`flowforge.runs` and its modules, such as
:mod:`~flowforge.runs.sampling`; :mod:`flowforge.testing.check_table`, ...), imported inside it,
so ``--help`` and argument errors answer without loading torch. User errors (bad configs,
missing files, corrupt checkpoints, diverged runs) print one line starting with ``error:`` and
exit with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Sequence

try:  # the command's own dependencies, the `cli` extra: found here, imported where used
    _missing = next((m for m in ("yaml", "tqdm") if importlib.util.find_spec(m) is None), None)
except ImportError as e:  # tests/test_packaging.py
    _missing = e.name
if _missing:
    sys.exit(
        f"error: the flowforge command needs the cli extra ({_missing} is not installed): "
        f"pip install 'flowforge[cli]'"
    )

from flowforge.run_files import LAST  # noqa: E402  (names only: no torch, no yaml)

__all__ = ["build_parser", "main"]


def _train(a: argparse.Namespace) -> None:
    from flowforge.config import ConfigError
    from flowforge.runs import train_run
    from flowforge.runs.shorthand import option_overrides, train_config

    overrides = option_overrides(a.set, a.device, a.compile, a.time, a.threads)
    if a.accept_unidentified and not a.resume:
        raise ConfigError("--accept-unidentified goes with --resume RUN_DIR")
    if a.resume and (a.config is not None or a.data is not None):
        raise ConfigError("give CONFIG, --data FILE or --resume RUN_DIR, one of them")
    if a.resume:
        result = train_run(
            resume=a.resume,
            overrides=overrides,
            progress=not a.quiet,
            accept_unidentified=a.accept_unidentified,
        )
    else:
        columns = [c.split(",") if c else None for c in (a.context, a.features)]
        cfg = train_config(a.config, a.data, overrides, a.model, *columns, a.drop_na)
        result = train_run(cfg, progress=not a.quiet)
    _trained(result)


def _trained(result) -> None:  # noqa: ANN001  (a flowforge.runs.RunResult)
    from flowforge.runs.evaluation import summary_line
    from flowforge.train.distributed import Group

    if Group.from_environment().is_main:  # under torchrun, rank 0 reports
        print(f"{summary_line(result.summary)}\nwrote {result.run_dir}/")


def _eval(a: argparse.Namespace) -> None:
    import json

    from flowforge.runs.evaluation import evaluate_run, results_text

    results = evaluate_run(a.run, a.split, a.device)
    out = results.to_dict()
    print(json.dumps({"run": str(a.run), "split": a.split, **out}, indent=2))
    print(results_text(results, out), file=sys.stderr)


def _sample(a: argparse.Namespace) -> None:
    from flowforge.runs.sampling import write_samples

    options = a.n, a.temperature, a.seed, a.label, a.context, a.out, a.device
    print(write_samples(a.run, *options).line())


def _interpolate(a: argparse.Namespace) -> None:
    from flowforge.runs.image_grids import interpolate_run

    print(interpolate_run(a.run, a.out, a.pairs, a.steps).line())


def _manipulate(a: argparse.Namespace) -> None:
    from flowforge.runs.image_grids import manipulate_run

    print(manipulate_run(a.run, a.out, a.n, a.reference).line())


def _inpaint(a: argparse.Namespace) -> None:
    from flowforge.runs.inpaint import inpaint_run

    print(inpaint_run(a.run, a.image, a.mask, a.k, a.temperature, a.seed, a.out).line())


def _fit_target(a: argparse.Namespace) -> None:
    from flowforge.runs import train_run
    from flowforge.runs.shorthand import fit_target_run_config

    anneal = a.anneal_length if a.anneal else 0
    options = a.model, a.set, a.steps, a.batch_size, a.lr, anneal, a.seed
    _trained(train_run(fit_target_run_config(a.target, *options), progress=not a.quiet))


def _compare(a: argparse.Namespace) -> None:
    from flowforge.compare import load_comparison, run_comparison

    out = run_comparison(load_comparison(a.config), a.out, progress=not a.quiet)
    print(f"wrote {out}/report.md, report.json, samples.png, curves.png")


def _report(a: argparse.Namespace) -> None:
    from flowforge.report import write_report
    from flowforge.runs.directory import output_path

    print(f"wrote {write_report(a.runs, output_path(a.out), a.draw)}")


def _serve(a: argparse.Namespace) -> None:
    from flowforge.serve import serve

    limits = {} if a.max_trainings is None else {"max_trainings": a.max_trainings}
    serve(a.host, a.port, a.workspace, allow_remote=a.allow_remote, **limits)


def _check(a: argparse.Namespace) -> int:
    from flowforge.testing.check_table import check_table, matching_cases
    from flowforge.testing.stress import format_stress, stress

    found = stress(a.pattern) if a.stress else matching_cases(a.pattern)
    if not found:
        print(f"no conformance case matches {a.pattern!r}")
        return 1
    if a.stress:
        print(format_stress(found))
        return 0
    return 1 if check_table(found) else 0


def _list(a: argparse.Namespace) -> None:
    from flowforge.config import registered_names

    for kind, names in registered_names().items():
        print(f"{kind + ':':<11} " + ", ".join(names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowforge", description="Normalizing flows in PyTorch.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: object, help: str, *run: str) -> Callable[..., object]:
        """The ``add_argument`` of a new command; ``run``: the help of its run directory."""
        p = sub.add_parser(name, help=help)
        p.set_defaults(func=func)
        for what in run:
            p.add_argument("run", help=what)
        return p.add_argument

    a = command("train", _train, "train a run (any objective), or resume one")
    a("config", nargs="?", help="YAML config (default: RealNVP on the parabola)")
    a("--data", metavar="FILE", help="your own .csv/.tsv/.npy/.npz file (a sized config)")
    h = "with --data: nsf, maf or realnvp (default: nsf below 20,000 rows, else maf)"
    a("--model", help=h)
    h = "with --data: context columns, comma-separated (text ones are one-hot categories)"
    a("--context", metavar="COLS", help=h)
    h = "with --data: the columns modelled (default: every numeric one not in --context)"
    a("--features", metavar="COLS", help=h)
    h = "with --data: drop rows with missing values in the columns used (and say how many)"
    a("--drop-na", action="store_true", help=h)
    h = "wall-clock training budget (train.max_seconds; --data sizes one from the rows)"
    a("--time", type=float, metavar="SECONDS", help=h)
    a("--set", action="append", metavar="KEY=VALUE", help="override a config key")
    a("--device", help="cpu, cuda, cuda:N or auto (overrides the config)")
    a("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    h = f"with --resume: accept a {LAST} that does not record its model spec, objective "
    h += "and data fingerprint (its tensors are still checked)"
    a("--accept-unidentified", action="store_true", help=h)
    a("--quiet", action="store_true", help="no progress bar")
    compiling = sub.choices["train"].add_mutually_exclusive_group()
    h = "torch.compile the training step's loss terms (train.compile=true; default auto: when "
    h += "the run is long enough to repay the compilation)"
    compiling.add_argument("--compile", action="store_const", const="true", help=h)
    h = "never compile the training step (train.compile=false)"
    compiling.add_argument(
        "--no-compile", dest="compile", action="store_const", const="false", help=h
    )
    a("--threads", type=int, metavar="N", help="CPU threads (train.threads; 0: automatic)")

    device = "cpu, cuda, cuda:N or auto (default cpu)"
    a = command("eval", _eval, "evaluate a run's best model", "run directory")
    a("--split", choices=["test", "val", "train"], default="test")
    a("--device", help=device)

    a = command("sample", _sample, "draw samples from a run's best model", "run directory")
    a("-n", type=int, default=1000, help="number of samples")
    a("--temperature", type=float, default=1.0, help="base noise scale")
    a("--seed", type=int, default=0)
    a("--out", help="output .npy, .csv, or .png for image runs (default: in RUN)")
    h = "class to sample (class-conditional): a level name (--class Adelie) or an index"
    a("--class", dest="label", help=h)
    a("--context", help="context of every sample: comma-separated numbers, or a .npy/.csv file")
    a("--device", help=device)

    h = "latent interpolations between test images (PNG)"
    a = command("interpolate", _interpolate, h, "image run directory")
    a("--pairs", type=int, default=8, help="number of image pairs (rows)")
    a("--steps", type=int, default=8, help="images per row")
    a("--out", help="output .png (default RUN/interpolations.png)")

    h = "move test images along the thin-to-thick direction"
    a = command("manipulate", _manipulate, h, "unconditional image run directory")
    a("-n", type=int, default=8, help="test images to edit (rows)")
    a("--reference", type=int, default=2000, help="training images for the direction")
    a("--out", help="output .png (default RUN/thin_to_thick.png)")

    h = "fill masked images with a c-Glow inpainting run (PNG)"
    a = command(
        "inpaint", _inpaint, h, "run directory of a c-Glow trained on the inpainting data set"
    )
    a("--image", required=True, help="test:I,J,... or a .npy of raw pixel values")
    a("--mask", required=True, help="centre, random, half, top, ... or a .npy")
    a("-k", type=int, default=8, help="samples per image")
    a("--temperature", type=float, default=1.0, help="base noise scale")
    a("--seed", type=int, default=0)
    a("--out", help="output .png (default RUN/inpainting.png; a .json beside it)")

    a = command("fit-target", _fit_target, "variational inference: fit a flow to an energy")
    a("target", help="U1, U2, U3, U4, funnel or banana")
    a("--model", default="planar", help="recipe name (default planar)")
    h = "recipe option (KEY) or config key (section.key)"
    a("--set", action="append", metavar="KEY=VALUE", help=h)
    a("--steps", type=int, default=5000)
    a("--batch-size", type=int, default=256)
    a("--lr", type=float, default=1e-3)
    a("--anneal", action="store_true", help="beta_t = min(1, 0.01 + t/length)")
    a("--anneal-length", type=int, default=10000)
    a("--seed", type=int, default=0)
    a("--quiet", action="store_true", help="no progress bar")

    a = command("compare", _compare, "train several models on the same data and budget")
    a("config", help="comparison YAML (see configs/compare/)")
    a("--out", help="report directory (default OUTPUT_DIR/NAME)")
    a("--quiet", action="store_true", help="no progress bars")

    a = command("report", _report, "a static HTML page of one run, or comparing several")
    a("runs", nargs="+", metavar="RUN_DIR", help="run directories")
    a("--out", help="the page (default RUN_DIR/report.html, or ./report.html)")
    h = "do not draw the figures of runs that have none"
    a("--no-draw", dest="draw", action="store_false", help=h)

    a = command("serve", _serve, "the web playground: train 2-D flows and watch them")
    a("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    a("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    a("--workspace", default="runs/playground", help="where its runs are written")
    h = "allow a non-loopback --host (the playground has no authentication)"
    a("--allow-remote", action="store_true", help=h)
    h = "runs training at once (default 4; more are refused until one ends)"
    a("--max-trainings", type=int, metavar="N", help=h)

    a = command("check", _check, "run the conformance kit over every registered transform")
    a("pattern", nargs="?", help="only cases whose name contains this")
    h = "worst round-trip and log-det errors under hard parameters, float32 and float64"
    a("--stress", action="store_true", help=h)

    command("list", _list, "list models and data sets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from flowforge.allocator import tune_allocator
    from flowforge.config import ConfigError
    from flowforge.data.columns import data_warnings_as_lines
    from flowforge.train.checkpoint import CheckpointError
    from flowforge.train.trainer import TrainingDiverged, TrainingInterrupted

    # OSError: a full or read-only disk, a file that cannot be read; one line, not a traceback
    user_errors = (ConfigError, CheckpointError, TrainingDiverged, OSError)
    tune_allocator()  # fewer page faults on activation-sized tensors (flowforge.allocator)
    try:
        with data_warnings_as_lines():
            status = args.func(args) or 0  # a command returns its status; None: success
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        status = 130
    except user_errors as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        status = 2
    from flowforge.train.distributed import exit_if_distributed

    exit_if_distributed(status)  # a torchrun process that trained ends here
    return status


if __name__ == "__main__":
    sys.exit(main())
