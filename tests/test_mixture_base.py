"""The Gaussian-mixture base started from the data (flowforge.distributions.GaussianMixture)."""

import math

import pytest
import torch

from flowforge.distributions import GaussianMixture, StandardNormal, base_distribution
from flowforge.models import maf, nsf


def _clusters(n=600, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(3, (n,), generator=g)
    centres = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]])
    return centres[labels] + 0.7 * torch.randn(n, 2, generator=g)


def test_before_its_start_it_is_the_standard_normal():
    z = torch.randn(50, 3)
    mix = GaussianMixture(3, 4).eval()
    assert torch.allclose(mix.log_prob(z), StandardNormal(3).log_prob(z), atol=1e-5)
    assert not bool(mix.initialized)  # evaluation does not start it


def test_the_start_finds_the_clusters_by_bic_and_the_density_integrates_to_one():
    x = _clusters()
    mix = GaussianMixture(2, 6).train()
    mix.log_prob(x)  # the first training-mode call starts it
    assert bool(mix.initialized)
    weights = torch.softmax(mix.logits.detach(), 0)
    assert int((weights > 0.01).sum()) == 3
    assert sorted(float(w) for w in weights if w > 0.01) == pytest.approx([1 / 3] * 3, abs=0.08)
    # integrates to 1 on a grid (the oracle of a density)
    u = torch.linspace(-12, 12, 481)
    grid = torch.cartesian_prod(u, u)
    with torch.no_grad():
        mass = torch.exp(mix.eval().log_prob(grid)).sum() * (u[1] - u[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-3)
    # samples follow the fitted density: their mean log-density matches the data's
    torch.manual_seed(0)
    s = mix.sample(20000)
    with torch.no_grad():
        assert float(mix.log_prob(s).mean()) == pytest.approx(
            float(mix.log_prob(x).mean()), abs=0.1
        )


def test_held_out_points_choose_the_count_and_the_covariance_kind():
    # 3 clusters from 36 rows: BIC's cap (n / 2 per-component parameters) allows 3 at most;
    # held out, the count is free and the likelihood of new points picks 3
    x, held_out = _clusters(36, seed=1), _clusters(300, seed=2)
    chosen = GaussianMixture(2, 8).start(x, held_out)
    assert chosen.startswith("3 ") and chosen.endswith("components")
    # 8 independent features from 40 rows: a full covariance overfits, a diagonal one does not
    g = torch.Generator().manual_seed(3)
    scales = torch.linspace(0.5, 4.0, 8)
    x, held_out = (torch.randn(n, 8, generator=g) * scales for n in (40, 2000))
    mix = GaussianMixture(8, 4)
    assert mix.start(x, held_out) == "1 diag-covariance component"
    with torch.no_grad():
        full = GaussianMixture(8, 4)
        full.start(x)  # by BIC: full covariance only
        assert mix.log_prob(held_out).mean() > full.log_prob(held_out).mean() + 0.1


def test_a_loaded_mixture_does_not_start_again():
    mix = GaussianMixture(2, 4).train()
    mix.log_prob(_clusters())
    state = mix.state_dict()
    again = GaussianMixture(2, 4)
    again.load_state_dict(state)
    again.train().log_prob(torch.randn(100, 2) * 50)  # would refit if it started
    assert torch.equal(again.means, mix.means)


def test_recipes_take_the_mixture_base_and_train_through_it():
    x = _clusters(400)
    for flow in (nsf(2, layers=1, hidden=8, base="mixture", components=4), maf(2, base="mixture")):
        flow.train()
        loss = -flow.log_prob(x).mean()
        loss.backward()
        assert math.isfinite(float(loss)) and flow.base.means.grad is not None
    with pytest.raises(ValueError, match="'base'"):
        base_distribution("student", 2)
    with pytest.raises(ValueError, match="'base'"):
        nsf(2, base="mog")


def test_eval_at_start_validates_the_started_mixture_before_the_first_step(tmp_path):
    import json

    import numpy as np

    from flowforge.config import parse_config
    from flowforge.runs import train_run

    path = tmp_path / "clusters.csv"
    np.savetxt(path, _clusters(500).numpy(), delimiter=",", header="a,b", comments="")
    raw = {
        "name": "mix",
        "output_dir": str(tmp_path),
        "data": {"name": "file", "path": str(path), "n_train": 400, "n_val": 50, "n_test": 50},
        "model": {"name": "nsf", "layers": 1, "hidden": 8, "base": "mixture"},
        "train": {"steps": 4, "eval_every": 2, "eval_at_start": True, "lr": 1e-9},
        "objective": {"name": "mle", "yardstick": "off"},
    }
    train_run(parse_config(raw), progress=False, plots=False)
    records = [json.loads(line) for line in (tmp_path / "mix" / "metrics.jsonl").open()]
    # the base is started on the whole splits (components chosen on validation), recorded
    assert records[0]["event"] == "start"
    assert records[0]["chosen"].startswith("mixture base started with 3 ")
    assert records[0]["chosen"].endswith("(chosen on validation)")
    records = records[1:]
    assert records[0]["step"] == 0 and [r["step"] for r in records[1:]] == [2, 4]
    # at step 0 the base already holds the three clusters: far better than one Gaussian
    one = torch.distributions.MultivariateNormal(
        torch.zeros(2), torch.cov(_clusters(500)[:400].T)
    ).log_prob(_clusters(500)[400:450] - _clusters(500)[:400].mean(0))
    assert records[0]["val_nll"] < -float(one.mean()) - 0.5
    raw["name"], raw["train"]["eval_at_start"] = "plain", False
    train_run(parse_config(raw), progress=False, plots=False)
    first = json.loads((tmp_path / "plain" / "metrics.jsonl").open().readline())
    assert first["step"] == 2  # off by default: the first record is the first evaluation


def _file_run(tmp_path, x, name, **train):
    import numpy as np

    from flowforge.config import parse_config
    from flowforge.runs import train_run

    path = tmp_path / f"{name}.csv"
    np.savetxt(path, x, delimiter=",", header="a,b,c", comments="")
    raw = {
        "name": name,
        "output_dir": str(tmp_path),
        "data": {
            "name": "file",
            "path": str(path),
            "standardize": "linear",
            **{"n_train": 300, "n_val": 100, "n_test": 100},
        },
        "model": {"name": "nsf", "layers": 2, "hidden": 8, "base": "mixture", "components": 32},
        "train": {"steps": 2, "eval_every": 2, "eval_at_start": True, "lr": 1e-9, **train},
        "objective": {"name": "mle", "yardstick": "on", "yardstick_seconds": 30},
    }
    train_run(parse_config(raw), progress=False, plots=False)
    return tmp_path / name


def test_a_small_table_starts_as_the_yardsticks_mixture(tmp_path):
    """Below 20,000 rows without a context the base starts as the yardstick's validated
    mixture carried through the flow's affine start: the flow (torch, through its
    standardisation, transforms and base) gives the test rows the density scikit-learn's
    fitted mixture gives them, row by row."""
    import json

    import numpy as np

    rng = np.random.default_rng(4)
    centres = np.array([[-6.0, 0, 100], [6, 0, 90], [0, 8, 110]])
    x = (centres[rng.integers(3, size=500)] + rng.standard_normal((500, 3))) * [1, 3, 0.1]
    run = _file_run(tmp_path, x, "small")
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    assert records[0]["chosen"].startswith("mixture base started as the yardstick's Gaussian")
    block = json.loads((run / "summary.json").read_text())["yardstick"]
    assert block["best"] == "gmm" and block["verdict"] == "ties"
    assert abs(block["margin"]) < 1e-4 and block["margin_stderr"] < 1e-4  # the same density
    assert records[0]["chosen"].endswith(f"({block['baselines']['gmm']['chosen']})")


def test_a_flow_that_does_not_start_affine_starts_its_base_by_its_own_em():
    from flowforge.objectives.mle import _affine_map

    flow = nsf(3, kind="autoregressive", layers=2, hidden=8, base="mixture")
    x = torch.randn(300, 3) * torch.tensor([1.0, 5.0, 0.1]) + 7
    a, b = _affine_map(flow, x)  # at its start the flow is a permutation: affine
    with torch.no_grad():
        z = flow.eval().transform_to_latent(x).double()
    torch.testing.assert_close(x.double() @ a.T + b, z, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # trained away from the identity: no affine map to carry a mixture
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    assert _affine_map(flow, x) is None
