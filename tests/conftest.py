import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("FLOWFORGE_TEST_THREADS", "2")))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The team's shared data folder; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowforge conformance")
    group.addoption(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="device of the conformance tests (tests/test_conformance.py); default cpu",
    )
    group.addoption(
        "--dtype",
        choices=["float32", "float64"],
        default="float64",
        help="dtype of the conformance tests' transform checks; default float64",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"conformance: --device {config.getoption('device')} --dtype {config.getoption('dtype')}"


@pytest.fixture(scope="session")
def conformance_device(request: pytest.FixtureRequest) -> str:
    """``--device``: where the conformance tests run (``cuda`` skips them without a GPU)."""
    device = request.config.getoption("device")
    if device == "cuda":
        if not torch.cuda.is_available():
            pytest.skip("--device cuda: no CUDA device")
        # exact float32 matmuls and convolutions: TF32 would loosen them to ~1e-3
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return device


@pytest.fixture(scope="session")
def conformance_dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """``--dtype``: the dtype of the conformance tests' transform checks."""
    return getattr(torch, request.config.getoption("dtype"))
