"""The import contract: layers point one way and the core imports only torch and numpy.

``pyproject.toml`` declares the contracts; import-linter checks them on the source tree, and
on a copy with a deliberately added upward import it must fail and name the import.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip("importlinter", reason="import-linter is in the test extra")


def _lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root/src`` with ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(root / 'pyproject.toml')!r}, no_cache=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_source_tree_keeps_every_contract():
    out = _lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_every_top_level_module_has_a_layer():
    """A module or package added to ``src/flowforge`` without a layer would be unconstrained."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    named = {m.strip() for layer in layers["layers"] for m in layer.replace(":", "|").split("|")}
    package = REPO / "src" / "flowforge"
    modules = {f"flowforge.{p.stem}" for p in package.glob("*.py") if p.name != "__init__.py"}
    modules |= {f"flowforge.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert modules - named == set(), "top-level modules without a layer in pyproject.toml"
    assert named - modules == set(), "layers naming modules that do not exist"


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("objectives/mle.py", "import flowforge.train.trainer", "Layers point one way"),
        ("data/toy.py", "from flowforge.models import realnvp", "Layers point one way"),
        ("run_files.py", "import flowforge.train.checkpoint", "Layers point one way"),
        ("models/maf.py", "import flowforge.allocator", "Layers point one way"),
        ("conditioning.py", "import flowforge.flows", "Layers point one way"),
        ("flow_distribution.py", "import flowforge.models", "Layers point one way"),
        ("version.py", "import flowforge.nn", "Layers point one way"),
        ("conditioning.py", "import scipy", "The core imports only torch and numpy"),
        ("transforms/base.py", "import yaml", "The core imports only torch and numpy"),
    ],
)
def test_an_upward_import_breaks_the_contract(tmp_path, module, line, broken):
    shutil.copytree(REPO / "src", tmp_path / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "src" / "flowforge" / module
    path.write_text(path.read_text() + f"\n{line}  # a deliberate violation\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert f"{broken}" in out.stdout and "BROKEN" in out.stdout, out.stdout
