"""The paper-protocol table is generated from the committed run records (scripts/records.py)."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _records_module():
    spec = importlib.util.spec_from_file_location("records", ROOT / "scripts" / "records.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_table_matches_the_committed_records():
    assert _records_module().main(["tables", "--check"]) == 0


def _record(folder, summary=None, value=4.36):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"train": {"steps": 1000}, "model": {"name": "nice"}})
    )
    metrics = [
        {"step": 0, "event": "start", "chosen": "x"},
        {"step": 100, "val_nll": 3000.0, "val_stderr": 5.0, "val_bpd": 5.5, "elapsed": 1800.0},
        {"step": 200, "val_nll": 2700.0, "val_stderr": 5.0, "val_bpd": 4.9, "elapsed": 3600.0},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    meta = {"title": "NICE", "paper": "Dinh", "value": value, "unit": "bits/dim"}
    meta.update(command="flowforge train x.yaml", threads=2)
    (folder / "record.yaml").write_text(yaml.safe_dump(meta))
    if summary:
        (folder / "summary.json").write_text(json.dumps(summary))


def test_a_row_states_paper_ours_gap_budget_and_whether_reached(tmp_path):
    records = _records_module()
    _record(tmp_path / "running")
    row = records.row(records.read_record(tmp_path / "running"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].startswith("4.900 ± ") and "validation (best of step 200), in progress" in row
    assert cells[4] == "+0.540" and cells[6] == "not yet"
    assert cells[5] == "200 of 1,000 steps (20.0 %), 2.0 CPU-h"  # 3600 s x 2 threads
    # finished: the test number, and reached within 1 % of the paper's
    _record(tmp_path / "done", {"test_bpd": 4.38, "test_bpd_stderr": 0.01}, value=4.36)
    row = records.row(records.read_record(tmp_path / "done"))
    assert "4.380 ± 0.010 (test)" in row and "**reached**" in row
    # in progress, a validation number at the paper's is not yet the paper's (a test number)
    _record(tmp_path / "close", value=4.9)
    row = records.row(records.read_record(tmp_path / "close"))
    assert "on validation so far; test pending" in row and "**reached**" not in row


def test_a_vae_in_progress_is_read_from_its_validation_elbo_and_finished_from_its_iwae_bound(
    tmp_path,
):
    records = _records_module()
    folder = tmp_path / "vae"
    _record(folder, value=85.1)
    metrics = [
        {"step": 5000, "val_neg_elbo": 114.96, "val_stderr": 0.27, "elapsed": 3600.0},
        {"step": 10000, "val_neg_elbo": 101.5, "val_stderr": 0.25, "elapsed": 7200.0},
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    meta = yaml.safe_load((folder / "record.yaml").read_text())
    (folder / "record.yaml").write_text(yaml.safe_dump({**meta, "unit": "nats (IWAE bound)"}))
    row = records.row(records.read_record(folder))
    assert "101.50 ± 0.25 (validation -ELBO" in row and "step 10,000), in progress" in row
    records.curve(records.read_record(folder), tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 0
    (folder / "summary.json").write_text(json.dumps({"test_nll": 86.0, "test_nll_stderr": 0.1}))
    assert "86.00 ± 0.10 (test)" in records.row(records.read_record(folder))


def test_an_incomplete_record_is_refused_by_name(tmp_path):
    records = _records_module()
    _record(tmp_path / "bad")
    (tmp_path / "bad" / "record.yaml").write_text(yaml.safe_dump({"title": "x", "unit": "cm"}))
    with pytest.raises(SystemExit, match="record.yaml: needs"):
        records.read_record(tmp_path / "bad")


def test_a_logit_space_record_reads_its_own_numbers(tmp_path):
    records = _records_module()
    _record(tmp_path / "maf", value=1300.5)
    meta = yaml.safe_load((tmp_path / "maf" / "record.yaml").read_text())
    (tmp_path / "maf" / "record.yaml").write_text(
        yaml.safe_dump({**meta, "unit": "logit-space nats"})
    )
    metrics = [{"step": 100, "val_nll": 1100.0, "val_stderr": 2.0, "elapsed": 60.0}]
    metrics[0].update(val_logit_nll=1400.25, val_logit_nll_stderr=1.0)
    (tmp_path / "maf" / "metrics.jsonl").write_text(json.dumps(metrics[0]) + "\n")
    rec = records.read_record(tmp_path / "maf")
    assert records.ours(rec)[:2] == (1400.25, 1.0)
    summary = {"test_logit_nll": 1299.0, "test_logit_nll_stderr": 0.9}
    (tmp_path / "maf" / "summary.json").write_text(json.dumps(summary))
    row = records.row(records.read_record(tmp_path / "maf"))
    assert "1299.0 ± 0.9 (test)" in row and "| -1.5 |" in row and "**reached**" in row
