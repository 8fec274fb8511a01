"""The deep Boltzmann machine's own mechanics against exact enumeration on a DBM small enough
to enumerate (4 visible, 3 and 2 hidden units: 512 joint states): the layers summed out, log Z
(the oracle of AIS and of the uniform second estimate), the mean-field fixed point and its
bound, Gibbs sampling, the surrogates' gradients and the training phases. The checks every
objective shares (resume bit-identical, eval, load and sample without data, the persistent
chains in the checkpoint) are tests/test_objectives.py's, case ``dbm`` of helpers.CASES."""

import pytest
import torch

import flowforge.data.binarized_mnist
from flowforge.models.ais import all_states
from flowforge.models.dbm import DBM


def _random_dbm(seed: int, scale: float, sizes=(4, 3, 2)) -> DBM:
    torch.manual_seed(seed)
    dbm = DBM(*sizes, init_scale=scale).double()
    with torch.no_grad():
        for bias in (dbm.visible_bias, dbm.hidden1_bias, dbm.hidden2_bias):
            bias.normal_(0, scale)
    return dbm


def _joint(dbm: DBM) -> tuple[torch.Tensor, ...]:
    """Every joint state (v, h1, h2) and its log unnormalised probability -E."""
    states = all_states(dbm.visible + dbm.hidden1 + dbm.hidden2, dbm.weight1)
    v, h1, h2 = dbm.split(states)
    return v, h1, h2, -dbm.energy(v, h1, h2).detach()


