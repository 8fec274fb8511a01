"""Probability density distillation: a MAF teacher (MLE) distilled into an IAF student.

    python scripts/distill.py DATASET [TEACHER_STEPS] [STUDENT_STEPS] [SEED]

e.g. ``python scripts/distill.py moons 3000 3000 0`` and ``python scripts/distill.py gmm8``.
Prints one JSON line: the final KL(student || teacher) on student samples, the test NLL of
teacher and student (the student's by its slow direction) beside the data's true entropy, and
the sampling speed of both measured side by side (interleaved rounds, median of the ratios).
"""

import json
import statistics
import sys
import time
import warnings

import torch

from flowforge.data.registry import load_dataset
from flowforge.models import iaf, maf
from flowforge.train.variational import distill

torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*passes.*")  # the student's slow test-NLL pass
name = sys.argv[1]
teacher_steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
student_steps = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
seed = int(sys.argv[4]) if len(sys.argv) > 4 else 0
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
student = iaf(d, layers=5, hidden=hidden)
result = distill(student, teacher, student_steps, batch_size=256, lr=1e-3, seed=seed)
student.eval()
with torch.no_grad():
    nll_teacher = -teacher.log_prob(splits.test).mean().item()
    nll_student = -student.log_prob(splits.test).mean().item()


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
            "kl_student_teacher": result.kl,
            "kl_stderr": result.loss_stderr,
            "test_nll_teacher": nll_teacher,
            "test_nll_student": nll_student,
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
