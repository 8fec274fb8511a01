"""benchmarks/gpu.py, the prepared GPU check, at toy sizes on the CPU (``--device cpu --tiny``):
every part runs and writes its result; no timing is asserted."""

import importlib.util
import json
import math
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


def test_tiny_run_on_the_cpu_writes_every_part(tmp_path):
    gpu = load_script()
    out = tmp_path / "gpu.json"
    result = gpu.main(["--device", "cpu", "--tiny", "--out", str(out)])

    assert json.loads(out.read_text())["mode"] == "tiny"
    assert out.with_suffix(".md").read_text().startswith("# GPU check")

    conformance = result["conformance"]
    assert conformance["cases"] == 3 and conformance["failed"] == []

    step = result["step"]["tasks"]["realnvp2"]["libraries"]
    assert step["ref"]["median_ms"] > 0 and step["flowforge"]["median_ms"] > 0
    assert isinstance(result["step"]["peers_missing"], list)

    fp32, bf16 = result["glow"]["float32"], result["glow"]["bf16 couplings"]
    assert fp32["bf16_couplings"] == 0 and bf16["bf16_couplings"] > 0
    for run in (fp32, bf16):
        assert run["steps"] >= 1 and math.isfinite(run["test_bpd"])


def test_float32_tolerances_match_the_conformance_tests():
    import test_conformance

    gpu = load_script()
    assert (gpu.FLOAT32_ATOL, gpu.FLOAT32_RTOL) == (
        test_conformance.FLOAT32_ATOL,
        test_conformance.FLOAT32_RTOL,
    )


def test_bf16_couplings_keep_float32_outputs():
    import torch

    from flowforge.models import glow

    gpu = load_script()
    torch.manual_seed(0)
    flow = glow((1, 8, 8), scales=2, depth=1, hidden_channels=8)
    assert gpu.with_bf16_couplings(flow, "cpu") > 0
    x = torch.randint(0, 256, (4, 1, 8, 8)).float()
    log_prob = flow.log_prob(x)
    assert log_prob.dtype == torch.float32 and torch.isfinite(log_prob).all()
