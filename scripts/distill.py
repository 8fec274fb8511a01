"""Probability density distillation: a MAF teacher (MLE) distilled into an IAF student.

    python scripts/distill.py DATASET [TEACHER_STEPS] [STUDENT_STEPS] [SEED] [options]

e.g. ``python scripts/distill.py moons 3000 3000 0`` and ``python scripts/distill.py gmm8``.
Positional arguments: the dataset name, the teacher's and the student's Adam steps (default
3000 each) and the seed (default 0: data split, teacher, student). The teacher is always
``maf(D, layers=5, hidden=(64, 64), batch_norm=False)`` fitted by maximum likelihood (batch 256,
lr 1e-3, cosine). Student options (the defaults are the original student,
``iaf(D, layers=5, hidden=(64, 64))``, batch 256, lr 1e-3, cosine):

    --transformer {affine,spline}  the IAF's transformer (spline: rational-quadratic)
    --bins K, --bound B            spline bins and interval half-width (default 8 and 5)
    --layers L, --hidden W         IAF layers and the width of its two hidden layers
    --batch N, --lr LR             student samples per step and initial learning rate
    --anneal N                     scale log p by beta = min(1, 0.01 + t / N) (annealing)
    --student-seed S               reseed torch before the student is built and trained
                                   (default: the generator continues after the teacher)

The objective is the reverse KL on student samples only (tempered while annealing). Prints
one JSON line: the final KL(student || teacher) on student samples (and KL(teacher || student)
on 5,000 teacher samples), the test NLL of teacher
and student (the student's by its slow direction) beside the data's true entropy, and the
sampling speed of both measured side by side (interleaved rounds, median of the ratios).
"""

import argparse
import json
import statistics
import time
import warnings

import torch

from flowforge.data.registry import load_dataset
from flowforge.models import iaf, maf
from flowforge.train.variational import distill

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*(passes|sequential steps).*")  # slow test NLL
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
args = parser.parse_args()
name, teacher_steps, student_steps, seed = (
    args.name,
    args.teacher_steps,
    args.student_steps,
    args.seed,
)
splits = load_dataset(name, 20000, 2000, 5000, seed=seed)
d = splits.train.shape[1]
torch.manual_seed(seed)
hidden = (64, 64)
teacher = maf(d, layers=5, hidden=hidden, batch_norm=False)
optimizer = torch.optim.Adam(teacher.parameters(), lr=1e-3)
schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, teacher_steps)
start = time.perf_counter()
for _ in range(teacher_steps):
    idx = torch.randint(len(splits.train), (256,))
    loss = -teacher.log_prob(splits.train[idx]).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()
teacher_seconds = time.perf_counter() - start
teacher.eval()
if args.student_seed is not None:
    torch.manual_seed(args.student_seed)
spline = {"bins": args.bins, "bound": args.bound} if args.transformer == "spline" else {}
student = iaf(
    d,
    layers=args.layers,
    hidden=(args.hidden, args.hidden),
    transformer=args.transformer,
    **spline,
)
result = distill(
    student,
    teacher,
    student_steps,
    batch_size=args.batch,
    lr=args.lr,
    anneal=args.anneal > 0,
    anneal_length=max(args.anneal, 1),
    seed=seed if args.student_seed is None else args.student_seed,
)
student.eval()
with torch.no_grad():
    nll_teacher = -teacher.log_prob(splits.test).mean().item()
    nll_student = -student.log_prob(splits.test).mean().item()
    x_teacher = teacher.sample(5000)  # the other direction, on teacher samples
    kl_teacher_student = (teacher.log_prob(x_teacher) - student.log_prob(x_teacher)).mean().item()


def rate(flow, n=5000):
    t0 = time.perf_counter()
    flow.sample(n)
    return n / (time.perf_counter() - t0)


rates = {"teacher": [], "student": []}
for _ in range(15):  # interleaved rounds: both see the same machine load
    rates["teacher"].append(rate(teacher))
    rates["student"].append(rate(student))
ratios = [s / t for s, t in zip(rates["student"], rates["teacher"], strict=True)]
print(
    json.dumps(
        {
            "data": name,
            "dim": d,
            "seed": seed,
            "teacher_steps": teacher_steps,
            "student_steps": student_steps,
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
            "kl_student_teacher": result.kl,
            "kl_stderr": result.loss_stderr,
            "test_nll_teacher": nll_teacher,
            "test_nll_student": nll_student,
            "kl_teacher_student": kl_teacher_student,
            "entropy": splits.entropy,
            "samples_per_s_teacher": statistics.median(rates["teacher"]),
            "samples_per_s_student": statistics.median(rates["student"]),
            "speedup_median": statistics.median(ratios),
            "teacher_seconds": round(teacher_seconds, 1),
            "student_seconds": round(result.seconds, 1),
        }
    ),
    flush=True,
)
