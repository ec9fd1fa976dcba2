"""Each loss and training practice does what it says, and each loss has a defined, bounded fitness."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from neuroevo import config
from neuroevo.config import FitnessConfig
from neuroevo.evolve.fitness import fitness, loss_term
from neuroevo.space import registry
from neuroevo.space.genes import Optimiser
from neuroevo.train import checkpoint, data, losses, trainer
from neuroevo.train.losses import GP_WEIGHT, Objective
from tests.conftest import samples, v2_config


class Scores(nn.Module):
    """A stand-in D: a fixed score per image from its mean pixel (so scores differ between real and fake), its
    features the flattened image; it records the batches it sees."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))
        self.calls: list[torch.Tensor] = []

    def features_and_score(self, x):
        self.calls.append(x)
        return x.flatten(1), self.scale * x.flatten(1).mean(1)

    def forward(self, x):
        return self.features_and_score(x)

    def score(self, x):
        return self.features_and_score(x)[1]


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.rand(8, 3, 4, 4) * 2 - 1, torch.rand(8, 3, 4, 4) * 2 - 1  # real, fake in [-1, 1]


def test_bce_targets_and_label_smoothing(batch):
    real, fake = batch
    D = Scores()
    s_real, s_fake = D.score(real), D.score(fake)

    def expected(target):
        return -(target * F.logsigmoid(s_real) + (1 - target) * F.logsigmoid(-s_real)).mean() - F.logsigmoid(-s_fake).mean()

    assert torch.allclose(Objective("bce").d_loss(D, real, fake), expected(1.0))
    smoothed = Objective("bce", label_smoothing=True).d_loss(D, real, fake)
    assert torch.allclose(smoothed, expected(0.9)) and not torch.allclose(smoothed, expected(1.0))
    assert losses.REAL_SMOOTHED == 0.9
    # one-sided: G's target and the fakes' target are unchanged
    for smoothing in (False, True):
        g = Objective("bce", label_smoothing=smoothing).g_loss(D, real, fake)
        assert torch.allclose(g, -F.logsigmoid(s_fake).mean())


def test_hinge(batch):
    real, fake = batch
    D = Scores(scale=3.0)
    s_real, s_fake = D.score(real), D.score(fake)
    d = Objective("hinge").d_loss(D, real, fake)
    assert torch.allclose(d, torch.clamp(1 - s_real, min=0).mean() + torch.clamp(1 + s_fake, min=0).mean())
    assert torch.allclose(Objective("hinge").g_loss(D, real, fake), -s_fake.mean())


def test_wgan_gp_and_its_gradient_penalty(batch):
    real, fake = batch
    w = torch.randn(48)

    class Linear(Scores):  # D(x) = w . x: its gradient is w everywhere, so GP = (|w| - 1)^2 exactly
        def features_and_score(self, x):
            return x.flatten(1), x.flatten(1) @ (self.scale * w / w.norm())

    for norm in (1.0, 2.0, 0.5):
        D = Linear(scale=norm)
        assert torch.allclose(losses.gradient_penalty(D, real, fake), torch.tensor((norm - 1) ** 2), atol=1e-5)
        d = Objective("wgan-gp").d_loss(D, real, fake)
        assert torch.allclose(d, D.score(fake).mean() - D.score(real).mean() + GP_WEIGHT * (norm - 1) ** 2, atol=1e-4)
        assert torch.allclose(Objective("wgan-gp").g_loss(D, real, fake), -D.score(fake).mean())


def test_feature_matching_adds_the_distance_between_mean_features(batch):
    real, fake = batch
    D = Scores()
    plain = Objective("bce").g_loss(D, real, fake)
    matched = Objective("bce", feature_matching=True).g_loss(D, real, fake)
    distance = ((real.flatten(1).mean(0) - fake.flatten(1).mean(0)) ** 2).mean()
    assert torch.allclose(matched, plain + distance) and matched > plain
    # identical real and fake batches: nothing to match
    assert torch.allclose(Objective("hinge", feature_matching=True).g_loss(D, fake, fake),
                          Objective("hinge").g_loss(D, fake, fake))
    # the real features are constants to G: only the fake batch gets a gradient
    fake_leaf = fake.clone().requires_grad_(True)
    real_leaf = real.clone().requires_grad_(True)
    Objective("bce", feature_matching=True).g_loss(D, real_leaf, fake_leaf).backward()
    assert fake_leaf.grad is not None and real_leaf.grad is None


