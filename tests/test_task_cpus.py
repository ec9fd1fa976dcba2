"""resources.num_cpus auto on a real local Ray of 4 logical CPUs: resolved from the nodes Ray reports (task.py,
estimate.threads_per_task), and trained as the number it resolves to."""

from __future__ import annotations

import pytest

from neuroevo.evolve import population
from neuroevo.execution import capacity, loop, task
from neuroevo.train import data
from tests.conftest import tiny_config

# every test here starts a local Ray
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray4():
    import ray

    ray.init(address="local", num_cpus=4, _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def generation(ray, cfg, tmp_path) -> list:
    images = data.load(cfg.data, cfg.seed).array
    members = population.initial_population(cfg)
    return [t.row for t in loop.run_generation(cfg, "r", tmp_path, 0, members, ray.put(images), len(images))]


def test_auto_cpus_train_as_the_number_they_resolve_to(ray4, tmp_path):
    auto = tiny_config(evolve={"population": 2, "generations": 1}, resources={"num_cpus": "auto"})
    assert task.task_resources(auto, None, capacity.read())["num_cpus"] == 2  # 2 chromosomes on 4 CPUs
    assert capacity.read().node_cpus == (4.0,)
    rows = generation(ray4, auto, tmp_path / "auto")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    two = generation(ray4, tiny_config(evolve={"population": 2, "generations": 1}, resources={"num_cpus": 2}),
                     tmp_path / "two")
    assert [(r["d_loss"], r["g_loss"]) for r in rows] == [(r["d_loss"], r["g_loss"]) for r in two]
