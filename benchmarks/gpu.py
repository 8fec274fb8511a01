"""The prepared GPU check: one command on a CUDA machine, one JSON and one markdown file back.

::

    python benchmarks/gpu.py --minutes 3 --out benchmarks/results/gpu.json

Three parts (see ``docs/benchmarks.md``, section GPU):

1. **conformance**: every case of the conformance registry (:mod:`flowforge.testing.registry`)
   through :func:`flowforge.testing.check_transform` on the device in float32, with TF32 off and
   the float32 tolerances of ``tests/test_conformance.py``;
2. **training step**: the median wall time of the training step of a few tasks of the peer
   benchmark (``benchmarks/peers.py``: its models, data and step, reused, not copied), for ref,
   flowforge, flowforge with ``torch.compile`` and every peer library that is installed (the
   missing ones are named in the result);
3. **Glow, fp32 against bf16**: the MNIST Glow of ``configs/images/glow-mnist.yaml`` trained for
   ``--minutes`` minutes twice from the same seed, once in float32 and once with the coupling
   networks under ``torch.autocast(dtype=torch.bfloat16)``; the couplings' scales, every
   log-determinant and the base density stay in float32. Steps per second and the test
   bits/dim after the budget (evaluated in float32) for each.

``--device cpu --tiny`` runs all three at toy sizes in seconds (``tests/test_gpu_script.py``):
it checks the script, not the speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent

# the same as tests/test_conformance.py (tests/test_gpu_script.py checks they agree)
FLOAT32_ATOL, FLOAT32_RTOL = 1e-4, 1e-3
STEP_TASKS = ("maf8", "realnvp8", "nsf_c8", "glow")
TINY_STEP_TASKS = ("realnvp2",)


def load_peers():
    """``benchmarks/peers.py`` as a module (it is a script folder, not a package)."""
    if "peers" in sys.modules:
        return sys.modules["peers"]
    spec = importlib.util.spec_from_file_location("peers", HERE / "peers.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["peers"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------ conformance


def conformance(device: torch.device, max_cases: int | None) -> dict:
    from flowforge.testing import check_transform
    from flowforge.testing.registry import all_cases

    if device.type == "cuda":  # exact float32: TF32 would loosen matmuls and convolutions
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cases = sorted(all_cases().items())
    if max_cases is not None:  # spread over the families
        cases = cases[:: max(1, len(cases) // max_cases)][:max_cases]
    rows, t0 = {}, time.perf_counter()
    for name, case in cases:
        x, context = case.inputs()
        atol, rtol = max(case.atol, FLOAT32_ATOL), max(case.rtol, FLOAT32_RTOL)
        start = time.perf_counter()
        try:
            results = check_transform(
                case.make_transform, x, context, atol, rtol, dtype=torch.float32, device=device
            )
            failed = {r.name: r.detail for r in results if not r.passed}
        except Exception as e:  # a case that cannot even be built on the device
            failed = {"setup": f"{type(e).__name__}: {e}"}
        rows[name] = {"passed": not failed, "failed": failed, "s": time.perf_counter() - start}
        print(f"  conformance {name}: {'ok' if not failed else failed}", flush=True)
    return {
        "dtype": "float32",
        "atol_floor": FLOAT32_ATOL,
        "rtol_floor": FLOAT32_RTOL,
        "cases": len(rows),
        "failed": sorted(k for k, v in rows.items() if not v["passed"]),
        "seconds": time.perf_counter() - t0,
        "per_case": rows,
    }


# --------------------------------------------------------------------------- training step


def step_times(device: torch.device, tasks: tuple[str, ...], steps: int, warmup: int, tiny: bool):
    peers = load_peers()
    wanted = [*peers.LIBRARIES, peers.COMPILED]
    missing = [lib for lib in peers.PEERS if not peers.available(lib)]
    if missing:
        print(f"  peers not installed (timed without them): {', '.join(missing)}", flush=True)
    out = {"peers_missing": missing, "steps": steps, "warmup": warmup, "tasks": {}}
    for name in tasks:
        task = peers.TASKS[name]
        if tiny:
            task = dataclasses.replace(task, batch=64, n_train=512, n_test=128)
        try:
            train, _ = peers.load_task_data(task, seed=0)
        except Exception as e:  # e.g. MNIST not found for the glow task
            out["tasks"][name] = {"skipped": f"{type(e).__name__}: {e}"}
            print(f"  step {name}: skipped ({e})", flush=True)
            continue
        train = train.to(device)
        batches = peers.batch_indices(len(train), task.batch, warmup + steps, seed=0)
        rows = {}
        for lib in peers.libraries_for(name, [w for w in wanted if w not in missing]):
            if tiny and lib == peers.COMPILED:
                continue  # compiling takes longer than the whole tiny run
            try:
                torch.manual_seed(0)
                model = peers.BUILDERS[lib](name)
                model.module.to(device)
                opt = torch.optim.Adam(model.module.parameters(), lr=1e-3)
                step = peers.make_step(model, opt)
                times = []
                for i, idx in enumerate(batches):
                    sync(device)
                    start = time.perf_counter()
                    step(train[idx.to(device)])
                    sync(device)
                    if i >= warmup:
                        times.append(time.perf_counter() - start)
                rows[lib] = {"median_ms": 1e3 * statistics.median(times), "n": len(times)}
            except Exception as e:  # a peer that does not run on this device
                rows[lib] = {"error": f"{type(e).__name__}: {e}"[:300]}
        ref = rows.get("ref", {}).get("median_ms")
        for row in rows.values():
            if ref and "median_ms" in row:
                row["vs_ref"] = row["median_ms"] / ref
        out["tasks"][name] = {"batch": task.batch, "libraries": rows}
        print(f"  step {name}: {json.dumps(rows)}", flush=True)
    return out


# ------------------------------------------------------------------------------ Glow, bf16


class Bf16(nn.Module):
    """Runs a coupling network under bf16 autocast and returns float32, so that the coupling's
    scale, its log-determinant and everything after it are computed in float32."""

    def __init__(self, net: nn.Module, device_type: str) -> None:
        super().__init__()
        self.net, self.device_type = net, device_type

    def forward(self, *args: Tensor | None) -> Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.net(*args)
        return out.float()


def with_bf16_couplings(flow: nn.Module, device_type: str) -> int:
    from flowforge.transforms import Coupling

    couplings = [m for m in flow.modules() if isinstance(m, Coupling)]
    for m in couplings:
        m.conditioner = Bf16(m.conditioner, device_type)
    return len(couplings)


def glow_data(tiny: bool, device: torch.device) -> tuple[Tensor, Tensor, str]:
    if tiny:  # 8x8 random 8-bit images: the script's path, not a result
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (640, 1, 8, 8), generator=g).float()
        return x[:512].to(device), x[512:].to(device), "random 8x8 (tiny)"
    from flowforge.data.registry import load_dataset

    splits = load_dataset("mnist", n_train=50000, n_val=0, n_test=10000, seed=0)
    return splits.train.to(device), splits.test.to(device), "MNIST"


def train_glow(
    device: torch.device, bf16: bool, seconds: float, tiny: bool, batch: int, data: tuple
) -> dict:
    from flowforge.models import glow

    train, test, source = data
    torch.manual_seed(0)
    if tiny:
        flow = glow(tuple(train.shape[1:]), scales=2, depth=2, hidden_channels=16, alpha=1e-6)
    else:  # configs/images/glow-mnist.yaml's model
        flow = glow((1, 28, 28), scales=2, depth=8, hidden_channels=128, alpha=1e-6)
    flow.to(device)
    wrapped = with_bf16_couplings(flow, device.type) if bf16 else 0
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    g = torch.Generator(device="cpu").manual_seed(1)
    dims = math.prod(train.shape[1:])
    losses, steps, nonfinite = [], 0, 0
    flow.train()
    sync(device)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        idx = torch.randint(len(train), (batch,), generator=g).to(device)
        loss = -flow.log_prob(train[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 50.0)
        if torch.isfinite(loss):
            opt.step()
        else:
            nonfinite += 1
        steps += 1
        if steps % 50 == 0 or steps <= 2:
            losses.append((steps, float(loss) / (dims * math.log(2))))
    sync(device)
    elapsed = time.perf_counter() - start
    flow.eval()
    with torch.no_grad():  # float32 evaluation (the bf16 wrappers stay; they are the model)
        nll = torch.cat([-flow.log_prob(c) for c in test.split(500)])
    return {
        "bf16_couplings": wrapped,
        "data": source,
        "batch": batch,
        "seconds": elapsed,
        "steps": steps,
        "steps_per_s": steps / elapsed,
        "nonfinite_steps": nonfinite,
        "train_bpd_curve": losses,
        "test_bpd": float(nll.mean()) / (dims * math.log(2)),
        "peak_mib": torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else None,
    }


# ------------------------------------------------------------------------------------ main


def markdown(result: dict) -> str:
    env, lines = result["environment"], []
    lines.append(f"# GPU check: {env['device_name']} ({env['torch']}, {result['mode']})\n")
    c = result["conformance"]
    lines.append(f"## Conformance in float32: {c['cases'] - len(c['failed'])}/{c['cases']} pass\n")
    for name in c["failed"]:
        lines.append(f"- {name}: {c['per_case'][name]['failed']}")
    s = result["step"]
    lines.append("\n## Training step, median ms (ratio to ref)\n")
    if s["peers_missing"]:
        lines.append(f"Peers not installed: {', '.join(s['peers_missing'])}.\n")
    for task, row in s["tasks"].items():
        if "skipped" in row:
            lines.append(f"- {task}: skipped ({row['skipped']})")
            continue
        cells = [
            f"{lib} {r['median_ms']:.2f} ({r.get('vs_ref', float('nan')):.2f}x)"
            if "median_ms" in r
            else f"{lib} error"
            for lib, r in row["libraries"].items()
        ]
        lines.append(f"- {task} (batch {row['batch']}): " + ", ".join(cells))
    lines.append("\n## Glow, float32 against bf16 couplings (same seed, same time)\n")
    lines.append("| run | steps | steps/s | test bits/dim | non-finite steps | peak MiB |")
    lines.append("|---|---|---|---|---|---|")
    for name, r in result["glow"].items():
        peak = f"{r['peak_mib']:.0f}" if r["peak_mib"] is not None else "-"
        lines.append(
            f"| {name} | {r['steps']} | {r['steps_per_s']:.2f} | {r['test_bpd']:.4f} | "
            f"{r['nonfinite_steps']} | {peak} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--tiny", action="store_true", help="toy sizes: checks the script in seconds")
    p.add_argument("--minutes", type=float, default=3.0, help="Glow budget per run (default 3)")
    p.add_argument("--batch", type=int, default=256, help="Glow batch size (default 256)")
    p.add_argument("--steps", type=int, default=50, help="timed training steps per library")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first (compilation)")
    p.add_argument("--out", default="benchmarks/results/gpu.json", help="JSON; .md beside it")
    p.add_argument(
        "--skip", default="", help="comma-separated parts to skip: conformance,step,glow"
    )
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device (use --device cpu --tiny to try it)")
    skip = set(filter(None, args.skip.split(",")))
    result: dict = {
        "mode": "tiny" if args.tiny else "full",
        "environment": {
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or "cpu",
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        },
    }
    t0 = time.perf_counter()
    if "conformance" not in skip:
        print("conformance (float32):", flush=True)
        result["conformance"] = conformance(device, 3 if args.tiny else None)
    if "step" not in skip:
        print("training step:", flush=True)
        tasks = TINY_STEP_TASKS if args.tiny else STEP_TASKS
        steps, warmup = (3, 1) if args.tiny else (args.steps, args.warmup)
        result["step"] = step_times(device, tasks, steps, warmup, args.tiny)
    if "glow" not in skip:
        seconds = 1.0 if args.tiny else 60 * args.minutes
        batch = 16 if args.tiny else args.batch
        data = glow_data(args.tiny, device)
        result["glow"] = {}
        for name, bf16 in (("float32", False), ("bf16 couplings", True)):
            print(f"glow, {name}, {seconds:.0f} s:", flush=True)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            result["glow"][name] = train_glow(device, bf16, seconds, args.tiny, batch, data)
            shown = {k: v for k, v in result["glow"][name].items() if k != "train_bpd_curve"}
            print(f"  {json.dumps(shown)}")
    result["seconds"] = time.perf_counter() - t0

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if {"conformance", "step", "glow"}.isdisjoint(skip):
        out.with_suffix(".md").write_text(markdown(result))
        print(markdown(result))
    print(f"wrote {out} ({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
