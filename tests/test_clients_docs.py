"""Every ```python block of docs/clients.md runs (the page's examples are tests)."""

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "clients.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_has_its_four_examples():
    assert len(BLOCKS) == 4


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_block_runs(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sbi writes TensorBoard logs to ./sbi-logs
    code = BLOCKS[i]
    for library in ("pyro", "sbi"):
        if f"from {library}" in code or f"import {library}" in code:
            pytest.importorskip(library)
    exec(compile(code, f"{PAGE.name}[block {i}]", "exec"), {})
