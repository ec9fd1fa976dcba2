"""Benchmark 2: how busy W workers are on a heterogeneous population, by dispatch order and mode.

Real training tasks on a private local Ray with W = 1 and 2 workers (one CPU each). A first population is
chromosomes of a wide demo space whose estimated costs are log-spaced over 500x (their measured training
times differ by about 50-100x; both spreads are printed). For each run:

    busy        sum over tasks of (finished_at - started_at), from the Parquet log
    efficiency  busy / (W x wall), wall = the driver's elapsed time                      (target >= 0.9)
    wall / LB   LB = max(longest task, busy / W), the least wall time any schedule needs
    idle        W x wall - busy

A. one generation of 8, fifo (the population in a random order, a new one each repetition) against
   longest_first;
B. several generations of 4 (one elite) at W = 2, generational against steady_state (both longest_first): few
   tasks per worker, as when a cluster has about as many GPUs as the population has chromosomes, which is
   where waiting for a generation's slowest chromosome costs most. Later generations are drawn from the space.
Runs alternate within each repetition; the figures are medians over repetitions.

    python bench/generation_efficiency.py [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import common  # first: puts this checkout's neuroevo on the path
import numpy as np
import pandas as pd
import ray

from neuroevo import config
from neuroevo.evolve.population import Member
from neuroevo.execution import loop
from neuroevo.space import registry
from neuroevo.store import logs
from neuroevo.store.state import RunState
from neuroevo.train import data, flops


def run_config(steps: int, population: int, generations: int, seed: int = 0, **evolve_keys) -> config.RunConfig:
    return config.load("demo", [
        f"seed={seed}", "data.image_size=16", "data.subset=512", "space.channels=[4, 256]", "space.d_hidden=[30, 512]",
        "space.d_blocks=[1, 3]", "space.batch_size=32", "space.max_params=100000000", "train.epochs=1",
        f"train.steps_per_epoch={steps}", f"evolve.population={population}", f"evolve.generations={generations}",
        "evolve.elite_fraction=0.25", "resources.num_cpus=1",
        *(f"evolve.{k}={v}" for k, v in evolve_keys.items())])


def heterogeneous(cfg: config.RunConfig, n_images: int, spread: float = 500.0) -> tuple[Member, ...]:
    """A population of cfg's space with estimated costs log-spaced from the cheapest of a large sample to
    `spread` times it."""
    rng = np.random.default_rng(0)
    sample = [registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)[0] for _ in range(3000)]
    costs = np.log([flops.cost(ch, cfg.train, n_images) for ch in sample])
    targets = np.linspace(costs.min(), costs.min() + np.log(spread), cfg.evolve.population)
    return tuple(Member(sample[int(np.argmin(abs(costs - t)))], 0, 0) for t in targets)


def metrics(df: pd.DataFrame, wall: float, workers: int) -> dict:
    spans = (df.finished_at - df.started_at).dt.total_seconds()
    busy = spans.sum()
    return {"wall_s": wall, "busy_s": busy, "efficiency": busy / (workers * wall),
            "wall_over_lower_bound": wall / max(spans.max(), busy / workers), "idle_s": workers * wall - busy,
            "tasks": len(df), "measured_spread": df.train_seconds.max() / df.train_seconds.min()}


def one_generation(cfg: config.RunConfig, population: tuple[Member, ...], images_ref, n_images: int,
                   workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        trained = loop.run_generation(cfg, "bench", Path(tmp), 0, population, images_ref, n_images)
        df = pd.DataFrame(t.row for t in trained)
        wall = time.perf_counter() - start
    return metrics(df, wall, workers)


def whole_run(cfg: config.RunConfig, population: tuple[Member, ...], images: np.ndarray, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        loop.evolve(cfg, "bench", Path(tmp), images, RunState(population, 0))
        wall = time.perf_counter() - start
        df = logs.read_generations(tmp)
    return metrics(df, wall, workers)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short run: shorter tasks, fewer generations, 1 repetition")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    args = p.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    steps, generations = (5, 4) if args.quick else (10, 8)
    info = common.machine()
    cfg = run_config(steps, 8, 1)
    images = data.load(cfg.data, cfg.seed).array
    population = heterogeneous(cfg, len(images))
    small = heterogeneous(run_config(steps, 4, generations), len(images))
    estimated = [flops.cost(m.chromosome, cfg.train, len(images)) for m in population]

    runs = []
    for workers in (1, 2):
        common.start_ray(num_cpus=workers)
        images_ref = ray.put(images)
        one_generation(cfg, population[3:3 + 2 * workers], images_ref, len(images), workers)  # start, warm the workers
        for rep in range(reps):
            order = np.random.default_rng(rep).permutation(len(population))
            for how in (("fifo", "longest_first") if rep % 2 == 0 else ("longest_first", "fifo")):
                c = replace(cfg, evolve=replace(cfg.evolve, dispatch=how))
                runs.append({"experiment": "A: one generation", "workers": workers, "schedule": how, "rep": rep,
                             **one_generation(c, tuple(population[i] for i in order), images_ref, len(images),
                                              workers)})
                print(runs[-1], flush=True)
            if workers == 2:
                for mode in (("generational", "steady_state") if rep % 2 == 0 else ("steady_state", "generational")):
                    c = run_config(steps, 4, generations, seed=rep, dispatch="longest_first", mode=mode)
                    runs.append({"experiment": f"B: {generations} generations of 4", "workers": workers,
                                 "schedule": mode, "rep": rep, **whole_run(c, small, images, workers)})
                    print(runs[-1], flush=True)
        ray.shutdown()

    df = pd.DataFrame(runs)
    cols = ["wall_s", "busy_s", "efficiency", "wall_over_lower_bound", "idle_s", "measured_spread"]
    summary = df.groupby(["experiment", "workers", "schedule"], sort=False)[cols].median().reset_index()
    notes = [f"A's population: estimated costs differ {max(estimated) / min(estimated):.0f}x; measured training "
             "times differ measured_spread x (B: over the whole run)",
             f"{steps} steps of batch 32 at 16px per task, medians of {reps} repetition(s); other processes' load "
             "lengthens tasks (busy time), which efficiency and wall / LB, ratios within each run, discount"]
    for (experiment, workers), g in df.groupby(["experiment", "workers"], sort=False):
        per_rep = g.pivot(index="rep", columns="schedule")
        if "fifo" in per_rep.wall_s:
            ratio = (per_rep.wall_s.longest_first / per_rep.wall_s.fifo).median()
            notes.append(f"{experiment}, W={workers}: wall time longest_first / fifo = {ratio:.3f} (median of "
                         "per-repetition ratios)")
        if "generational" in per_rep.wall_s:
            saved = (per_rep.idle_s.generational - per_rep.idle_s.steady_state).median()
            ratio = (per_rep.wall_s.steady_state / per_rep.wall_s.generational).median()
            notes.append(f"{experiment}, W={workers}: steady_state saves {saved:.1f}s of idle worker time "
                         f"(generational idles {per_rep.idle_s.generational.median():.1f}s); wall time "
                         f"steady_state / generational = {ratio:.3f} (medians of per-repetition figures)")
    common.report("generation_efficiency", summary, df, info, notes)


if __name__ == "__main__":
    main()
