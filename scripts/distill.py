"""Probability density distillation: a MAF teacher (MLE) distilled into an IAF student.

    python scripts/distill.py DATASET [TEACHER_STEPS] [STUDENT_STEPS] [SEED] [options]

e.g. ``python scripts/distill.py moons 3000 3000 0`` and ``python scripts/distill.py gmm8``.
Positional arguments: the dataset name, the teacher's and the student's Adam steps (default
3000 each) and the seed (default 0: data split, teacher, student). The teacher is always
``maf(D, layers=5, hidden=(64, 64), batch_norm=False)`` fitted by maximum likelihood (batch 256,
lr 1e-3, cosine; 20,000 training, 2,000 validation and 5,000 test points). Student options
(the defaults are the original student, ``iaf(D, layers=5, hidden=(64, 64))``, batch 256,
lr 1e-3, cosine):

    --transformer {affine,spline}  the IAF's transformer (spline: rational-quadratic)
    --bins K, --bound B            spline bins and interval half-width (default 8 and 5)
    --layers L, --hidden W         IAF layers and the width of its two hidden layers
    --batch N, --lr LR             student samples per step and initial learning rate
    --anneal N                     scale log p by beta = min(1, 0.01 + t / N) (annealing)
    --student-seed S               the student run's seed (default: SEED)
    --out DIR                      where the run directories go (default runs/)
    --fresh-teacher                train the teacher even if a finished identical run exists

The objective is the reverse KL on student samples only (tempered while annealing). Prints
one JSON line: the final KL(student || teacher) on student samples (and KL(teacher || student)
on teacher samples), the test NLL of teacher and student (the student's by its slow direction)
beside the data's true entropy, and the sampling speed of both measured side by side
(interleaved rounds, median of the ratios), with both run directories.

Since the one-trainer change this script is a thin layer over two runs of
``flowforge.runs.train_run``, built from ``configs/variational/maf-teacher-moons.yaml`` and
``configs/variational/distill-iaf-moons.yaml`` with the options above applied:

- the teacher is an ``mle`` run ``DIR/maf-teacher-DATASET[-sSEED][-STEPS]`` (the moons, seed 0,
  3000-step teacher is exactly ``flowforge train configs/variational/maf-teacher-moons.yaml``).
  A finished run with the same config in that directory is reused (its training seconds are
  the recorded ones), as the screening runs of docs/results.md reused their teacher;
- the student is a ``distill`` run ``DIR/distill-DATASET-...`` whose ``teacher`` is that run
  directory; test NLLs and sampling speeds are measured here on the models loaded back with
  ``flowforge.runs.load`` (the best validation checkpoint of each run, normally the last);
- batches of the teacher are epoch-wise permutations of the training set (no longer draws with
  replacement), Adam is AdamW without decay, the student's seed is its own run seed (it no
  longer continues the teacher's generator), and KL(teacher || student) is estimated on 20,000
  teacher samples (was 5,000): numbers are reproduced in distribution, not bit for bit.
"""

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import torch
import yaml

from flowforge.config import parse_config
from flowforge.objectives.mle import evaluate_nll
from flowforge.runs import RunDirectory, load, open_run, train_run
from flowforge.runs.build import load_data

ROOT = Path(__file__).resolve().parents[1]
TEACHER_CONFIG = ROOT / "configs" / "variational" / "maf-teacher-moons.yaml"
STUDENT_CONFIG = ROOT / "configs" / "variational" / "distill-iaf-moons.yaml"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("teacher_steps", nargs="?", type=int, default=3000)
    parser.add_argument("student_steps", nargs="?", type=int, default=3000)
    parser.add_argument("seed", nargs="?", type=int, default=0)
    parser.add_argument("--transformer", choices=("affine", "spline"), default="affine")
    parser.add_argument("--bins", type=int, default=8)
    parser.add_argument("--bound", type=float, default=5.0)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--anneal", type=int, default=0)
    parser.add_argument("--student-seed", type=int, default=None)
    parser.add_argument("--out", default="runs", help="folder of the run directories")
    parser.add_argument("--fresh-teacher", action="store_true", help="never reuse a teacher")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def teacher_config(args):
    raw = yaml.safe_load(TEACHER_CONFIG.read_text())
    name = f"maf-teacher-{args.name}"
    name += f"-s{args.seed}" if args.seed else ""
    name += f"-{args.teacher_steps}" if args.teacher_steps != raw["train"]["steps"] else ""
    raw.update(name=name, seed=args.seed, output_dir=args.out)
    raw["data"]["name"] = args.name
    raw["train"]["steps"] = args.teacher_steps
    raw["train"]["eval_every"] = min(raw["train"]["eval_every"], args.teacher_steps)
    return parse_config(raw)


