"""`flowforge report`: a static, self-contained page of one run or several (flowforge.report);
the browser test opens it in headless Chromium."""

import json
import re

import pytest

from browser import browser, pixel_spread, screenshot_dir  # noqa: F401
from flowforge.cli import main
from flowforge.config import ConfigError, parse_config
from flowforge.report import render_report, write_report
from flowforge.report.page import collect_run
from flowforge.runs import train_run


def tiny_run(tmp_path, name, steps=20, plots=True, **data):
    cfg = parse_config(
        {
            "name": name,
            "output_dir": str(tmp_path),
            "data": {"name": "moons", "n_train": 1000, "n_val": 200, "n_test": 500, **data},
            "model": {"name": "realnvp", "couplings": 2, "hidden": [16]},
            "train": {"steps": steps, "batch_size": 64, "eval_every": 10},
        }
    )
    return train_run(cfg, progress=False, plots=plots).run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    return tiny_run(tmp, "a"), tiny_run(tmp, "b", steps=10)


def test_one_run_page_holds_summary_figures_config_and_commands(runs):
    page = write_report([runs[0]])
    assert page == runs[0] / "report.html"
    text = page.read_text()
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert f"{summary['test_nll']:.6g}" in text
    for figure in ("density", "layers", "curves"):
        assert f'data-figure="{figure}"' in text
    assert "data:image/png;base64," in text and 'href="plots/density.svg"' in text
    assert "couplings: 2" in text  # the config
    assert f"flowforge train {runs[0]}/config.yaml" in text
    assert "torch" in text and "Versions" in text
    # self-contained: nothing fetched from elsewhere, no script
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<script" not in text


def test_resume_commands_and_escaping(tmp_path):
    run_dir = tiny_run(tmp_path, "r<x>", steps=10, plots=False)
    train_run(resume=run_dir, overrides=["train.steps=20"], progress=False, plots=False)
    report = collect_run(run_dir)
    assert any("--resume" in c and "--set train.steps=20" in c for c in report.commands)
    text = render_report([report])
    assert "r&lt;x&gt;" in text and "r<x>" not in text  # autoescaped
    assert "No figures" in text


def test_cli_report_compares_runs_and_draws_missing_figures(tmp_path, runs, capsys):
    bare = tiny_run(tmp_path, "bare", steps=10, plots=False)
    out = tmp_path / "cmp.html"
    assert main(["report", str(runs[0]), str(runs[1]), str(bare), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count('<tr data-run="') == 3 and "3 runs compared" in text
    assert (bare / "plots" / "density.png").is_file()  # drawn for the page
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a run directory" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=".html"):
        write_report([runs[0]], tmp_path / "page.txt")


@pytest.mark.slow
def test_report_in_a_browser(browser, runs, tmp_path):  # noqa: F811
    out = tmp_path / "report.html"
    write_report(list(runs), out)
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(out.as_uri())
    page.wait_for_load_state("load")
    assert not errors
    # every request is the page itself or an inlined image: self-contained
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    for run_dir in runs:
        summary = json.loads((run_dir / "summary.json").read_text())
        section = page.locator(f'section.run[data-run="{summary["name"]}"]')
        for key in ("test_nll", "steps", "gap", "entropy", "parameters"):
            shown = section.locator(f'table.summary td[data-key="{key}"]').inner_text()
            assert float(shown) == pytest.approx(summary[key], rel=1e-5), key
        images = section.locator("figure img")
        assert images.count() >= 6
        for i in range(images.count()):
            img = images.nth(i)
            assert img.evaluate("e => e.complete && e.naturalWidth > 0")
            assert pixel_spread(img.screenshot()) > 0.05, img.get_attribute("alt")
    row = page.locator('#summary-table tr[data-run="a"] td[data-key="test_nll"]').inner_text()
    assert float(row) == pytest.approx(
        json.loads((runs[0] / "summary.json").read_text())["test_nll"], rel=1e-5
    )
    shots = screenshot_dir()
    if shots:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "report.png"))
    page.close()
