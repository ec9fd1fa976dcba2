"""One chromosome's training as one Ray task: the task, what it asks the cluster for, and what a failed task
means; and the tasks that use a trained generator after the fact: its sample grid (drawn only for the generators
whose grid is kept) and its sample quality (quality.evaluate top_k).

torch and the training code load inside the tasks only, on the worker: the driver never imports torch.
"""

from __future__ import annotations

import dataclasses
import functools
import socket
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np
import ray

from neuroevo.config import QualityConfig, RunConfig, TrainConfig
from neuroevo.execution import capacity, estimate
from neuroevo.execution.capacity import Capacity
from neuroevo.space.chromosome import Chromosome
from neuroevo.train import data, memory
from neuroevo.train.results import (
    Inherited,
    Quality,
    SeedResult,
    Start,
    TaskReport,
    mean_quality,
    mean_result,
)

if TYPE_CHECKING:
    from neuroevo.train.quality import Reference


def seeds(seed: int, count: int) -> list[int]:
    """A chromosome's training seeds in a generation: its task seed, then seeds derived from it."""
    more = np.random.SeedSequence([seed]).generate_state(count - 1, np.uint64) >> np.uint64(1) if count > 1 else []
    return [seed, *(int(s) for s in more)]


def _use_task_cpus() -> None:
    """Ray reuses a worker for tasks of any size, and torch keeps the thread count of the first: use this task's
    CPUs, or a 1-CPU task could train with more threads than it was given, and with other float rounding."""
    import torch

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))


@ray.remote(num_returns=2)
def train_task(ch: Chromosome, images: np.ndarray | data.Cache, cfg: TrainConfig, seed: int, flip: bool = False,
               start: Start | None = None, count: int = 1, quality_cfg: QualityConfig | None = None,
               reference: Reference | None = None) -> tuple[TaskReport, bytes | None]:
    """Train the chromosome `count` times (evolve.seeds_per_chromosome), each from fresh weights or, given its
    parents' (`start`, evolve.inherit), from what it inherits of theirs (inherit.start_weights); with a reference
    (quality.evaluate all), measure each generator's sample quality against it. Returns the report and the first
    training's weights file (train.weights; None when a training failed): two objects, so that the driver fetches
    the weights only of those it keeps, and drops the others' as soon as it knows."""
    report, first, _ = _train(ch, images, cfg, seed, flip, start, count, quality_cfg, reference)
    return report, first


@ray.remote(num_returns=3)
def rung_task(ch: Chromosome, images: np.ndarray | data.Cache, cfg: TrainConfig, seed: int, flip: bool,
              start: Start | None, count: int, quality_cfg: QualityConfig | None, reference: Reference | None,
              until: int,
              resume: tuple[bytes, ...] | None) -> tuple[TaskReport, bytes | None, tuple[bytes, ...] | None]:
    """One rung of evolve.rungs: train_task's trainings, each paused after `until` steps of its whole training,
    or continued from its continuation in `resume` (one per seed, from the rung before) up to `until`. The third
    object is the trainings' continuations, for the next rung (None when a training failed or all ran to the
    end)."""
    return _train(ch, images, cfg, seed, flip, start, count, quality_cfg, reference, until, resume)


