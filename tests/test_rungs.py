"""Successive halving within a generation: a training paused and continued exactly (continuation.py), the rung
schedule (rungs.py), ranking across rungs, and a run with rungs end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from neuroevo.space import v2
from neuroevo.space.genes import Optimiser
from neuroevo.train import continuation, data, trainer
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config(train={"epochs": 3, "steps_per_epoch": 3})
    images = data.load(cfg.data, seed=0).array
    # Adam for G, SGD with momentum and a step decay for D: every optimiser and schedule state is carried over
    ch = dataclasses.replace(v2.dcgan(12, 3, batch_size=16, width=4, noise_dim=4),
                             d_opt=Optimiser("sgd", 1e-3, 0.9, decay_epoch=1, decay_factor=0.5))
    return cfg, images, ch


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("r, eta", [(2, 3), (3, 2), (1, 8)])  # within an epoch, on its boundary, to the end
def test_legs_of_r_then_eta_r_steps_train_as_one_training(setup, r, eta):
    cfg, images, ch = setup
    total = r + eta * r
    one, G1, D1, _ = trainer.train_leg(ch, images, cfg.train, seed=3, flip=True, until=total)
    first, _, _, pause = trainer.train_leg(ch, images, cfg.train, seed=3, flip=True, until=r)
    assert first.steps == r and continuation.steps_done(pause) == r
    second, G2, D2, _ = trainer.train_leg(ch, images, cfg.train, seed=3, flip=True, until=total, resume=pause)
    assert one.steps == second.steps == total
    assert (one.d_losses, one.g_losses) == (second.d_losses, second.g_losses)
    assert _same_weights(G1, G2) and _same_weights(D1, D2)


def test_a_training_continued_to_its_end_is_the_whole_training(setup):
    cfg, images, ch = setup
    whole, G1, D1 = trainer.train(ch, images, cfg.train, seed=4)
    pause = None
    for until in (1, 4, None):
        result, G2, D2, pause = trainer.train_leg(ch, images, cfg.train, seed=4, until=until, resume=pause)
    assert pause is None and result.steps == whole.steps == 9
    assert (result.d_losses, result.g_losses, result.d_loss) == (whole.d_losses, whole.g_losses, whole.d_loss)
    assert _same_weights(G1, G2) and _same_weights(D1, D2)


def test_a_paused_training_reports_its_partial_epoch(setup):
    cfg, images, ch = setup
    result, _, _, pause = trainer.train_leg(ch, images, cfg.train, seed=3, until=4)
    assert len(result.d_losses) == 2 and result.d_loss == result.d_losses[-1]  # epoch 0, then 1 step of epoch 1
    state = continuation.from_bytes(pause)  # plain data and tensors: weights_only reads it
    assert (state["epoch"], state["step"], state["done"]) == (1, 1, 1)