def test_separate_batches_call_d_twice_mixed_batches_once(batch):
    real, fake = batch
    for separate, shapes in ((True, [8, 8]), (False, [16])):
        D = Scores()
        Objective("bce", separate_batches=separate).d_loss(D, real, fake)
        assert [x.shape[0] for x in D.calls] == shapes
    # with BatchNorm in D the two ways give different losses; without it the same
    bn = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(48), nn.Linear(48, 1))
    D = Scores()
    D.features_and_score = lambda x: (x.flatten(1), bn(x).view(-1))
    a = Objective("bce", separate_batches=True).d_loss(D, real, fake)
    b = Objective("bce", separate_batches=False).d_loss(D, real, fake)
    assert not torch.allclose(a, b)
    D = Scores()
    assert torch.allclose(Objective("bce", separate_batches=True).d_loss(D, real, fake),
                          Objective("bce", separate_batches=False).d_loss(D, real, fake))


def test_a_sigmoid_generator_sees_real_images_in_0_1(batch):
    real, fake = batch
    for unit, lo in ((True, 0.0), (False, -1.0)):
        D = Scores()
        Objective("wgan-gp", unit_data=unit).d_loss(D, real, (fake + 1) / 2)
        assert D.calls[0].min() >= lo and (D.calls[0].min() < 0) == (not unit)


def test_the_objective_follows_the_chromosome():
    ch = samples(v2_config(space={"losses": ["bce"], "label_smoothing": [True], "outputs": ["sigmoid"],
                                  "feature_matching": [True], "separate_batches": [False]}), 1)[0]
    assert losses.objective(ch) == Objective("bce", True, True, False, unit_data=True)
    v1, _ = registry.sample(config.load("demo").space, 16, 3, np.random.default_rng(0))
    assert losses.objective(v1) == Objective("bce", separate_batches=True, probabilities=True)


def test_the_reference_objective_is_the_reference_step():
    """seed-v1's D outputs probabilities: BCE(D(x), 1) + BCE(D(G(z)), 0), and BCE(D(G(z)), 1) for G."""
    p = nn.Sequential(nn.Flatten(), nn.Linear(48, 1), nn.Sigmoid(), nn.Flatten(0))
    real, fake = torch.randn(4, 3, 4, 4), torch.randn(4, 3, 4, 4)
    bce = nn.BCELoss()
    ref = Objective("bce", probabilities=True)
    D = lambda x: (x.flatten(1), p(x))  # noqa: E731  (features, probability), as model.Discriminator returns them
    assert torch.allclose(ref.d_loss(D, real, fake), bce(p(real), torch.ones(4)) + bce(p(fake), torch.zeros(4)))
    assert torch.allclose(ref.g_loss(D, real, fake), bce(p(fake), torch.ones(4)))


# ---------------------------------------------------------------------------------------------------------
# optimisers and schedules


def test_optimiser_genes_and_step_decay():
    net = nn.Linear(2, 2)
    adam, schedule = trainer.optimiser(Optimiser("adam", 2e-4, 0.5), net)
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.5, 0.999) and schedule == []
    sgd, [schedule] = trainer.optimiser(Optimiser("sgd", 1e-3, 0.9, decay_epoch=2, decay_factor=0.1), net)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    lrs = []
    for _ in range(4):  # one step per epoch, as train() does
        lrs.append(sgd.param_groups[0]["lr"])
        sgd.step()
        schedule.step()
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4])


