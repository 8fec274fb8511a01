"""`flowforge report`: a static, self-contained page of one run or several (flowforge.report);
the browser test opens it in headless Chromium."""

import json
import re
import shutil

import pytest

from browser import browser, pixel_spread, screenshot_dir  # noqa: F401
from flowforge.cli import main
from flowforge.config import ConfigError, parse_config
from flowforge.objectives.results import read_evaluation
from flowforge.report import render_report, write_report
from flowforge.report.page import collect_run
from flowforge.report.yardstick import yardstick_lines, yardstick_view
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


# a yardstick block as training writes it (the shared schema), by hand
YARDSTICK = {
    "split": "test",
    "n": 5394,
    "unit": "nats",
    "flow": {"nll": 3.01, "stderr": 0.02},
    "baselines": {
        "gaussian": {
            "label": "Gaussian (full covariance)",
            "nll": 4.1,
            "stderr": 0.02,
            "diff": -1.09,
            "diff_stderr": 0.01,
            "fit_seconds": 0.01,
            "chosen": "",
            "note": "",
        },
        "gmm": {
            "label": "Gaussian mixture",
            "nll": 3.2,
            "stderr": 0.02,
            "diff": -0.19,
            "diff_stderr": 0.01,
            "fit_seconds": 4.2,
            "chosen": "12 components, full covariance",
            "note": "",
        },
        "kde": {
            "label": "Kernel density",
            "nll": 3.4,
            "stderr": 0.03,
            "diff": -0.39,
            "diff_stderr": 0.02,
            "fit_seconds": 9.5,
            "chosen": "bandwidth 0.12 (standardised units)",
            "note": "fitted on 10,000 of 43,152 training rows",
        },
    },
    "best": "gmm",
    "verdict": "beats",
    "margin": -0.19,
    "margin_stderr": 0.01,
    "note": "the baselines had 60 s",
}


def with_margin(margin, stderr, **drop):
    """YARDSTICK with the flow ``margin`` nats/row from the best baseline, gmm."""
    gmm = {**YARDSTICK["baselines"]["gmm"], "diff": margin, "diff_stderr": stderr}
    block = {**YARDSTICK, "baselines": {**YARDSTICK["baselines"], "gmm": gmm}}
    block.update(margin=margin, margin_stderr=stderr)
    return {k: v for k, v in block.items() if k not in drop}


def test_yardstick_sentence_says_beats_ties_or_loses():
    view = yardstick_view(YARDSTICK)
    assert view.verdict == "beats" and [b.key for b in view.baselines if b.best] == ["gmm"]
    assert view.sentence == (
        "The flow beats the best baseline, Gaussian mixture (12 components, full covariance), "
        "by 0.190 ± 0.010 nats/row on the 5,394 test rows."
    )
    ties = yardstick_view(with_margin(0.01, 0.02, verdict=None))  # no verdict: the rule
    assert ties.verdict == "ties" and "ties the best baseline" in ties.sentence
    assert "+0.010 ± 0.020" in ties.sentence
    loses = yardstick_view(with_margin(0.49, 0.05, verdict=None))
    assert loses.verdict == "loses"
    assert loses.sentence.startswith("The flow does not beat the baselines: Gaussian mixture")
    assert "0.490 ± 0.050 nats/row lower test NLL" in loses.sentence
    assert yardstick_view({**YARDSTICK, "verdict": "loses"}).verdict == "loses"  # as recorded


def test_yardstick_tolerates_missing_keys_and_skips():
    skipped = yardstick_view({"skipped": "images have no baselines"})
    assert skipped.skipped == "images have no baselines" and not skipped.baselines
    assert skipped.sentence == "No yardstick: images have no baselines."
    assert yardstick_view(None) is None and yardstick_view("junk") is None
    # no best, no verdict, no margin: the lowest NLL is the best, the verdict from its diff
    bare = {"baselines": {"a": {"nll": 2.0, "diff": 0.5, "diff_stderr": 0.1}, "b": {"nll": 1.0}}}
    view = yardstick_view(bare)
    assert [b.key for b in view.baselines if b.best] == ["b"] and view.verdict is None
    assert "records no paired difference" in view.sentence
    view = yardstick_view({"baselines": {"a": {"nll": 2.0, "diff": 0.5, "diff_stderr": 0.1}}})
    assert view.verdict == "loses" and view.flow_nll is None and view.n is None
    assert "no baseline" in yardstick_view({"flow": {"nll": 1.0}}).sentence
    lines = yardstick_lines(YARDSTICK)
    assert lines[0] == yardstick_view(YARDSTICK).sentence
    assert any("Gaussian mixture" in line and "[best]" in line for line in lines)
    assert yardstick_lines(None) == []


