"""What the cluster has and what it can add: the resources of its nodes now, and the node types its autoscaler
can launch. Read from Ray once per generation; task.py decides from it what each task asks for.

Ray reports only the nodes that are up (ray.cluster_resources()): a cluster whose GPU workers scale from zero
shows no GPU until a task asks for one. The node types come from the cluster config that an autoscaler reports to
the GCS (Ray's `get_cluster_config`, read by Ray Data too; Ray 2.60's own autoscalers do not report it), else from
the cluster launcher's copy of the config on the head, ~/ray_bootstrap_config.yaml, which the head's autoscaler
runs with and which `ray job submit` and `ray attach` find beside the driver. A driver on another machine, or a
cluster started by hand with `ray start`, sees the nodes that are up only.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import ray
import yaml

LAUNCHER_CONFIG = Path("~/ray_bootstrap_config.yaml")


@dataclass(frozen=True)
class NodeType:
    """A node type the autoscaler can launch `count` more of (math.inf: no limit)."""
    name: str
    resources: dict[str, float]
    count: float


@dataclass(frozen=True)
class Capacity:
    total: dict[str, float]  # the resources of the nodes up now (ray.cluster_resources())
    launchable: tuple[NodeType, ...] = ()
    source: str = ""  # where the node types were read
    nodes: tuple[dict[str, float], ...] = ()  # each node up now: its "CPU" and "GPU"; empty: one node of `total`

    @property
    def node_cpus(self) -> tuple[float, ...]:
        return tuple(n.get("CPU", 0.0) for n in self.nodes) or (self.total.get("CPU", 0.0),)

    @property
    def gpus(self) -> float:
        return self.total.get("GPU", 0.0)

    @property
    def gpu_types(self) -> tuple[NodeType, ...]:
        return tuple(t for t in self.launchable if t.resources.get("GPU", 0) > 0)

    @property
    def has_gpus(self) -> bool:
        """Whether the cluster has GPUs now or can launch nodes with GPUs."""
        return self.gpus > 0 or bool(self.gpu_types)

    @property
    def most(self) -> dict[str, float]:
        """The resources of the nodes up now plus those of every node the autoscaler can still launch: at most
        what the cluster can hold (a launched node already up is counted twice)."""
        out = dict(self.total)
        for t in self.launchable:
            for name, amount in t.resources.items():
                out[name] = out.get(name, 0.0) + amount * t.count
        return out


def read() -> Capacity:
    """The cluster's capacity, from Ray and the autoscaler's config."""
    total = ray.cluster_resources()
    nodes = tuple({k: float(n["Resources"].get(k, 0.0)) for k in ("CPU", "GPU")} for n in ray.nodes() if n["Alive"])
    for source, types in (("the cluster config in Ray's GCS", _from_gcs), (str(LAUNCHER_CONFIG), _from_launcher)):
        found = types()
        if found is not None:
            return Capacity(total, found, source, nodes)
    return Capacity(total, nodes=nodes)


def _from_gcs() -> tuple[NodeType, ...] | None:
    import ray._private.state

    config = ray._private.state.state.get_cluster_config()
    if config is None or not config.node_group_configs:
        return None
    return tuple(NodeType(g.name, dict(g.resources), math.inf if g.max_count == -1 else g.max_count - g.min_count)
                 for g in config.node_group_configs if g.max_count == -1 or g.max_count > g.min_count)


def _from_launcher() -> tuple[NodeType, ...] | None:
    try:
        return launchable_types(yaml.safe_load(LAUNCHER_CONFIG.expanduser().read_text()))
    except (OSError, yaml.YAMLError):  # none here, or not one the autoscaler could run with either
        return None


def launchable_types(config: dict) -> tuple[NodeType, ...] | None:
    """The node types of a cluster-launcher config that the autoscaler can add nodes of, with Ray's defaults for
    min_workers and max_workers; None for a config without node types."""
    from ray.autoscaler._private.util import fill_node_type_min_max_workers

    if not isinstance(config, dict) or not isinstance(config.get("available_node_types"), dict):
        return None
    config = copy.deepcopy(config)
    config.setdefault("max_workers", math.inf)
    config.setdefault("head_node_type", None)
    fill_node_type_min_max_workers(config)
    room = config["max_workers"]  # all worker nodes together
    return tuple(NodeType(name, {k: float(v) for k, v in (t.get("resources") or {}).items()},
                          min(t["max_workers"] - t["min_workers"], room))
                 for name, t in config["available_node_types"].items()
                 if min(t["max_workers"] - t["min_workers"], room) > 0)