def _log_sum_where(log_p: torch.Tensor, layer: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """log of the sum of exp(log_p) over the joint states whose ``layer`` equals ``state``."""
    return torch.logsumexp(log_p[(layer == state).all(1)], 0)


@pytest.mark.parametrize("seed, scale", [(0, 1.0), (1, 2.0)])
def test_the_free_energies_sum_out_their_layers(seed, scale):
    """F(v, h2) sums out h1, log p*(h1) sums out v and h2, log Z sums out everything: each
    equal to the sum over the 512 joint states."""
    dbm = _random_dbm(seed, scale)
    v, h1, h2, log_p = _joint(dbm)
    with torch.no_grad():
        for a in all_states(4, v):
            for c in all_states(2, v):
                joint = torch.logsumexp(log_p[(v == a).all(1) & (h2 == c).all(1)], 0)
                assert float(-dbm.free_energy(a[None], c[None])) == pytest.approx(float(joint))
        for s in all_states(3, v):
            expected = float(_log_sum_where(log_p, h1, s))
            assert float(dbm.log_unnormalized_hidden1(s[None])) == pytest.approx(expected)
    assert dbm.log_z_exact() == pytest.approx(float(torch.logsumexp(log_p, 0)), abs=1e-12)


@pytest.mark.parametrize("seed, scale, base", [(0, 0.5, False), (1, 1.0, False), (2, 2.0, True)])
def test_ais_log_z_is_within_three_standard_errors_of_the_exact_one(seed, scale, base):
    """AIS over h1 (v and h2 summed out), 100 chains x 1,000 temperatures, against
    enumeration; with a uniform base model or one with visible biases."""
    dbm = _random_dbm(seed, scale)
    exact = dbm.log_z_exact()
    torch.manual_seed(10 + seed)
    bias = torch.randn(4, dtype=torch.float64) if base else None
    ais = dbm.ais(chains=100, betas=1000, base_bias=bias)
    assert ais.chains == 100 and ais.steps == 1000
    assert abs(ais.log_z - exact) < 3 * ais.stderr + 1e-3
    assert ais.log_z_low < exact < ais.log_z_high


def test_ais_of_a_bigger_dbm_matches_the_exact_log_z():
    """12 visible, 10 and 6 hidden units, weights of scale 1 (2**10 states of h1 enumerated)."""
    dbm = _random_dbm(3, 1.0, sizes=(12, 10, 6))
    torch.manual_seed(4)
    ais = dbm.ais(chains=100, betas=2000)
    assert abs(ais.log_z - dbm.log_z_exact()) < 3 * ais.stderr + 1e-3


def test_the_uniform_importance_sampling_log_z_matches_the_exact_one():
    dbm = _random_dbm(0, 1.0)
    torch.manual_seed(1)
    assert dbm.log_z_uniform(20_000) == pytest.approx(dbm.log_z_exact(), abs=0.02)


def test_the_mean_field_fixed_point_satisfies_its_equations():
    """mu1 = sigmoid(c1 + W1 v + W2^T mu2), mu2 = sigmoid(c2 + W2 mu1) at the fixed point;
    its bound lies below the exact log p*(v) by KL(q || p(h | v)), computed by enumeration."""
    dbm = _random_dbm(0, 1.0)
    v = all_states(4, dbm.weight1)
    with torch.no_grad():
        mu1, mu2 = dbm.mean_field(v, steps=500, tol=1e-12)
        r1 = mu1 - torch.sigmoid(dbm.hidden1_bias + v @ dbm.weight1.T + mu2 @ dbm.weight2)
        r2 = mu2 - torch.sigmoid(dbm.hidden2_bias + mu1 @ dbm.weight2.T)
        assert float(r1.abs().max()) < 1e-10 and float(r2.abs().max()) < 1e-10
        bound = dbm.variational_bound(v, mu1, mu2)
        started = dbm.variational_bound(v, *dbm.mean_field(v, steps=0))
        vj, h1, h2, log_p = _joint(dbm)
        for i, a in enumerate(v):
            rows = (vj == a).all(1)
            log_p_v = torch.logsumexp(log_p[rows], 0)
            # KL(q || p(h|v)) = log p*(v) - bound, q factorial over (h1, h2)
            q = torch.where(h1[rows] == 1, mu1[i], 1 - mu1[i]).prod(1) * torch.where(
                h2[rows] == 1, mu2[i], 1 - mu2[i]
            ).prod(1)
            kl = (q * (q.log() - (log_p[rows] - log_p_v))).sum()
            assert float(log_p_v - bound[i]) == pytest.approx(float(kl), abs=1e-10)
            assert float(kl) >= 0
    assert bool((bound >= started - 1e-12).all())  # the iterations tightened the bound


def test_the_mean_field_stops_once_the_means_settle():
    """With a tolerance, the iterations stop at the first sweep that moves no mean by more."""
    dbm = _random_dbm(0, 1.0)
    v = all_states(4, dbm.weight1)
    with torch.no_grad():
        path = [torch.cat(dbm.mean_field(v, steps=n, tol=0), 1) for n in range(40)]
        moves = [float((b - a).abs().max()) for a, b in zip(path[:-1], path[1:], strict=True)]
        first = next(n for n, m in enumerate(moves, 1) if m <= 1e-4)
        assert 2 < first < 39
        assert torch.equal(torch.cat(dbm.mean_field(v, steps=1000, tol=1e-4), 1), path[first])


def test_dbm_gibbs_samples_follow_the_exact_distribution():
    """Long Gibbs chains of a tiny DBM visit the visible states with their exact marginal
    probabilities (h1 and h2 summed out by enumeration)."""
    dbm = _random_dbm(0, 1.0, sizes=(3, 2, 2))
    vj, _, _, log_p = _joint(dbm)
    states = all_states(3, dbm.weight1)
    p = torch.softmax(torch.stack([_log_sum_where(log_p, vj, s) for s in states]), 0)
    torch.manual_seed(1)
    chains = dbm.gibbs(torch.bernoulli(torch.full((4000, 7), 0.5, dtype=torch.float64)), 50)
    v = dbm.split(chains)[0]
    freq = torch.stack([(v == s).all(1).double().mean() for s in states])
    assert torch.allclose(freq, p, atol=0.03)


def test_the_joint_surrogate_has_the_stochastic_approximation_gradient():
    """d/dW1 [mean E(v, mu) - mean E(v~, h~)] = -(<mu1 v^T>_data - <h1~ v~^T>_model), and
    likewise for W2 with mu2 mu1^T."""
    dbm = _random_dbm(0, 0.5, sizes=(6, 4, 3))
    torch.manual_seed(1)
    v = torch.bernoulli(torch.full((10, 6), 0.3, dtype=torch.float64))
    with torch.no_grad():
        mu1, mu2 = dbm.mean_field(v)
    chains = dbm.gibbs(torch.bernoulli(torch.full((7, 13), 0.5, dtype=torch.float64)), 3)
    vn, h1n, h2n = dbm.split(chains)
    (dbm.energy(v, mu1, mu2).mean() - dbm.energy(vn, h1n, h2n).mean()).backward()
    assert torch.allclose(dbm.weight1.grad, -(mu1.T @ v / 10 - h1n.T @ vn / 7))
    assert torch.allclose(dbm.weight2.grad, -(mu2.T @ mu1 / 10 - h2n.T @ h1n / 7))


def test_the_compare_report_names_the_dbms_bound_and_inference():
    from flowforge.compare import latent_inference, nll_kind

    summary = {"objective": "dbm", "ais_chains": 8, "ais_steps": 50, "test_nll": 1.0}
    assert nll_kind(summary) == "mean-field bound, AIS (8 chains, 50 steps)"
    assert latent_inference(DBM(4, 3, 2)) == "mean-field q(h|v)"


# -- the objective on binarized MNIST -----------------------------------------------------------


@pytest.fixture
def mnist_objective(tmp_path):
    """The tiny case's objective and model (helpers.CASES['dbm']: 5 steps per pretraining
    phase); skips when binarized MNIST is absent."""
    if not flowforge.data.binarized_mnist.DEFAULT_PATH.is_file():
        pytest.skip("binarized MNIST not found in the shared data folder")
    from flowforge.config import parse_config
    from flowforge.runs.build import build_from_spec, load_data, make_objective, model_spec
    from helpers import case_config

    cfg = parse_config({**case_config("dbm"), "output_dir": str(tmp_path)})
    objective = make_objective(cfg, torch.device("cpu"), load_data(cfg))
    return objective, build_from_spec(model_spec(cfg, objective))


def test_each_phase_trains_its_own_parameters(mnist_objective):
    """Pretraining the bottom RBM moves W1, b, c1; the top RBM W2, c2; joint training all,
    and only the joint phase starts the persistent chains."""
    objective, dbm = mnist_objective
    module = objective.training_module(dbm)
    expected = {
        0: {"weight1", "visible_bias", "hidden1_bias"},
        5: {"weight2", "hidden2_bias"},
        10: {n for n, _ in dbm.named_parameters()},
    }
    for step, names in expected.items():
        dbm.zero_grad(set_to_none=True)
        assert objective.state_dict() == {}
        objective.loss(module(*objective.batch(step)), dbm, step).backward()
        assert {n for n, p in dbm.named_parameters() if p.grad is not None} == names
    assert objective.state_dict()["chains"].shape == (16, 784 + 12 + 8)
    assert [objective.phase(s) for s in (4, 5, 9, 10, 10**6)] == [0, 1, 1, 2, 2]


def test_a_state_of_another_shape_is_refused(mnist_objective):
    objective, _ = mnist_objective
    with pytest.raises(ValueError, match="16 chains"):
        objective.load_state_dict({"chains": torch.zeros(3, 804)})
    with pytest.raises(ValueError, match="critic"):
        objective.load_state_dict({"critic": torch.zeros(1)})


@pytest.mark.parametrize("option, value", [("chains", 0), ("k", 0), ("eval_chains", 1)])
def test_options_out_of_range_are_named(option, value, tmp_path):
    if not flowforge.data.binarized_mnist.DEFAULT_PATH.is_file():
        pytest.skip("binarized MNIST not found in the shared data folder")
    from flowforge.config import ConfigError, parse_config
    from flowforge.runs.build import load_data, make_objective
    from helpers import case_config

    config = case_config("dbm")
    config["objective"][option] = value
    cfg = parse_config({**config, "output_dir": str(tmp_path)})
    with pytest.raises(ConfigError, match=f"objective.{option}: should be >= "):
        make_objective(cfg, torch.device("cpu"), load_data(cfg))