def test_the_headline_of_a_summary_without_its_block_comes_from_its_objective():
    """Summaries written before the ``headline`` block: the objective reads its own numbers,
    so a VAE's headline has its error bar (``test_nll_stderr``), a flow's its own."""
    vae = {"objective": "iwae", "test_elbo": -3.2, "test_nll": 3.0, "test_nll_stderr": 0.04}
    h = read_evaluation({**vae, "eval_k": 5}).headline
    assert (h.value, h.stderr, h.kind, h.how) == (3.0, 0.04, "bound", "IWAE bound, k=5")
    h = read_evaluation({"objective": "mle", "test_nll": 3.0, "test_stderr": 0.02}).headline
    assert (h.value, h.stderr, h.unit, h.kind) == (3.0, 0.02, "nats", "exact")
    assert read_evaluation({"kl": 0.1}) is None  # no objective named: no headline guessed


def test_a_vae_summary_shows_its_error_bar(runs, tmp_path):
    """The report's headline of an older VAE summary (``test_nll_stderr``) has its ± and kind."""
    path = tmp_path / "vae"
    shutil.copytree(runs[0], path)
    summary = json.loads((path / "summary.json").read_text())
    for key in ("headline", "nll", "measures", "test_stderr", "gap", "entropy"):
        summary.pop(key, None)
    summary.update(objective="elbo", test_elbo=-3.25, test_nll=3.125, test_nll_stderr=0.0625)
    summary.update(eval_k=7)
    (path / "summary.json").write_text(json.dumps(summary))
    text = write_report([path], tmp_path / "page.html").read_text()
    assert 'data-key="headline">3.125</span> ± <span data-key="headline_stderr">0.0625' in text
    assert "IWAE bound, k=7" in text and "test ELBO -3.25" in text


def test_report_shows_the_yardstick_names_and_why_the_run_stopped(runs, tmp_path):
    shown, skipped = tmp_path / "shown", tmp_path / "skipped"
    for path, block in ((shown, YARDSTICK), (skipped, {"skipped": "toy data: true entropy"})):
        shutil.copytree(runs[0], path)
        summary = json.loads((path / "summary.json").read_text())
        summary.update(
            yardstick=block,
            features=["bill_length_mm", "body_mass_g"],
            context=["species=Adelie", "species=Gentoo"],
            stopped="early_stop",
        )
        (path / "summary.json").write_text(json.dumps(summary))
    text = write_report([shown, skipped], tmp_path / "page.html").read_text()
    assert text.count('data-verdict="beats"') == 1 and 'data-verdict="skipped"' in text
    assert "The flow beats the best baseline, Gaussian mixture" in text
    assert "No yardstick: toy data: true entropy." in text
    for key in ("flow", "gaussian", "gmm", "kde"):
        assert text.count(f'data-baseline="{key}"') == 1, key
    row = re.search(r'<tr class="best" data-baseline="gmm">(.*?)</tr>', text).group(1)
    for cell in ("Gaussian mixture (best)", "3.200", "0.020", "-0.190", "0.010", "4.2"):
        assert cell in row
    assert "12 components, full covariance" in row
    assert "fitted on 10,000 of 43,152 training rows" in text and "the baselines had 60 s" in text
    assert "beats gmm: -0.190 ± 0.010" in text  # the comparison table's column
    assert "<code>bill_length_mm</code>, <code>body_mass_g</code>" in text
    assert "<code>species=Adelie</code>" in text
    assert text.count("Stopped: early stopping") == 2
    assert 'data-key="yardstick" data-value' not in text  # not dumped as a dict


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
    row = page.locator('#summary-table tr[data-run="a"] td[data-key="headline"]').inner_text()
    assert float(row) == pytest.approx(
        json.loads((runs[0] / "summary.json").read_text())["test_nll"], rel=1e-5
    )
    shots = screenshot_dir()
    if shots:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "report.png"))
    page.close()


def test_write_report_draws_the_figures_of_runs_without_any_when_asked(tmp_path):
    from flowforge.runs.figures import draw_missing_figures

    bare = tiny_run(tmp_path, "bare", steps=2, plots=False)
    write_report([bare], tmp_path / "plain.html")
    assert not list((bare / "plots").glob("*.png"))  # not asked: not drawn
    write_report([bare], tmp_path / "drawn.html", draw=True)
    drawn = sorted((bare / "plots").glob("*.png"))
    assert bare / "plots" / "density.png" in drawn
    assert draw_missing_figures([bare]) == []  # a run with figures is left as it is
