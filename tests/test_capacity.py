"""What each task asks for, from what the cluster has and what its autoscaler can launch (capacity.py, task.py):
the rule on given capacities and the node types of the shipped cluster configs. Reading both places Ray keeps
node types, from a real cluster, is in tests/test_cluster.py."""

from __future__ import annotations

import math

import pytest
import yaml

from neuroevo import config, errors
from neuroevo.evolve import population
from neuroevo.execution import capacity, estimate, task
from neuroevo.execution.capacity import Capacity, NodeType
from neuroevo.store import resume
from neuroevo.train import memory
from tests.conftest import REPO, tiny_config

GPU_WORKER = NodeType("gpu_worker", {"CPU": 48.0, "GPU": 4.0}, 4)
CPU_WORKER = NodeType("cpu_worker", {"CPU": 16.0}, 2)
WITH_GPUS = Capacity({"CPU": 8.0, "GPU": 2.0})
LAUNCHES_GPUS = Capacity({"CPU": 8.0}, (CPU_WORKER, GPU_WORKER), "~/ray_bootstrap_config.yaml")
NO_GPUS = Capacity({"CPU": 8.0}, (CPU_WORKER,), "~/ray_bootstrap_config.yaml")


def asks(cfg: config.RunConfig, cap: Capacity, ch=None) -> float:
    return task.task_resources(cfg, ch, cap)["num_gpus"]


def test_auto_asks_for_a_gpu_where_the_cluster_has_or_can_launch_gpus():
    cfg = tiny_config()
    assert cfg.resources.num_gpus == "auto"
    assert [asks(cfg, c) for c in (WITH_GPUS, LAUNCHES_GPUS, NO_GPUS, Capacity({"CPU": 2.0}))] == [1, 1, 0, 0]
    assert task.describe_request(cfg, WITH_GPUS) == \
        "resources: tasks ask for 1 GPU and 1 CPU each: the cluster has 2 GPUs"
    assert task.describe_request(cfg, LAUNCHES_GPUS) == ("resources: tasks ask for 1 GPU and 1 CPU each: the cluster "
                                                          "can launch nodes with GPUs (type gpu_worker, in "
                                                          "~/ray_bootstrap_config.yaml)")
    assert task.describe_request(cfg, NO_GPUS).startswith("resources: tasks ask for no GPU and 1 CPU each, and train "
                                                          "on CPUs: the cluster has no GPU and cannot launch")


def test_memory_shares_follow_the_same_rule_and_numbers_are_asked_as_given():
    cfg = tiny_config(resources={"num_gpus": "memory", "gpu_memory_gb": 4})
    ch = population.fresh_members(cfg, 0, 1)[0].chromosome
    share = memory.gpu_share(ch, 4)
    assert [asks(cfg, c, ch) for c in (WITH_GPUS, LAUNCHES_GPUS, NO_GPUS)] == [share, share, 0]
    assert "1/8, 1/4, 1/2 or 1 of a 4 GiB GPU by their estimated memory" in task.describe_request(cfg, LAUNCHES_GPUS)
    half = tiny_config(resources={"num_gpus": 0.5, "num_cpus": 2})
    assert [asks(half, c) for c in (WITH_GPUS, NO_GPUS)] == [0.5, 0.5]
    assert task.describe_request(half, NO_GPUS) == \
        "resources: tasks ask for 0.5 GPU and 2 CPUs each (resources.num_gpus)"
    assert task.describe_request(tiny_config(resources={"num_gpus": 0}), WITH_GPUS).startswith(
        "resources: tasks ask for no GPU and 1 CPU each")


def test_null_of_older_configs_means_auto_and_bad_values_name_the_choices():
    assert tiny_config(resources={"num_gpus": None}).resources.num_gpus == "auto"
    saved = config.to_yaml(tiny_config())
    assert "  num_gpus: auto\n" in saved
    older = config.loads_saved(saved.replace("  num_gpus: auto\n", "  num_gpus: null\n"), "config.yaml")
    assert older == tiny_config() and resume.experiment_differences(older, tiny_config()) == []
    with pytest.raises(errors.ConfigError, match=r"^resources\.num_gpus: expected a number >= 0, 'auto' or 'memory'"):
        tiny_config(resources={"num_gpus": "automatic"})


def cpus(population: int, *node_cpus: float, **resources) -> float:
    cap = Capacity({"CPU": sum(node_cpus)}, nodes=tuple({"CPU": c, "GPU": 0.0} for c in node_cpus))
    return task.task_resources(tiny_config(evolve={"population": population}, resources={"num_cpus": "auto",
                                                                                      **resources}), None, cap)["num_cpus"]


