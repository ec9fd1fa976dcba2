"""Benchmark 3: the fixed cost of a training task against its training time.

What a task pays besides its training steps, each measured on its own:

    imports         what a worker imports to run a task, `neuroevo.task` and `neuroevo.train` (ray, torch,
                    torchvision), in a fresh interpreter
    cold start      submit -> the training task's first line, on a just-started Ray: worker start, imports
    data attach     ray.get of the images in a worker (zero-copy from the object store), demo and CIFAR-sized
    model build     build G and D, place them, make the optimisers (typical chromosome of each preset)
    artifacts       weights and sample grid of a trained chromosome
    warm task       a whole task of one training step on a warm worker, minus that step: dispatch, attach,
                    build, artifacts and the result's return together

against the training time of the first chromosome of the `demo` preset (measured) and of the `cifar10`
preset (one step measured, times its 7,810 steps: 10 epochs of 50,000 images in batches of 64).

    python bench/task_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone

import common  # first: puts this checkout's neuroevo on the path
import numpy as np
import pandas as pd
import ray
import torch

from neuroevo import config, data, fastpath, population, task, train
from neuroevo.model import build

CIFAR_IMAGES = 50_000


def import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import neuroevo.task, neuroevo.train; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=common.REPO)
    return float(out.stdout.strip())


@ray.remote(num_cpus=1)
def attach(refs: list[ray.ObjectRef]) -> float:
    start = time.perf_counter()
    images = ray.get(refs[0])
    assert images.dtype == np.uint8
    return time.perf_counter() - start


def build_seconds(ch, cfg: config.TrainConfig) -> float:
    start = time.perf_counter()
    G, D = build(ch)
    fp = fastpath.plan(cfg, fastpath.CPU, 0)
    G, D = fastpath.place(G, torch.device("cpu"), fp), fastpath.place(D, torch.device("cpu"), fp)
    torch.optim.SGD(G.parameters(), lr=ch.g_lr, momentum=ch.g_momentum)
    torch.optim.SGD(D.parameters(), lr=ch.d_lr, momentum=ch.d_momentum)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = p.parse_args()
    reps = 3 if args.quick else 7
    big_reps = 1 if args.quick else 3  # whole tasks of the cifar10 preset's chromosome: a step takes a while on a CPU
    torch.set_num_threads(1)  # as in a Ray task with num_cpus=1
    info = common.machine()
    presets = {"demo": config.load("demo"),  # cifar10's networks, on demo images of its size: no download needed
               "cifar10": config.load("cifar10", ["data.source=demo", f"data.subset={64 * 4}"])}
    first = {name: population.fresh_members(cfg, 0, 1)[0].chromosome for name, cfg in presets.items()}
    images = {name: data.load(cfg.data, cfg.seed).array for name, cfg in presets.items()}
    runs: list[dict] = []

    def record(component: str, preset: str, seconds: float) -> None:
        runs.append({"component": component, "preset": preset, "seconds": seconds})

    for _ in range(reps):
        record("imports", "any", import_seconds())
    for name, cfg in presets.items():
        for _ in range(reps):
            record("model build", name, build_seconds(first[name], cfg.train))
        G, D = build(first[name])
        for _ in range(reps):
            start = time.perf_counter()
            train.artifacts(first[name], G, D, cfg.train.sample_grid, seed=0)
            record("artifacts", name, time.perf_counter() - start)
    demo_train = train.train(first["demo"], images["demo"], presets["demo"].train, seed=0)[0].train_seconds

    for _ in range(2 if args.quick else 3):  # a fresh Ray each time: the first task's worker is cold
        common.start_ray(num_cpus=1)
        submitted = datetime.now(timezone.utc)
        report = ray.get(task.train_task.remote(first["demo"], images["demo"], presets["demo"].train, 0)[0])
        record("cold start", "any", (report.started_at - submitted).total_seconds())
        ray.shutdown()

    common.start_ray(num_cpus=1)
    arrays = {"demo": ray.put(images["demo"]),
              "cifar10": ray.put(np.zeros((CIFAR_IMAGES, 3, 64, 64), np.uint8))}  # the cifar10 preset's array: 614 MB
    for name, ref in arrays.items():
        ray.get(attach.remote([ref]))  # the first get maps the object into the worker
        for _ in range(reps):
            record("data attach", name, ray.get(attach.remote([ref])))
    step_seconds = {}
    for name, cfg in presets.items():
        one_step = replace(cfg.train, epochs=1, steps_per_epoch=1)
        ref = ray.put(images[name])
        ray.get(task.train_task.remote(first[name], ref, one_step, 0)[0])  # warm the worker
        for _ in range(reps if name == "demo" else big_reps):
            start = time.perf_counter()
            report, _ = ray.get(list(task.train_task.remote(first[name], ref, one_step, 0)))
            step_seconds.setdefault(name, []).append(report.result.train_seconds)
            record("warm task", name, time.perf_counter() - start - report.result.train_seconds)
    ray.shutdown()

    cifar_steps = presets["cifar10"].train.epochs * (CIFAR_IMAGES // first["cifar10"].batch_size)
    training = {"demo": demo_train, "cifar10": common.median(step_seconds["cifar10"]) * cifar_steps}
    df = pd.DataFrame(runs)
    med = df.groupby(["component", "preset"], sort=False).seconds.median()
    summary = pd.DataFrame([
        {"preset": preset, "component": component, "seconds": seconds, "share_of_training": seconds / training[preset]}
        for preset in presets for (component, of), seconds in med.items() if of in (preset, "any")])
    notes = [f"training time: demo {training['demo']:.1f}s (measured; first chromosome, 2 epochs of 2,048 16px "
             f"images); cifar10 {training['cifar10'] / 3600:.1f}h on this CPU (first chromosome, "
             f"{common.median(step_seconds['cifar10']):.1f}s a step x {cifar_steps:,} steps)",
             f"medians of {reps} repetitions ({big_reps} for cifar10's whole tasks); one torch thread",
             "imports and cold start are paid once per worker process (Ray reuses workers); the others once per task "
             "(warm task includes attach, build and artifacts)"]
    common.report("task_overhead", summary, df, info, notes)


if __name__ == "__main__":
    main()