@pytest.mark.parametrize("loss", ["bce", "wgan-gp", "hinge"])
def test_each_loss_trains_with_every_practice(loss):
    cfg = v2_config(space={"losses": [loss], "label_smoothing": [True] if loss == "bce" else [False],
                           "feature_matching": [True], "schedules": ["step"]}, train={"steps_per_epoch": 2})
    images = data.load(cfg.data, 0).array
    for ch in samples(cfg, 3, seed=2):
        result, G, D, _ = trainer.train(ch, images, cfg.train, seed=0)
        assert result.status == "ok" and len(result.d_losses) == 2, ch
        assert math.isfinite(result.d_loss) and math.isfinite(result.g_loss)
        if loss == "hinge":
            assert result.d_loss >= 0


def test_training_starts_from_given_weights():
    cfg = v2_config(space={"schedules": ["none"]}, train={"epochs": 1, "steps_per_epoch": 1})
    images = data.load(cfg.data, 0).array
    ch = samples(cfg, 1, seed=5)[0]
    _, G0, D0, _ = trainer.train(ch, images, cfg.train, seed=1)
    weights = checkpoint.weights(ch, G0, D0)
    frozen = replace(ch, g_opt=Optimiser("sgd", 0.0, 0.0), d_opt=Optimiser("sgd", 0.0, 0.0))
    _, G1, _, _ = trainer.train(frozen, images, cfg.train, seed=2, init_weights=weights)
    _, G2, _, _ = trainer.train(frozen, images, cfg.train, seed=2)
    trained = {k: v for k, v in G0.state_dict().items() if "running" not in k and "num_batches" not in k}
    assert all(torch.equal(G1.state_dict()[k], v) for k, v in trained.items())  # lr 0: still G0's weights
    assert not all(torch.equal(G2.state_dict()[k], v) for k, v in trained.items())  # fresh weights otherwise


# ---------------------------------------------------------------------------------------------------------
# fitness per loss


REF = FitnessConfig()


def test_bce_fitness_is_the_reference():
    assert loss_term(1.2, 0.8, "bce") == loss_term(1.2, 0.8) == pytest.approx(math.tanh(0.01 * (1 / 1.2 + 1 / 0.8)))
    assert fitness(1.2, 0.8, 10, 10, REF, "bce") == fitness(1.2, 0.8, 10, 10, REF)


@pytest.mark.parametrize("g_loss", [-5.0, 0.0, 3.0])
def test_hinge_fitness_uses_d_loss_only(g_loss):
    assert loss_term(1.5, g_loss, "hinge") == pytest.approx(math.tanh(0.01 / 1.5))
    assert loss_term(2.0, g_loss, "hinge") < loss_term(0.5, g_loss, "hinge") < 1.0  # lower D loss scores higher
    assert loss_term(0.0, g_loss, "hinge") == 1.0  # the limit


@pytest.mark.parametrize("g_loss", [-5.0, 0.0, 3.0])
def test_wgan_gp_fitness_uses_the_size_of_d_loss(g_loss):
    # L_D is negative when the critic separates real from fake: |L_D| counts, never 1 / negative
    assert loss_term(-4.0, g_loss, "wgan-gp") == loss_term(4.0, g_loss, "wgan-gp") == pytest.approx(math.tanh(0.0025))
    assert 0 < loss_term(-20.0, g_loss, "wgan-gp") < loss_term(-0.5, g_loss, "wgan-gp") < 1.0
    assert loss_term(0.0, g_loss, "wgan-gp") == 1.0


@pytest.mark.parametrize("loss", ["bce", "hinge", "wgan-gp"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_every_fitness_is_finite_and_bounded(loss, bad):
    assert loss_term(bad, 0.7, loss) == 0.0
    for d, g in ((1e-12, 1e-12), (1e12, -1e12), (-3.0, -3.0), (0.3, 0.6)):
        f = fitness(d, g, 1000, 1000, REF, loss)
        assert math.isfinite(f) and 0.0 <= f <= 1.0
    assert loss_term(-0.1, 0.7, "hinge") == 0.0  # impossible for a hinge loss: no score rather than 1 / negative
