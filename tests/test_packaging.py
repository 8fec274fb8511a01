"""Packaging: the core's dependencies, one version, the files a release ships, and the wiring of
the conformance options. `make package-check` (.ci/package-check) builds and installs the real
wheel; these tests check the source tree in seconds."""

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import flowforge

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# what only the extras bring in (cli, plots, continuous, pyro, tabular, digits), plus scipy
OPTIONAL = [
    "yaml",
    "tqdm",
    "matplotlib",
    "torchdiffeq",
    "scipy",
    "pandas",
    "sklearn",
    "pyro",
    "h5py",
]
CORE = [
    "flowforge.transforms",
    "flowforge.nn",
    "flowforge.flows",
    "flowforge.distributions",
    "flowforge.models",
]

BLOCKER = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is blocked by the test", name=name)
        return None

sys.meta_path.insert(0, Blocker())
for module in sys.argv[2].split(","):
    __import__(module)
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
print("loaded:", loaded)
sys.exit(1 if loaded else 0)
"""


def _env():
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }


def _name(requirement):
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_core_imports_with_torch_and_numpy_only():
    """transforms, nn, flows, distributions and models import with every optional package made
    unimportable, and load none of them (torchdiffeq only when a CNF integrates)."""
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, ",".join(OPTIONAL), ",".join(CORE)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_blocker_blocks():
    """The check above can fail: a module that imports yaml is caught."""
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, "yaml", "flowforge.config"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode != 0
    assert "yaml is blocked by the test" in proc.stderr


def test_dependencies_core_is_torch_and_numpy_and_extras_cover_the_rest():
    project = PYPROJECT["project"]
    assert sorted(_name(r) for r in project["dependencies"]) == ["numpy", "torch"]
    torch_req = next(r for r in project["dependencies"] if _name(r) == "torch")
    assert torch_req == "torch>=2.4"  # why: docs/install.md; change both together
    assert torch_req in (REPO / "docs" / "install.md").read_text()
    extras = {k: {_name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    assert extras["cli"] >= {"pyyaml", "tqdm", "matplotlib"}
    assert "torchdiffeq" in extras["continuous"]
    assert "pyro-ppl" in extras["pyro"]
    assert "matplotlib" in extras["plots"]
    # no extra asks for torch again (an upper pin there could replace the user's torch)
    assert not any("torch" in names for names in extras.values())


def test_version_is_written_once():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    attr = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "flowforge.version.__version__"
    # setuptools reads it without importing flowforge (and torch): a plain string assignment
    text = (SRC / "flowforge" / "version.py").read_text()
    assert re.search(r'^__version__ = "\d+\.\d+\.\d+[^"]*"$', text, re.M)
    written = [
        p.relative_to(REPO)
        for p in [*SRC.rglob("*.py"), REPO / "pyproject.toml", REPO / "CITATION.cff"]
        if re.search(r"^(__version__|version)\s*=\s*['\"]", p.read_text(), re.M)
    ]
    assert written == [Path("src/flowforge/version.py")]


def test_installed_metadata_matches_the_source_version():
    try:
        dist = metadata.distribution("flowforge")
    except metadata.PackageNotFoundError:
        pytest.skip("flowforge is not installed (only on PYTHONPATH)")
    url = json.loads(dist.read_text("direct_url.json") or "{}").get("url", "")
    if url.rstrip("/") != REPO.as_uri():
        pytest.skip(f"the installed flowforge is not this tree ({url or 'no direct_url.json'})")
    assert dist.version == flowforge.__version__  # else: reinstall (make test does)


def test_release_files():
    license_text = (REPO / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "2026 flowforge developers" in license_text
    assert PYPROJECT["project"]["license"] == "MIT"

    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "## [Unreleased]" in changelog
    assert re.search(r"^## \[\d+\.\d+\.\d+\] - \d{4}-\d\d-\d\d$", changelog, re.M)

    assert (SRC / "flowforge" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["flowforge"]
    # the image sample-quality measures' classifier ships inside the package
    classifier = SRC / "flowforge" / "metrics" / "mnist_classifier.npz"
    assert classifier.is_file() and classifier.stat().st_size < 500_000
    assert "metrics/*.npz" in PYPROJECT["tool"]["setuptools"]["package-data"]["flowforge"]
    assert "flowforge/metrics/mnist_classifier.npz" in (REPO / ".ci/package-check").read_text()

    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors"} <= cff.keys() and cff["authors"]
    assert "version" not in cff  # the version lives in src/flowforge/version.py only


def test_no_source_file_is_ignored_by_git():
    """A package folder caught by a .gitignore pattern (say ``runs/``) works in the author's
    tree and is missing from every clone and wheel."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = [
        str(p.relative_to(REPO))
        for p in SRC.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and ".egg-info" not in str(p)
    ]
    proc = subprocess.run(
        ["git", "check-ignore", "--stdin"],
        input="\n".join(files),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: nothing ignored
    assert proc.stdout.split() == [], "ignored by .gitignore, so never committed"


@pytest.mark.slow
def test_conformance_options_reach_the_checks():
    """``--dtype float32`` (conftest.py) reaches the kit: the spy test prints what it saw."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "-s",
            str(REPO / "tests" / "test_conformance.py"),
            "-k",
            "the_kit_runs_where_the_options_say",
            "--dtype",
            "float32",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "conformance checks ran on cpu in torch.float32" in proc.stdout
    assert "1 passed" in proc.stdout


def test_the_command_without_its_extra_says_how_to_install_it():
    """``flowforge`` without the cli extra: one line naming the extra, not a traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, "yaml", "flowforge.cli"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: the flowforge command needs the cli extra (yaml is not installed): "
        "pip install 'flowforge[cli]'"
    )


# run with the command's arguments: its exit status, then the heavy packages it imported
LOADED = """
import sys
from flowforge.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    print(e.code)
heavy = {"torch", "numpy", "yaml", "tqdm", "matplotlib", "scipy", "pandas"}
print(sorted({m.partition(".")[0] for m in sys.modules} & heavy))
"""


@pytest.mark.parametrize(("args", "status"), [(["--help"], "0"), (["sample"], "2")])
def test_help_and_argument_errors_load_no_heavy_module(args, status):
    """``flowforge --help`` and an argument error answer without importing torch, numpy,
    yaml or matplotlib (``benchmarks/cli_startup.py`` times them)."""
    proc = subprocess.run(
        [sys.executable, "-c", LOADED, *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )
    assert proc.stdout.splitlines()[-2:] == [status, "[]"], proc.stderr


def test_the_package_imports_its_names_on_first_use():
    code = (
        "import sys, flowforge; assert 'torch' not in sys.modules; "
        "print(flowforge.Flow.__module__, flowforge.transforms.Transform.__module__, "
        "flowforge.load.__module__, 'Flow' in dir(flowforge)); flowforge.nothing"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.stdout.split() == [
        "flowforge.flows",
        "flowforge.transforms.base",
        "flowforge.runs.load",
        "True",
    ]
    assert "AttributeError: module 'flowforge' has no attribute 'nothing'" in proc.stderr