def student_config(args, teacher_dir, spline):
    raw = yaml.safe_load(STUDENT_CONFIG.read_text())
    seed = args.seed if args.student_seed is None else args.student_seed
    name = f"distill-{args.name}-{args.transformer}{args.layers}x{args.hidden}-s{seed}"
    name += f"-t{args.teacher_steps}-{args.student_steps}"
    name += f"-a{args.anneal}" if args.anneal else ""
    raw.update(name=name, seed=seed, output_dir=args.out)
    raw["objective"].update(teacher=str(teacher_dir), anneal=args.anneal)
    raw["model"].update(
        layers=args.layers,
        hidden=[args.hidden, args.hidden],
        transformer=args.transformer,
        **spline,
    )
    raw["train"].update(
        steps=args.student_steps,
        batch_size=args.batch,
        lr=args.lr,
        eval_every=min(raw["train"]["eval_every"], args.student_steps),
    )
    return parse_config(raw)


def finished_run(cfg):
    """``output_dir/name`` when it holds a finished run of exactly ``cfg``, else ``None``."""
    run = RunDirectory(Path(cfg.output_dir) / cfg.name)
    if not run.summary_file.is_file() or not run.config_file.is_file():
        return None
    return run.path if run.read_config() == cfg.to_dict() else None


def rate(flow, n=5000):
    t0 = time.perf_counter()
    flow.sample(n)
    return n / (time.perf_counter() - t0)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message=".*(passes|sequential steps).*")  # slow test NLL
    progress = not args.quiet

    t_cfg = teacher_config(args)
    teacher_dir = None if args.fresh_teacher else finished_run(t_cfg)
    reused = teacher_dir is not None
    if teacher_dir is None:
        teacher_dir = train_run(t_cfg, progress=progress, plots=False).run_dir
    teacher_summary = RunDirectory(teacher_dir).read_summary()

    spline = {"bins": args.bins, "bound": args.bound} if args.transformer == "spline" else {}
    s_result = train_run(student_config(args, teacher_dir, spline), progress=progress, plots=False)
    s = s_result.summary

    teacher, student = load(teacher_dir), load(s_result.run_dir)
    splits = load_data(open_run(teacher_dir).config)
    nll_teacher = evaluate_nll(teacher, splits.test)[0]
    nll_student = evaluate_nll(student, splits.test)[0]

    rates = {"teacher": [], "student": []}
    for _ in range(15):  # interleaved rounds: both see the same machine load
        rates["teacher"].append(rate(teacher))
        rates["student"].append(rate(student))
    ratios = [s_ / t for s_, t in zip(rates["student"], rates["teacher"], strict=True)]
    print(
        json.dumps(
            {
                "data": args.name,
                "dim": splits.train.shape[1],
                "seed": args.seed,
                "teacher_steps": args.teacher_steps,
                "student_steps": args.student_steps,
                "student": {
                    "transformer": args.transformer,
                    **spline,
                    "layers": args.layers,
                    "hidden": args.hidden,
                    "batch": args.batch,
                    "lr": args.lr,
                    "anneal": args.anneal,
                    "seed": args.student_seed,
                },
                "kl_student_teacher": s["kl"],
                "kl_stderr": s["loss_stderr"],
                "test_nll_teacher": nll_teacher,
                "test_nll_student": nll_student,
                "kl_teacher_student": s["kl_teacher_student"],
                "kl_teacher_student_stderr": s["kl_teacher_student_stderr"],
                "entropy": splits.entropy,
                "samples_per_s_teacher": statistics.median(rates["teacher"]),
                "samples_per_s_student": statistics.median(rates["student"]),
                "speedup_median": statistics.median(ratios),
                "teacher_seconds": round(teacher_summary["train_seconds"], 1),
                "student_seconds": round(s["train_seconds"], 1),
                "teacher_run": str(teacher_dir),
                "teacher_reused": reused,
                "student_run": str(s_result.run_dir),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
