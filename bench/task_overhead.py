"""Benchmark 3: the fixed cost of a training task against its training time.

What a task pays besides its training steps, each measured on its own:

    imports         what a worker imports to run a task, `neuroevo.task` and `neuroevo.train` (ray, torch,
                    torchvision), in a fresh interpreter
    cold start      submit -> the training task's first line, on a just-started Ray: worker start, imports
    data attach     ray.get of the images in a worker (zero-copy from the object store), demo and CIFAR-sized
    model build     build G and D, place them, make the optimisers (typical chromosome of each preset)
    weights         the weights file every task returns (train.weights: torch.save of G and D)
    sample grid     the sample grid drawn from a weights file (train.sample_grid), by a task for each
                    generation's best only; measured interleaved with `weights`
    warm task       a whole task of one training step on a warm worker, minus that step: dispatch, attach,
                    build, weights and the result's return together

against the training time of the first chromosome of the `demo` preset (measured) and of the `cifar10`
preset (one step measured, times its 7,810 steps: 10 epochs of 50,000 images in batches of 64).

And what the object store holds when a generation's last task is in (at outputs.write_generation): one
generation of 20 `demo` chromosomes, train.keep best (the driver holds the weights of the best so far only)
interleaved with train.keep all (every member's, all written).

    python bench/task_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import common  # first: puts this checkout's neuroevo on the path
import numpy as np
import pandas as pd
import ray
import torch
from ray._private.internal_api import memory_summary

from neuroevo import config
from neuroevo.evolve import population
from neuroevo.execution import loop, outputs, task
from neuroevo.train import checkpoint, data, fastpath, trainer
from neuroevo.train.model import build

CIFAR_IMAGES = 50_000


def import_seconds() -> float:
    code = "import time; t = time.perf_counter(); import neuroevo.execution.task, neuroevo.train.trainer; print(time.perf_counter() - t)"
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
    fp = fastpath.switches(cfg, fastpath.CPU, 0)
    G, D = fastpath.place(G, torch.device("cpu"), fp), fastpath.place(D, torch.device("cpu"), fp)
    torch.optim.SGD(G.parameters(), lr=ch.g_lr, momentum=ch.g_momentum)
    torch.optim.SGD(D.parameters(), lr=ch.d_lr, momentum=ch.d_momentum)
    return time.perf_counter() - start


POPULATION = 20


def held_at_generation_end(cfg: config.RunConfig, images: np.ndarray, reps: int) -> list[dict]:
    """One generation of POPULATION, train.keep best and all interleaved: the weights objects the driver still
    references, and the object store's use, when the generation's tasks are all in."""
    held: list[dict] = []
    log = outputs.write_generation

    def measured_log(run_cfg, run_dir, generation, trained, cap):
        weights = [t.weights for t in trained if t.weights is not None]
        store = re.search(r"Plasma memory usage (\d+) MiB, (\d+) objects",
                          memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True))
        held.append({"keep": run_cfg.train.keep, "weights": len(weights),
                     "weights_mb": sum(len(w) for w in ray.get(weights)) / 1e6,
                     "store_mib": int(store.group(1)), "store_objects": int(store.group(2))})
        return log(run_cfg, run_dir, generation, trained, cap)

    outputs.write_generation = measured_log
    common.start_ray(num_cpus=2)
    ref = ray.put(images)
    try:
        for _ in range(reps):
            for keep in ("best", "all"):
                run_cfg = replace(cfg, train=replace(cfg.train, keep=keep, epochs=1, steps_per_epoch=2),
                                  evolve=replace(cfg.evolve, population=POPULATION, generations=1))
                with tempfile.TemporaryDirectory() as tmp:
                    loop.run_generation(run_cfg, "bench", Path(tmp), 0,
                                            population.initial_population(run_cfg), ref, len(images))
    finally:
        outputs.write_generation = log
        ray.shutdown()
    return held


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
            weights = checkpoint.weights(first[name], G, D)
            record("weights", name, time.perf_counter() - start)
            start = time.perf_counter()
            checkpoint.sample_grid(weights, cfg.train.sample_grid, seed=0)
            record("sample grid", name, time.perf_counter() - start)
    demo_train = trainer.train(first["demo"], images["demo"], presets["demo"].train, seed=0)[0].train_seconds

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
    held = held_at_generation_end(presets["demo"], images["demo"], 1 if args.quick else 2)

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
             "(warm task includes attach, build and weights), but the sample grid once per generation",
             *(f"object store at a generation's end, {POPULATION} demo chromosomes, train.keep {keep}: "
               f"{common.median([h['weights'] for h in held if h['keep'] == keep]):.0f} weights objects held, "
               f"{common.median([h['weights_mb'] for h in held if h['keep'] == keep]):.1f} MB; the store "
               f"{common.median([h['store_mib'] for h in held if h['keep'] == keep]):.0f} MiB in "
               f"{common.median([h['store_objects'] for h in held if h['keep'] == keep]):.0f} objects, the images' "
               f"{images['demo'].nbytes / 2**20:.1f} MiB included" for keep in ("best", "all"))]
    common.report("task_overhead", summary, pd.concat([df, pd.DataFrame(held)]), info, notes)


if __name__ == "__main__":
    main()
