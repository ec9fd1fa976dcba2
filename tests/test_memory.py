"""The training-memory estimate against what autograd really keeps, and the GPU share chosen from it."""

import dataclasses
import math

import numpy as np
import pytest

from neuroevo import config, errors
from neuroevo.space import registry
from neuroevo.train import memory
from tests.conftest import saved_activation_floats, tiny_config


@pytest.mark.parametrize("space", ["tiny", "cifar10"])
def test_activation_estimate_matches_what_autograd_saves(space):
    cfg = tiny_config() if space == "tiny" else config.load("cifar10")
    rng = np.random.default_rng(1)
    for _ in range(2):
        ch, _ = registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)
        ch = dataclasses.replace(ch, batch_size=2)  # the count is linear in the batch
        measured = saved_activation_floats(ch)
        assert measured <= memory.activation_elements(ch) <= 1.2 * measured


def test_training_bytes_counts_context_state_and_activations():
    ch, _ = registry.sample(tiny_config().space, 12, 3, np.random.default_rng(0))
    params = sum(registry.param_counts(ch))
    expected = memory.CUDA_CONTEXT_BYTES + memory.HEADROOM * 4 * (3 * params + memory.activation_elements(ch))
    assert memory.training_bytes(ch) == pytest.approx(expected, abs=1)
    bigger_batch = dataclasses.replace(ch, batch_size=4 * ch.batch_size)
    assert memory.training_bytes(bigger_batch) > memory.training_bytes(ch)


def test_gpu_share_is_the_smallest_half_power_that_fits():
    ch, _ = registry.sample(tiny_config().space, 12, 3, np.random.default_rng(0))
    gib = memory.training_bytes(ch) / 2**30  # about 0.5: the CUDA context dominates a tiny chromosome
    assert memory.gpu_share(ch, 100 * gib) == 0.125  # never below 1/8
    assert memory.gpu_share(ch, 5 * gib) == 0.25
    assert memory.gpu_share(ch, 4 * gib) == 0.25  # exactly a quarter fits in a quarter
    assert memory.gpu_share(ch, 3 * gib) == 0.5
    assert memory.gpu_share(ch, 1.5 * gib) == 1.0
    assert memory.gpu_share(ch, 0.5 * gib) == 1.0  # too big for any GPU: a whole one, and it may fail there


def test_reference_chromosomes_spread_over_shares_of_a_24gb_gpu():
    cfg = config.load("cifar10")
    rng = np.random.default_rng(0)
    shares = {memory.gpu_share(registry.sample(cfg.space, 64, 3, rng)[0], 24) for _ in range(40)}
    assert len(shares) >= 2 and shares <= set(memory.SHARES)


def test_num_gpus_memory_is_a_config_value():
    assert tiny_config(resources={"num_gpus": "memory", "gpu_memory_gb": 24}).resources.num_gpus == "memory"
    with pytest.raises(errors.ConfigError, match=r"^resources\.num_gpus: expected a number >= 0, 'auto' or 'memory'"):
        tiny_config(resources={"num_gpus": "mem"})
    with pytest.raises(errors.ConfigError, match=r"^resources\.gpu_memory_gb"):
        tiny_config(resources={"gpu_memory_gb": 0})
    with pytest.raises(errors.ConfigError, match=r"^resources\.max_retries"):
        tiny_config(resources={"max_retries": -1})


# --- num_gpus: memory on a real Ray cluster with logical GPUs, for v2 chromosomes and the DCGAN seed ----------


V2_TINY = ["data.source=demo", "data.image_size=16", "data.subset=128", "space.channels=[8,16]",
           "space.fc_units=[16,32]", "space.start_side=[4,4]", "space.batch_size=16", "space.schedules=[none]",
           "train.epochs=1", "train.steps_per_epoch=2", "train.sample_grid=4", "evolve.population=3",
           "evolve.generations=2", "resources.num_gpus=memory"]


@pytest.mark.slow
def test_memory_sized_shares_of_v2_and_dcgan_chromosomes_train_on_logical_gpus(ray_with_gpus, tmp_path,
                                                                               monkeypatch):
    from ray.remote_function import RemoteFunction

    from neuroevo.evolve import population
    from neuroevo.execution import loop, task
    from neuroevo.space import v2
    from neuroevo.store import logs
    from neuroevo.train import data

    # the dcgan preset: its seed and two random v2 chromosomes in generation 0, mutants of the elite in 1
    cfg = config.load("dcgan", V2_TINY)
    first = [m.chromosome for m in population.initial_population(cfg)]
    assert [ch.space for ch in first] == ["v2"] * 3 and first[0] == v2.dcgan(16, 3, 16)
    need = sorted(memory.training_bytes(ch) for ch in first)
    assert need[0] < need[-1]
    # a GPU on which the smallest fits in an eighth and the largest does not: their shares differ
    gb = 8 * math.sqrt(need[0] * need[-1]) / 2**30
    cfg = config.load("dcgan", V2_TINY + [f"resources.gpu_memory_gb={gb!r}"])
    assert len({memory.gpu_share(ch, gb) for ch in first}) >= 2

    asked = {}  # task name -> the GPUs it asked Ray for
    options = RemoteFunction.options

    def spy(self, **task_options):
        asked[task_options.get("name")] = task_options.get("num_gpus")
        return options(self, **task_options)

    monkeypatch.setattr(RemoteFunction, "options", spy)
    images = data.load(cfg.data, cfg.seed).array
    loop.evolve(cfg, "shares", tmp_path, images)
    monkeypatch.undo()

    df = logs.read_generations(tmp_path)
    assert len(df) == 6 and (df.status == "ok").all(), df.error.tolist()
    assert (df.device == "cpu").all()  # a logical GPU has no CUDA behind it
    assert all(len(ids) == 1 and ids[0] in ("0", "1") for ids in df.gpu_ids)  # but each task held one
    shares = []
    for row in df.itertuples():
        ch = registry.from_json(row.chromosome)
        share = memory.gpu_share(ch, gb)
        assert asked[f"train-g{row.generation}-{row.chromosome_id}"] == share, row.chromosome_id
        assert task.task_resources(cfg, ch)["num_gpus"] == share
        shares.append(share)
    assert len(set(shares)) >= 2 and set(shares) <= set(memory.SHARES)
