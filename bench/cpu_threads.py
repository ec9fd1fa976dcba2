"""Benchmark 7: torch threads per task on a CPU-only machine, against a sequential loop.

A. Thread speed-up of one training: each chromosome of the `demo` preset's generation 0 trained with 1 and with
   T torch threads (T = this machine's cores), alternating, in this process. speed-up = time(1) / time(T); the
   median is what estimate.SERIAL_FRACTION would be fitted to (Amdahl's law); on a quiet machine only.
B. One generation of P chromosomes (P = 2 and 8, the first P of the demo's generation 0) four ways, interleaved
   within each repetition:
     num_cpus 1     neuroevo's default: P tasks of 1 CPU on a private Ray of the machine's cores
     num_cpus auto  what task.task_cpus resolves auto to on that Ray (printed)
     num_cpus T     every task given all the cores
     sequential     a plain loop over the P chromosomes in one process with T torch threads
   Ray's workers are warmed first (one generation before the timed ones), so worker start-up is not counted
   (benchmark 8 measures that). Wall time of the generation's training; medians over repetitions.

    python bench/cpu_threads.py [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import common  # first: puts this checkout's neuroevo on the path
import pandas as pd
import ray
import torch

from neuroevo import config
from neuroevo.evolve import population
from neuroevo.execution import capacity, estimate, loop, task
from neuroevo.train import data, trainer


def run_config(population_size: int, cpus: float | str, steps: int | None) -> config.RunConfig:
    cfg = config.load("demo", [f"evolve.population={population_size}", "evolve.elite_fraction=0.5",
                               f"resources.num_cpus={cpus}", "resources.num_gpus=0",
                               f"train.steps_per_epoch={steps if steps else 'null'}"])
    return cfg


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 steps a training, A on 4 chromosomes, 1 repetition")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    args = p.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    steps = 4 if args.quick else None  # None: the demo's whole 2 epochs
    cores = os.cpu_count() or 1
    info = common.machine()
    base = run_config(8, 1, steps)
    images = data.load(base.data, base.seed).array
    members = population.initial_population(base)
    torch.set_num_threads(1)

    def train_all(ms, threads: int) -> None:
        torch.set_num_threads(threads)
        for m in ms:
            trainer.train_and_save(m.chromosome, images, base.train, 0, "cpu", base.data.flip)

    runs = []
    for rep in range(reps):  # A
        for m in members[:4] if args.quick else members:
            for threads in ((1, cores) if rep % 2 == 0 else (cores, 1)):
                runs.append({"experiment": "A: one training", "rep": rep, "chromosome": m.chromosome.id,
                             "way": f"{threads} thread(s)", "wall_s": timed(lambda: train_all([m], threads))})
        print(runs[-2:], flush=True)
    a = pd.DataFrame(runs).pivot_table(index=["rep", "chromosome"], columns="way", values="wall_s")
    speedup = (a["1 thread(s)"] / a[f"{cores} thread(s)"]).median() if cores > 1 else 1.0
    fitted = (cores / speedup - 1) / (cores - 1) if cores > 1 else 0.0  # Amdahl: s(T) = 1 / (f + (1 - f) / T)

    common.start_ray(num_cpus=cores)
    cap = capacity.read()
    images_ref = ray.put(images)
    notes = [f"A: median speed-up of {cores} threads over 1: {speedup:.3f} (Amdahl serial fraction {fitted:.3f}; "
             f"estimate.SERIAL_FRACTION is {estimate.SERIAL_FRACTION})"]
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        loop.run_generation(run_config(cores, 1, 2), "warm", Path(tmp), 0, members[:cores], images_ref,
                                len(images))
    for size in (2, 8):
        auto = task.task_cpus(run_config(size, "auto", steps), cap)
        notes.append(f"B: population {size} on {cores} CPUs: num_cpus auto resolves to {auto:g}")
        ways = {"num_cpus 1": 1, f"num_cpus auto ({auto:g})": "auto", f"num_cpus {cores}": cores}
        for rep in range(reps):
            order = [*ways, "sequential"] if rep % 2 == 0 else ["sequential", *reversed(ways)]
            for way in order:
                if way == "sequential":
                    wall = timed(lambda: train_all(members[:size], cores))
                else:
                    cfg = run_config(size, ways[way], steps)
                    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
                        wall = timed(lambda: loop.run_generation(cfg, "bench", Path(tmp), 0, members[:size],
                                                                     images_ref, len(images)))
                runs.append({"experiment": f"B: one generation of {size}", "rep": rep, "way": way, "wall_s": wall})
                print(runs[-1], flush=True)
    ray.shutdown()

    df = pd.DataFrame(runs)
    summary = df.groupby(["experiment", "way"], sort=False)["wall_s"].median().reset_index()
    for experiment, g in df[df.experiment.str.startswith("B")].groupby("experiment", sort=False):
        per_rep = g.pivot(index="rep", columns="way", values="wall_s")
        for way in per_rep:
            if way != "sequential":
                notes.append(f"{experiment}: {way} / sequential = {(per_rep[way] / per_rep.sequential).median():.3f} "
                             "(median of per-repetition ratios)")
    notes.append(f"{'4 steps' if steps else 'the demo preset whole (2 epochs)'} per training, medians of {reps} "
                 "repetition(s); other processes' load lengthens trainings")
    common.report("cpu_threads", summary, df, info, notes)


if __name__ == "__main__":
    main()