def test_auto_cpus_give_a_small_population_the_cores_it_would_leave_idle():
    # as many tasks as cores, or more: 1 thread each, as threads add less than tasks
    assert [cpus(p, 2) for p in (2, 3, 8)] == [1, 1, 1]
    assert [cpus(p, 16) for p in (2, 3, 4, 5, 8, 9, 16, 100)] == [8, 5, 4, 3, 2, 1, 1, 1]
    assert cpus(2, 4, 4, 4) == 4 and cpus(4, 4, 4, 4) == 2  # per node: a task never asks more than a node has
    assert cpus(2, 0, 8) == 4  # a head without CPUs runs none
    # with GPUs the tasks train there: 1 CPU; asked for no GPU on a GPU cluster, the CPU rule
    assert task.task_resources(tiny_config(resources={"num_cpus": "auto"}), None, WITH_GPUS)["num_cpus"] == 1
    assert cpus(2, 16, num_gpus=0) == 8
    # the default is 1 CPU whatever the cluster
    assert task.task_resources(tiny_config(resources={}), None, Capacity({"CPU": 16.0}))["num_cpus"] == 1


def test_auto_threads_follow_the_cost_model():
    """Amdahl's law with estimate.SERIAL_FRACTION: one wave of 2 tasks beats two of 1 thread while the second thread
    speeds a training up at all; 3 tasks on 2 cores take 2 waves of 1 thread, fewer than 3 of 2 threads."""
    assert estimate.thread_speedup(1) == 1 and 1 < estimate.thread_speedup(2) < 2
    assert estimate.threads_per_task(3, [2]) == (2 if estimate.thread_speedup(2) > 1.5 else 1)
    assert estimate.threads_per_task(1, [2]) == 2 and estimate.threads_per_task(5, []) == 1


def test_auto_cpus_are_printed_with_why_and_bad_values_name_the_choices():
    cfg = tiny_config(evolve={"population": 2}, resources={"num_cpus": "auto"})
    assert task.describe_request(cfg, Capacity({"CPU": 16.0}, nodes=({"CPU": 16.0, "GPU": 0.0},))) == (
        "resources: tasks ask for no GPU and 8 CPUs each, and train on CPUs: the cluster has no GPU and cannot launch "
        "nodes with GPUs (set resources.num_gpus to ask for GPUs anyway); resources.num_cpus auto: 8 torch threads a "
        "task for 2 chromosomes on 16 CPUs (estimate.threads_per_task)")
    two_nodes = Capacity({"CPU": 12.0}, nodes=({"CPU": 8.0, "GPU": 0.0}, {"CPU": 4.0, "GPU": 0.0}))
    assert task.describe_request(cfg, two_nodes).endswith("4 torch threads a task for 2 chromosomes on 2 nodes of 8 "
                                                          "and 4 CPUs (estimate.threads_per_task)")
    assert task.describe_request(cfg, WITH_GPUS) == ("resources: tasks ask for 1 GPU and 1 CPU each: the cluster has "
                                                      "2 GPUs; resources.num_cpus auto: 1 CPU, as the tasks train on "
                                                      "GPUs")
    assert "  num_cpus: auto\n" in config.to_yaml(cfg)  # the run's config keeps auto; the number is resolved per run
    for bad, why in (("foo", "expected a number or 'auto', got 'foo'"), (0, "expected a number > 0.0 or 'auto', got 0")):
        with pytest.raises(errors.ConfigError) as e:
            tiny_config(resources={"num_cpus": bad})
        assert str(e.value) == f"resources.num_cpus: {why}"


def test_most_counts_the_nodes_the_autoscaler_can_still_launch():
    assert LAUNCHES_GPUS.most == {"CPU": 8 + 2 * 16 + 4 * 48, "GPU": 16}
    assert Capacity({"CPU": 1.0}, (NodeType("any", {"GPU": 1.0}, math.inf),)).most["GPU"] == math.inf


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_shipped_cloud_configs_launch_gpu_workers_only(name):
    types = capacity.launchable_types(yaml.safe_load((REPO / "cluster" / name).read_text()))
    assert types == (NodeType("gpu_worker", {"CPU": 48.0, "GPU": 4.0}, 4),)


def test_launcher_defaults_and_limits():
    def types(workers: dict, **top):
        return capacity.launchable_types({"head_node_type": "head", **top, "available_node_types": {
            "head": {"resources": {"CPU": 4}}, "gpu": {"resources": {"GPU": 1}, **workers}}})

    assert types({}, max_workers=3) == (NodeType("gpu", {"GPU": 1.0}, 3),)  # Ray's default: the cluster's limit
    assert types({"min_workers": 1, "max_workers": 2}, max_workers=5) == (NodeType("gpu", {"GPU": 1.0}, 1),)
    assert types({"max_workers": 2}, max_workers=0) == ()  # no worker node at all
    assert types({"max_workers": 0}, max_workers=4) == ()
    assert capacity.launchable_types({"max_workers": 2}) is None  # not a config with node types
