"""What a run will cost, before it starts: the FLOPs of its trainings and a rough wall time on the cluster found.

Pure functions, no torch, no Ray: the driver hands in the cluster's resources (ray.cluster_resources()) once Ray
has started, and prints `lines` before the first task. The FLOPs are flops.cost's, read off each chromosome's
layer plan. The run's total is the FLOPs of the first generation it trains (generation 0's population, or on
--resume the next one's) times the generations left: later generations are assumed to cost what that one does.
The wall time divides each task's FLOPs by a throughput per device (below) and takes, per generation, the lower
bound of benchmark 2: the longest task, or the work over the cluster's CPUs or GPUs, whichever is longer.
Training only: worker start-up, sample grids and sample quality (quality.evaluate) are not counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from neuroevo.config import RunConfig
from neuroevo.space.chromosome import Chromosome
from neuroevo.train import flops

# FLOP/s of one CPU thread (a task of resources.num_cpus 1), by the FLOPs of one training step: measured on this
# project's 2-core AMD EPYC machine (README "Benchmarks"), CPU time per step of benchmark 1's small and medium
# chromosomes (bench/results/train_overhead.json), the demo's first chromosome trained whole and one step of
# cifar10's first (task_overhead.json). Larger layers run faster; between and beyond the points, log-log
# interpolation and the nearest point.
CPU_FLOPS = ((1.12e8, 10.4e9), (6.5e8, 29.7e9), (1.22e10, 60.5e9), (2.43e12, 120e9))
# FLOP/s of one GPU: assumed, not measured (no GPU here); README "Running" says where it comes from.
GPU_FLOPS = 10e12
LONG_SECONDS = 3600.0  # a run longer than this is told how to shrink
# One training's speed-up with t torch threads is Amdahl's 1 / (f + (1 - f) / t) with this serial fraction f:
# assumed, not measured (2 threads 1.33 times as fast as 1; small layers leave much of a step serial). This
# project's 2-core machine was too loaded to measure it: there 2 threads ran slower than 1 (README, benchmark 7;
# bench/cpu_threads.py part A measures it on a quiet machine). Any f below 1 makes the same choice wherever one
# wave of tasks holds the whole population; f decides only between more waves of fewer threads and fewer of more.
SERIAL_FRACTION = 0.5


def thread_speedup(threads: int) -> float:
    """How much faster one CPU training runs with `threads` torch threads than with 1."""
    return 1.0 / (SERIAL_FRACTION + (1.0 - SERIAL_FRACTION) / threads)


def threads_per_task(tasks: int, node_cpus: Sequence[float]) -> int:
    """The torch threads (CPUs) each of `tasks` equal CPU trainings should get for the least wall time on nodes of
    `node_cpus` CPUs: with t threads a node runs floor(cpus / t) tasks at once, in waves each 1 / thread_speedup(t)
    as long as one of 1 thread; the fewest threads among equal times. So a population at least as large as the
    cluster's CPUs gets 1 thread a task (threads add less than tasks), a smaller one the cores it would leave idle."""
    def wall(t: int) -> float:
        at_once = sum(int(c // t) for c in node_cpus)
        return round(math.ceil(tasks / at_once) / thread_speedup(t), 9) if at_once else math.inf
    return min(range(1, max(1, int(max(node_cpus, default=1))) + 1), key=lambda t: (wall(t), t))


@dataclass(frozen=True)
class Task:
    """One training as the estimate sees it."""
    flops: float
    seconds: float
    cpus: float  # what it asks Ray for (task.task_resources)
    gpus: float


@dataclass(frozen=True)
class Estimate:
    chromosomes: int  # in the generation the estimate is read off
    generation_flops: float
    generations: int  # left to train
    flops: float  # the whole run
    seconds: float
    cpus: float  # the cluster's
    gpus: float
    on_gpu: bool  # the tasks train on GPUs


def cpu_flops(step_flops: float) -> float:
    """One CPU thread's measured FLOP/s at this many FLOPs a step."""
    x, y = np.log10([p[0] for p in CPU_FLOPS]), np.log10([p[1] for p in CPU_FLOPS])
    return float(10 ** np.interp(math.log10(max(step_flops, 1.0)), x, y))


def task(ch: Chromosome, cfg: RunConfig, n_images: int | None, resources: dict[str, float]) -> Task:
    """The training of `ch` with `resources` (task.task_resources): its FLOPs and seconds."""
    n_flops = flops.cost(ch, cfg.train, n_images)
    gpus, cpus = resources["num_gpus"], resources["num_cpus"]
    threads = cpus if cpus < 1 else thread_speedup(cpus)  # a fraction of a CPU: that share of one thread's time
    rate = gpus * GPU_FLOPS if gpus > 0 else threads * cpu_flops(flops.step_flops(ch) * ch.batch_size)
    return Task(n_flops, n_flops / rate, cpus, gpus)


def estimate(tasks: Sequence[Task], total: dict[str, float], generations: int) -> Estimate:
    """The run's FLOPs and wall time: `tasks` are one generation's, repeated `generations` times, on a cluster of
    `total` resources ({"CPU": n, "GPU": m}, as ray.cluster_resources() gives them)."""
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    work = [max(t.seconds for t in tasks)] if tasks else [0.0]
    work.append(sum(t.seconds * t.cpus for t in tasks) / cpus if cpus else math.inf)
    if any(t.gpus for t in tasks):
        work.append(sum(t.seconds * t.gpus for t in tasks) / gpus if gpus else math.inf)
    per_generation = sum(t.flops for t in tasks)
    return Estimate(len(tasks), per_generation, generations, per_generation * generations,
                    max(work) * generations, cpus, gpus, any(t.gpus for t in tasks))


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def lines(e: Estimate, cfg: RunConfig, n_images: int | None, resumed: bool = False) -> list[str]:
    """What `neuroevo run` prints before its first task."""
    first = "the next generation's" if resumed else "generation 0's"
    out = [f"estimate: {e.flops:.1e} FLOPs of training: {first} {e.chromosomes} chromosomes ({e.generation_flops:.1e}) "
           f"x {e.generations} generations, later ones assumed to cost as much"]
    if e.on_gpu:
        where, rate = f"{e.gpus:g} GPUs", f"{GPU_FLOPS / 1e12:g} TFLOP/s a GPU, assumed"
    else:
        lo, hi = CPU_FLOPS[0][1] / 1e9, CPU_FLOPS[-1][1] / 1e9
        where, rate = f"{e.cpus:g} CPUs", f"{lo:.0f}-{hi:.0f} GFLOP/s a CPU by layer size, measured"
    out.append(f"estimate: about {duration(e.seconds)} on {where} (rough: {rate}; training only)")
    if e.seconds >= LONG_SECONDS:
        images = f"{n_images:,} images" if n_images is not None else "all"
        out.append(f"estimate: {duration(e.seconds)} is a long run; each of these cuts it about in proportion: "
                   f"evolve.generations "
                   f"(now {cfg.evolve.generations}), train.epochs ({cfg.train.epochs}), train.steps_per_epoch "
                   f"({cfg.train.steps_per_epoch or 'null'}) or data.subset ({images}), evolve.population "
                   f"({cfg.evolve.population}); data.image_size ({cfg.data.image_size}) about with its square")
    return out
