"""Figure 3 of Rezende and Mohamed (2015) and the reverse-KL table of docs/results.md.

    python scripts/vi_figure.py [STEPS] [TARGETS] [FLOWS]

e.g. ``python scripts/vi_figure.py 3000 U1,U2,U3,U4 planar2,planar8,planar32,radial,iaf,realnvp``.
Fits each flow to each target by reverse KL (Adam, cosine decay, batch 256, annealing
beta_t = min(1, 0.01 + t / (STEPS / 2)), seed 0), prints one JSON line per fit with
KL(q || p) (log Z by grid integration) and writes ``docs/img/vi-figure3-<targets>.png`` and
``runs/vi/results_<targets>.json``.
"""

import json
import sys
from pathlib import Path

import torch

from flowforge.models import iaf, planar, radial, realnvp
from flowforge.targets import make_target
from flowforge.train.variational import fit_target
from flowforge.viz.vi import plot_vi_grid

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
FLOWS = {
    "planar2": (lambda: planar(2, layers=2), 3e-3),
    "planar8": (lambda: planar(2, layers=8), 3e-3),
    "planar32": (lambda: planar(2, layers=32), 3e-3),
    "radial": (lambda: radial(2, layers=32), 3e-3),
    "iaf": (lambda: iaf(2, layers=6, hidden=(32, 32)), 1e-3),
    "realnvp": (lambda: realnvp(2, couplings=6, hidden=(32, 32)), 1e-3),
}
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
targets = [make_target(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "U1,U2,U3,U4").split(",")]
columns = (sys.argv[3] if len(sys.argv) > 3 else ",".join(FLOWS)).split(",")
fitted, kls, rows = {}, {}, []
for target in targets:
    for name in columns:
        make, lr = FLOWS[name]
        torch.manual_seed(0)
        flow = make()
        r = fit_target(
            flow,
            target,
            steps,
            batch_size=256,
            lr=lr,
            anneal=True,
            anneal_length=max(steps // 2, 1),
            eval_samples=50000,
            seed=0,
        )
        fitted[(target.name, name)], kls[(target.name, name)] = flow, r.kl
        row = {
            "target": target.name,
            "flow": name,
            "kl": r.kl,
            "kl_stderr": r.loss_stderr,
            "log_z": target.log_z,
            "steps": steps,
            "seconds": round(r.seconds, 1),
            "parameters": sum(p.numel() for p in flow.parameters()),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
out = ROOT / "runs" / "vi"
out.mkdir(parents=True, exist_ok=True)
tag = "-".join(t.name for t in targets)
(out / f"results_{tag}.json").write_text(json.dumps(rows, indent=1))
figure = ROOT / "docs" / "img" / f"vi-figure3-{tag}.png"
print(plot_vi_grid(targets, fitted, columns, figure, kls))
