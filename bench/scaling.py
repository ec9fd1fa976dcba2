"""Benchmark 4: throughput as workers are added, and as chromosomes share one GPU.

CPU: one generation of the demo preset's first population (8 chromosomes, 2 epochs of 2,048 16px images) on
a private local Ray with 1 worker, then with 2 (one CPU and one torch thread each), alternating, repeated.
Throughput is real images trained per second of wall time; speedup = throughput(2) / throughput(1).

GPU (when this machine has one): the same with 1, 2, 4 and 8 chromosomes sharing the GPU at once
(resources.num_gpus = 1/k), 8 chromosomes of the demo space at 64px, the fast path at its defaults.

    python bench/scaling.py [--quick] [--reps N]
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
from neuroevo.execution import loop
from neuroevo.train import data


def one_generation(cfg: config.RunConfig, images) -> dict:
    ref = ray.put(images)
    members = population.fresh_members(cfg, 0, cfg.evolve.population)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        loop.run_generation(cfg, "bench", Path(tmp), 0, members[:2], ref, len(images))  # warm the workers
        start = time.perf_counter()
        df = pd.DataFrame(t.row for t in loop.run_generation(cfg, "bench", Path(tmp), 0, members, ref, len(images)))
        wall = time.perf_counter() - start
    images_trained = (df.images_per_second * df.train_seconds).sum()
    return {"wall_s": wall, "images_per_second": images_trained / wall, "failed": int((df.status != "ok").sum()),
            "task_device": df.device.iloc[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one epoch of 1,024 images; 1 repetition")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    args = p.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    short = ["train.epochs=1", "data.subset=1024"] if args.quick else []
    info = common.machine()
    runs = []

    cfg = config.load("demo", ["resources.num_cpus=1", "resources.num_gpus=0", *short])
    images = data.load(cfg.data, cfg.seed).array
    for rep in range(reps):
        for workers in ((1, 2) if rep % 2 == 0 else (2, 1)):
            common.start_ray(num_cpus=workers)
            runs.append({"device": "cpu", "sharing": f"{workers} worker(s)", "k": workers, "rep": rep,
                         **one_generation(cfg, images)})
            print(runs[-1], flush=True)
            ray.shutdown()

    if torch.cuda.is_available():
        for rep in range(reps):
            for k in (1, 2, 4, 8):
                gpu_cfg = config.load("demo", ["data.image_size=64", "space.g_blocks=[3, 23]",
                                               "space.max_params=5000000", "resources.num_cpus=1",
                                               f"resources.num_gpus={1 / k}", *short])
                common.start_ray(num_cpus=min(os.cpu_count() or 1, 16), num_gpus=1)
                runs.append({"device": info["gpu"], "sharing": f"{k} per GPU", "k": k, "rep": rep,
                             **one_generation(gpu_cfg, data.load(gpu_cfg.data, gpu_cfg.seed).array)})
                print(runs[-1], flush=True)
                ray.shutdown()

    df = pd.DataFrame(runs)
    summary = df.groupby(["device", "sharing", "k"], sort=False)[["wall_s", "images_per_second"]].median().reset_index()
    for device, g in summary.groupby("device", sort=False):
        summary.loc[g.index, "speedup"] = g.images_per_second / g.images_per_second.iloc[0]
    notes = [f"medians of {reps} repetition(s); 8 chromosomes per generation; other processes' load competes "
             "with the workers, most when they use every core"]
    if not torch.cuda.is_available():
        notes.append("no GPU on this machine: the GPU-sharing figures (1, 2, 4, 8 chromosomes per GPU) were not "
                     "measured")
    common.report("scaling", summary.drop(columns="k"), df, info, notes)


if __name__ == "__main__":
    main()