def _train(ch: Chromosome, images: np.ndarray | data.Cache, cfg: TrainConfig, seed: int, flip: bool,
           start: Start | None, count: int, quality_cfg: QualityConfig | None, reference: Reference | None,
           until: int | None = None,
           resume: tuple[bytes, ...] | None = None) -> tuple[TaskReport, bytes | None, tuple[bytes, ...] | None]:
    from neuroevo.train import inherit, quality, trainer

    started = datetime.now(timezone.utc)
    _use_task_cpus()
    gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
    device = trainer.pick_device(len(gpu_ids))
    trainings, first, inherited = [], None, Inherited()  # (seed, result, quality) of each training
    pauses = []  # each training's continuation
    if start is not None and resume is None:  # the parents' weights files, put in the object store once for all
        start = dataclasses.replace(start, weights={p: ray.get(w) if isinstance(w, ray.ObjectRef) else w
                                                    for p, w in start.weights.items()})
    for i, s in enumerate(seeds(seed, count)):
        init_weights = None
        if start is not None and resume is None:
            init_weights, inherited = inherit.start_weights(ch, s, start)
        result, weights, pause = trainer.train_and_pause(ch, data.attach(images), cfg, s, device, flip,
                                                         init_weights, until, resume[i] if resume else None)
        ok = result.status == "ok"
        trainings.append((s, result, quality.measure_generator(weights, quality_cfg, reference, device, s)
                          if ok and reference is not None else None))
        pauses.append(pause)
        first = first or weights
        if not ok:
            break
    node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    ok = trainings[-1][1].status == "ok"
    measured = [q for _, _, q in trainings if q is not None]
    report = TaskReport(mean_result([r for _, r, _ in trainings]), node, gpu_ids, started,
                        datetime.now(timezone.utc), mean_quality(measured) if ok and measured else None,
                        tuple(SeedResult(s, r.d_loss, r.g_loss, q.fid if q else None) for s, r, q in trainings),
                        inherited)
    go_on = ok and all(p is not None for p in pauses)
    return report, first if ok else None, tuple(pauses) if go_on else None


@ray.remote
def samples_task(weights: bytes, n_samples: int, seed: int) -> bytes:
    """The PNG sample grid (train.sample_grid) of a trained generator's weights file, on this task's device."""
    from neuroevo.train import checkpoint, trainer

    _use_task_cpus()
    return checkpoint.sample_grid(weights, n_samples, seed, trainer.pick_device(len(ray.get_gpu_ids())))


@ray.remote
def quality_task(weights: bytes, quality_cfg: QualityConfig, reference: Reference, seed: int) -> Quality:
    """quality.evaluate top_k: the FID and KID of a trained generator's weights file, on this task's device."""
    from neuroevo.train import quality, trainer

    _use_task_cpus()
    device = trainer.pick_device(len(ray.get_gpu_ids()))
    return quality.measure_generator(weights, quality_cfg, reference, device, seed)


def task_resources(cfg: RunConfig, ch: Chromosome | None = None, cap: Capacity | None = None) -> dict[str, float]:
    """What one training task asks Ray for. `ch` is needed only for num_gpus: memory; `cap` is the cluster's
    capacity (capacity.read(), asked here when not given)."""
    num_gpus = cfg.resources.num_gpus
    if cap is None and (num_gpus in ("auto", "memory") or cfg.resources.num_cpus == "auto"):
        cap = capacity.read()
    if num_gpus in ("auto", "memory"):
        if not cap.has_gpus:
            num_gpus = 0.0
        elif num_gpus == "memory":
            num_gpus = memory.gpu_share(ch, cfg.resources.gpu_memory_gb)
        else:
            num_gpus = 1.0
    return {"num_cpus": task_cpus(cfg, cap), "num_gpus": num_gpus, "max_retries": cfg.resources.max_retries}


def task_cpus(cfg: RunConfig, cap: Capacity | None) -> float:
    """resources.num_cpus, auto resolved: 1 where the tasks ask for GPUs, else the torch threads for a population
    of this size on the cluster's nodes up now (estimate.threads_per_task)."""
    if cfg.resources.num_cpus != "auto":
        return cfg.resources.num_cpus
    return 1.0 if _asks_gpus(cfg, cap) else float(_threads(cfg.evolve.population, cap.node_cpus))


@functools.lru_cache(maxsize=64)
def _threads(tasks: int, node_cpus: tuple[float, ...]) -> int:
    # asked for every chromosome of every generation: the rule's search over thread counts and nodes runs once
    return estimate.threads_per_task(tasks, node_cpus)


