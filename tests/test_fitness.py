import math

import pytest

from neuroevo.config import FitnessConfig, from_dict
from neuroevo.errors import ConfigError
from neuroevo.evolve.fitness import Evaluation, evaluate, fitness, loss_term, size_term

REF = FitnessConfig()  # lam 0.75, gamma 0.25, S 5e6


@pytest.mark.parametrize("d_loss, g_loss, pg, pd_, expected", [
    # 0.75 * tanh(0.01 * (1/1.2 + 1/0.8)) + 0.25 * tanh(5e6 / 3e6)
    (1.2, 0.8, 1_000_000, 2_000_000, 0.75 * math.tanh(0.01 * (1 / 1.2 + 1 / 0.8)) + 0.25 * math.tanh(5 / 3)),
    # by hand: 1/0.5 + 1/0.25 = 6 -> tanh(0.06) = 0.059928; P = 1 -> tanh(1) = 0.761594
    (0.5, 0.25, 2_500_000, 2_500_000, 0.75 * 0.0599281 + 0.25 * 0.7615942),
    # a huge network: the size term vanishes
    (1.0, 1.0, 10**12, 10**12, 0.75 * math.tanh(0.02) + 0.25 * math.tanh(5e6 / 2e12)),
])
def test_reference_formula(d_loss, g_loss, pg, pd_, expected):
    assert fitness(d_loss, g_loss, pg, pd_, REF) == pytest.approx(expected, rel=1e-6)


def test_imagenet_scale():
    cfg = FitnessConfig(scale=5e7)
    assert fitness(1.0, 1.0, 25_000_000, 25_000_000, cfg) == pytest.approx(
        0.75 * math.tanh(0.02) + 0.25 * math.tanh(1.0))


def test_zero_loss_is_the_limit_not_a_crash():
    assert loss_term(0.0, 0.7) == 1.0
    assert loss_term(0.0, 0.0) == 1.0
    assert fitness(0.0, 0.7, 1, 1, REF) == pytest.approx(0.75 + 0.25 * math.tanh(2.5e6))


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, -math.inf])
def test_negative_or_non_finite_loss_scores_zero_loss_term(bad):
    assert loss_term(bad, 0.7) == 0.0
    assert loss_term(0.7, bad) == 0.0
    f = fitness(bad, 0.7, 1000, 1000, REF)
    assert math.isfinite(f) and f == pytest.approx(0.25 * math.tanh(2500))


def test_size_term_edge_and_monotone():
    assert size_term(0, 0, 5e6) == 1.0
    assert size_term(10, 10, 5e6) > size_term(10**7, 10**7, 5e6) > 0


def test_lower_loss_and_fewer_params_score_higher():
    assert fitness(0.5, 0.5, 10**6, 10**6, REF) > fitness(1.0, 1.0, 10**6, 10**6, REF)
    assert fitness(1.0, 1.0, 10**5, 10**5, REF) > fitness(1.0, 1.0, 10**7, 10**7, REF)


def test_weights_must_sum_to_one():
    with pytest.raises(ConfigError, match=r"fitness.lam \+ fitness.gamma"):
        from_dict({"fitness": {"lam": 0.8, "gamma": 0.3}})


def _result(status="ok", d_loss=1.2, g_loss=0.8):
    from neuroevo.train.results import TrainResult
    return TrainResult(status, "" if status == "ok" else "non-finite loss", d_loss, g_loss, (d_loss,), (g_loss,),
                       1_000_000, 2_000_000, 1.0, 1.0, "cpu")


def test_evaluation_of_a_trained_failed_or_lost_chromosome():
    failed = FitnessConfig(failed=-1.0)
    assert evaluate(_result(), REF) == Evaluation("ok", "", fitness(1.2, 0.8, 1_000_000, 2_000_000, REF))
    assert evaluate(_result(d_loss=2.0), REF, "hinge").fitness == fitness(2.0, 0.8, 1_000_000, 2_000_000, REF, "hinge")
    assert evaluate(_result("diverged"), failed) == Evaluation("diverged", "non-finite loss", -1.0)
    assert evaluate(None, failed, failure=("lost", "WorkerCrashedError: ...")) == \
        Evaluation("lost", "WorkerCrashedError: ...", -1.0)
