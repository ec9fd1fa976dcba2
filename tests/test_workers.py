"""The training tasks' CPUs and workers on a real local Ray of 4 logical CPUs: resources.num_cpus auto resolved from
the nodes Ray reports, and the workers started and their torch loaded before the first generation (task.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuroevo import capacity, data, dispatch, population, task
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def ray4():
    import ray

    ray.init(address="local", num_cpus=4, _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def torch_workers() -> set[int]:
    """The local cluster's worker processes that have torch loaded."""
    import psutil  # Ray's own copy

    found = set()
    for p in psutil.Process().children(recursive=True):
        try:
            command = " ".join(p.cmdline())  # a worker names itself ray::IDLE, ray::<task> once it has run one
            if ("default_worker" in command or command.startswith("ray::")) and \
                    "libtorch" in Path(f"/proc/{p.pid}/maps").read_text():
                found.add(p.pid)
        except (psutil.Error, OSError):  # exited meanwhile
            pass
    return found


def generation(ray, cfg, tmp_path) -> list:
    images = data.load(cfg.data, cfg.seed).array
    members = population.initial_population(cfg)
    return [t.row for t in dispatch.run_generation(cfg, "r", tmp_path, 0, members, ray.put(images), len(images))]


def test_auto_cpus_train_on_the_warmed_workers_as_the_number_they_resolve_to(ray4, tmp_path):
    auto = tiny_config(evolve={"population": 2, "generations": 1}, resources={"num_cpus": "auto"})
    assert task.task_resources(auto, None, capacity.read())["num_cpus"] == 2  # 2 chromosomes on 4 CPUs
    refs = task.warm_workers(auto, capacity.read())
    assert len(refs) == 2  # as many as run at once
    ray4.get(refs)
    warmed = torch_workers()
    assert len(warmed) == 2
    rows = generation(ray4, auto, tmp_path / "auto")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert torch_workers() == warmed  # no other worker loaded torch: the generation ran on the warmed ones
    two = generation(ray4, tiny_config(evolve={"population": 2, "generations": 1}, resources={"num_cpus": 2}),
                     tmp_path / "two")
    assert [(r["d_loss"], r["g_loss"]) for r in rows] == [(r["d_loss"], r["g_loss"]) for r in two]