def _asks_gpus(cfg: RunConfig, cap: Capacity) -> bool:
    num_gpus = cfg.resources.num_gpus
    return cap.has_gpus if num_gpus in ("auto", "memory") else num_gpus > 0


def describe_request(cfg: RunConfig, cap: Capacity) -> str:
    """One line: what each training task asks for, and why."""
    line = _describe_gpus(cfg, cap)
    if cfg.resources.num_cpus != "auto":
        return line
    if _asks_gpus(cfg, cap):
        return f"{line}; resources.num_cpus auto: 1 CPU, as the tasks train on GPUs"
    n = task_cpus(cfg, cap)
    return (f"{line}; resources.num_cpus auto: {n:g} torch thread{'s' if n != 1 else ''} a task for "
            f"{cfg.evolve.population} chromosomes on {_nodes(cap)} (estimate.threads_per_task)")


def _describe_gpus(cfg: RunConfig, cap: Capacity) -> str:
    r = cfg.resources
    n = task_cpus(cfg, cap)
    cpus = f"{n:g} CPU{'s' if n != 1 else ''}"
    if isinstance(r.num_gpus, float):
        gpus = f"{r.num_gpus:g}" if r.num_gpus else "no"
        return f"resources: tasks ask for {gpus} GPU and {cpus} each (resources.num_gpus)"
    if not cap.has_gpus:
        return (f"resources: tasks ask for no GPU and {cpus} each, and train on CPUs: the cluster has no GPU and "
                f"cannot launch nodes with GPUs (set resources.num_gpus to ask for GPUs anyway)")
    gpus = ("1 GPU" if r.num_gpus == "auto" else
            f"1/8, 1/4, 1/2 or 1 of a {r.gpu_memory_gb:g} GiB GPU by their estimated memory")
    if cap.gpus > 0:
        why = f"the cluster has {cap.gpus:g} GPU{'s' if cap.gpus != 1 else ''}"
    else:
        names = ", ".join(t.name for t in cap.gpu_types)
        why = f"the cluster can launch nodes with GPUs (type {names}, in {cap.source})"
    return f"resources: tasks ask for {gpus} and {cpus} each: {why}"


def _nodes(cap: Capacity) -> str:
    """'16 CPUs', or '3 nodes of 8, 8 and 4 CPUs'."""
    cpus = [f"{c:g}" for c in cap.node_cpus]
    if len(cpus) == 1:
        return f"{cpus[0]} CPU{'s' if cpus[0] != '1' else ''}"
    return f"{len(cpus)} nodes of {', '.join(cpus[:-1])} and {cpus[-1]} CPUs"


def has_room(total: dict[str, float], running: list[dict[str, float]], need: dict[str, float]) -> bool:
    """Whether a task needing `need` fits in the cluster's `total` resources beside the running tasks."""
    return all(sum(r[key] for r in running) + need[key] <= total.get(name, 0.0) + 1e-9
               for name, key in (("CPU", "num_cpus"), ("GPU", "num_gpus")))


def outcome(ref: ray.ObjectRef) -> tuple[TaskReport | None, tuple[str, str]]:
    """A finished task's report, or None and (status, error) when it returned none."""
    try:
        return ray.get(ref), ("", "")
    except ray.exceptions.RayError as e:
        return None, _failure(e)


def _failure(e: ray.exceptions.RayError) -> tuple[str, str]:
    """(status, error) of a task that returned no report."""
    if isinstance(e, ray.exceptions.RayTaskError):  # the training code raised
        return "failed", " ".join(str(e.cause if e.cause is not None else e).split())[:2000]
    if isinstance(e, ray.exceptions.OutOfMemoryError):  # Ray's memory monitor killed the worker (host RAM)
        return "oom", " ".join(str(e).split())[:2000]
    # the worker or its node died, past cfg.resources.max_retries re-runs
    return "lost", f"{type(e).__name__}: " + " ".join(str(e).split())[:2000]
