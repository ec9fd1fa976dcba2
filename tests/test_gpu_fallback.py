"""Logical GPUs (Ray resources, no real device): tasks are pinned to GPU ids and still train on CPU."""

import pandas as pd
import pytest
import ray

from neuroevo.evolve import population
from neuroevo.execution import loop, task
from neuroevo.store import logs
from neuroevo.train import data
from tests.conftest import tiny_config

# every test here starts a local Ray
pytestmark = pytest.mark.slow


def test_one_gpu_per_task_by_default_when_the_cluster_has_gpus(ray_with_gpus, tmp_path):
    cfg = tiny_config(evolve={"population": 3, "generations": 1})
    assert task.task_resources(cfg) == {"num_cpus": 1.0, "num_gpus": 1.0, "max_retries": 3}
    images = ray.put(data.load(cfg.data, cfg.seed).array)
    df = pd.DataFrame(t.row for t in loop.run_generation(cfg, "r", tmp_path, 0,
                                                          population.fresh_members(cfg, 0, 3), images))
    assert (df.status == "ok").all()
    assert (df.device == "cpu").all()  # no CUDA here: the pinned task falls back to the CPU
    assert all(len(ids) == 1 and ids[0] in ("0", "1") for ids in df.gpu_ids)
    assert len(logs.read_generations(tmp_path)) == 3


def test_fractional_and_zero_gpus_from_config(ray_with_gpus, tmp_path):
    cfg = tiny_config(resources={"num_gpus": 0.5, "num_cpus": 0.5}, evolve={"population": 2, "generations": 1})
    assert task.task_resources(cfg) == {"num_cpus": 0.5, "num_gpus": 0.5, "max_retries": 3}
    images = ray.put(data.load(cfg.data, cfg.seed).array)
    df = pd.DataFrame(t.row for t in loop.run_generation(cfg, "r", tmp_path, 0,
                                                          population.fresh_members(cfg, 0, 2), images))
    assert (df.status == "ok").all() and all(len(ids) == 1 for ids in df.gpu_ids)
    cpu_only = tiny_config(resources={"num_gpus": 0})
    assert task.task_resources(cpu_only)["num_gpus"] == 0
