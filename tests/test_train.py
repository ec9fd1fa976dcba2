"""One chromosome's training, without Ray: losses, counts, seeded equivalence, weights and sample grids."""

import io
import math

import numpy as np
import pytest
import torch
import torchvision.utils as vutils
from PIL import Image

from neuroevo.space import registry
from neuroevo.train import checkpoint, data, losses, trainer
from neuroevo.train.model import build, noise
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config()
    images = data.load(cfg.data, seed=0).array
    ch, _ = registry.sample(cfg.space, 12, 3, np.random.default_rng(0))
    return cfg, images, ch


def test_training_returns_finite_losses_and_counts(setup):
    cfg, images, ch = setup
    result, G, D, _ = trainer.train(ch, images, cfg.train, seed=1)
    assert result.status == "ok"
    assert math.isfinite(result.d_loss) and math.isfinite(result.g_loss)
    assert result.d_loss > 0 and result.g_loss > 0
    assert len(result.d_losses) == cfg.train.epochs
    assert (result.params_g, result.params_d) == registry.param_counts(ch)
    assert result.images_per_second > 0 and result.device == "cpu"


def test_training_changes_the_weights(setup):
    cfg, images, ch = setup
    torch.manual_seed(1)
    G0, D0 = (m.state_dict() for m in build(ch))
    _, G, D, _ = trainer.train(ch, images, cfg.train, seed=1)
    assert any(not torch.equal(G0[k], v) for k, v in G.state_dict().items() if v.is_floating_point())
    assert any(not torch.equal(D0[k], v) for k, v in D.state_dict().items() if v.is_floating_point())


def test_same_seed_same_losses_on_cpu(setup):
    cfg, images, ch = setup
    a, _, _, _ = trainer.train(ch, images, cfg.train, seed=5)
    b, _, _, _ = trainer.train(ch, images, cfg.train, seed=5)
    c, _, _, _ = trainer.train(ch, images, cfg.train, seed=6)
    assert (a.d_losses, a.g_losses) == (b.d_losses, b.g_losses)
    assert (a.d_losses, a.g_losses) != (c.d_losses, c.g_losses)


def test_an_enormous_learning_rate_is_reported_as_diverged(setup):
    cfg, images, ch = setup
    from dataclasses import replace
    wild = replace(ch, g_lr=1e12, d_lr=1e12, g_momentum=0.9, d_momentum=0.9)
    result, _, _, _ = trainer.train(wild, images, replace(cfg.train, epochs=3, steps_per_epoch=4), seed=0)
    assert result.status == "diverged" and "non-finite" in result.error


def test_too_few_images_for_a_batch(setup):
    cfg, images, ch = setup
    with pytest.raises(ValueError, match="fewer than one batch"):
        trainer.train(ch, images[:10], cfg.train, seed=0)


def test_weights_load_as_the_trained_generator_and_draw_its_sample_grid(setup, tmp_path):
    cfg, images, ch = setup
    _, G, D, _ = trainer.train(ch, images, cfg.train, seed=1)
    weights = checkpoint.weights(ch, G, D)
    png = checkpoint.sample_grid(weights, n_samples=16, seed=7)
    grid = Image.open(io.BytesIO(png))
    assert grid.format == "PNG" and grid.size == (4 * 12 + 5 * 2, 4 * 12 + 5 * 2)  # 4 x 4 tiles, 2 px padding
    # the very bytes of the grid drawn from the trained G itself, in eval mode, from the same noise
    G.eval()
    with torch.no_grad():
        drawn = G(noise(ch, 16, generator=torch.Generator().manual_seed(7)))
    out = io.BytesIO()
    vutils.save_image(drawn, out, format="png", nrow=4, normalize=True, value_range=registry.plan(ch).output_range)
    assert png == out.getvalue()
    assert png != checkpoint.sample_grid(weights, n_samples=16, seed=8)
    path = tmp_path / "weights.pt"
    path.write_bytes(weights)
    ch2, G2 = checkpoint.load_generator(str(path))
    assert ch2 == ch
    z = torch.randn(3, ch.noise_channels, ch.noise_side, ch.noise_side)
    with torch.no_grad():
        assert torch.equal(G(z), G2(z))


def test_bce_matches_torch_on_valid_input():
    p = torch.tensor([1e-50, 0.1, 0.5, 0.9, 1.0])
    for t in (torch.ones(5), torch.zeros(5), torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])):
        assert torch.allclose(losses.bce(p, t), torch.nn.BCELoss()(p, t))
    assert torch.isnan(losses.bce(torch.tensor([float("nan")]), torch.ones(1)))


def test_a_loss_beyond_train_max_loss_is_diverged_and_only_then(setup):
    """A loss that stays finite but is beyond the bound is not a healthy `ok` row; the same training within it is."""
    import dataclasses

    cfg, images, ch = setup
    ok, _, _, _ = trainer.train(ch, images, cfg.train, seed=1)
    bound = max(ok.d_losses[0], ok.g_losses[0]) / 2  # the first epoch's larger loss is beyond it
    result, _, _, _ = trainer.train(ch, images, dataclasses.replace(cfg.train, max_loss=bound), seed=1)
    assert result.status == "diverged" and "train.max_loss" in result.error
    assert len(result.d_losses) == 1  # stopped at the first epoch beyond it
    unbounded, _, _, _ = trainer.train(ch, images, dataclasses.replace(cfg.train, max_loss=None), seed=1)
    assert unbounded.status == "ok" and unbounded.d_losses == ok.d_losses
