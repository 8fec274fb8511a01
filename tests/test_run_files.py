"""One reader and writer of run files: no run-file name is spelled outside
:mod:`flowforge.run_files`.

The names of a run directory's files (``config.yaml``, ``metrics.jsonl``, ``summary.json``,
``.lock``, ``checkpoints/``, ``last.pt``, ``best.pt``, ``plots/``, the temporary-file suffix)
live in :mod:`flowforge.run_files`; everything else reads and writes a run through
:class:`flowforge.runs.RunDirectory` (or, below the run layer, the module's names). This test
scans the package, the scripts and the benchmarks for those names in code: string literals and
the literal parts of f-strings (docstrings and comments are prose and may name files), and the
text of the package's templates and static files.
"""

import ast
import re
from pathlib import Path

import pytest

from flowforge import run_files

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "flowforge"
SCANNED = (PACKAGE, REPO / "scripts", REPO / "benchmarks")
HOME = PACKAGE / "run_files.py"
TEXT_SUFFIXES = (".j2", ".html", ".js", ".css")
#: files allowed to spell a run-file name, each with the reason it cannot use the module's
#: names (none so far: add one only when it is unavoidable)
EXCEPTIONS: dict[str, str] = {}

# a file name anywhere in a string; a folder name as the whole string or a part of a path
FILES = [run_files.CONFIG, run_files.METRICS, run_files.SUMMARY, run_files.LAST, run_files.BEST]
FILES += [run_files.TMP_SUFFIX]
FOLDERS = [run_files.CHECKPOINTS, run_files.PLOTS]
NAME = re.compile(
    "|".join(
        [re.escape(f) for f in FILES]
        + [rf"(?<![\w.]){re.escape(run_files.LOCK)}(?![\w.])"]
        + [rf"^{f}$|(?<![\w.]){f}/|/{f}(?![\w.])" for f in map(re.escape, FOLDERS)]
    )
)


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the string constants that stand as statements of their own: docstrings of
    modules, classes and functions, and those of attributes (a string after an assignment)."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }


def named_files(source: str) -> list[tuple[int, str]]:
    """The (line, string) of every string literal of the Python ``source`` (f-string parts
    included, docstrings and comments not) that spells a run-file name."""
    tree = ast.parse(source)
    prose = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in prose
        and NAME.search(node.value)
    ]


def _scanned_files() -> list[Path]:
    files = []
    for root in SCANNED:
        files += [p for p in root.rglob("*") if p.suffix == ".py" or p.suffix in TEXT_SUFFIXES]
    return sorted(p for p in files if "__pycache__" not in p.parts and p != HOME)


def test_the_scan_finds_files_to_scan():
    names = {p.relative_to(REPO).as_posix() for p in _scanned_files()}
    assert "src/flowforge/serve/playground.py" in names
    assert "src/flowforge/report/templates/report.html.j2" in names
    assert "scripts/records.py" in names and "benchmarks/tabular_panel.py" in names
    assert not {k for k in EXCEPTIONS if k not in names}, "an exception names no scanned file"


def test_no_run_file_name_is_spelled_outside_the_one_module():
    found = []
    for path in _scanned_files():
        shown = path.relative_to(REPO).as_posix()
        if shown in EXCEPTIONS:
            continue
        text = path.read_text()
        if path.suffix == ".py":
            hits = named_files(text)
        else:
            hits = [(i, line) for i, line in enumerate(text.splitlines(), 1) if NAME.search(line)]
        found += [f"{shown}:{line}: {value.strip()[:80]!r}" for line, value in hits]
    assert not found, (
        "run-file names spelled outside flowforge.run_files (use RunDirectory or the "
        "module's names):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "code, hits",
    [
        ('"""Reads config.yaml and checkpoints/last.pt."""\n# writes summary.json\n', []),
        ('path = run / "metrics.jsonl"\n', [1]),
        ('x = 1\nf"{run}/checkpoints/{step}.pt"\n', [2]),
        ('names = ("config.yaml",\n "plots")\n', [1, 2]),
        ('fd = open(run / ".lock")\n', [1]),
        ('tmp = name.endswith(".flowforge.tmp")\n', [1]),
        ('def f():\n    """best.pt"""\n    return "best.pt"\n', [3]),
        ('LIMIT = 3\n"""Read from summary.json."""\n', []),
        ('msg = "its checkpoints are kept; the plots drawn"\n', []),
        ('lock = threading.RLock()\nname = "x.lock.json"\n', []),
    ],
)
def test_the_scan_flags_code_literals_and_leaves_prose(code, hits):
    assert [line for line, _ in named_files(code)] == hits
