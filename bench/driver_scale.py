"""Benchmark: what the driver itself pays per chromosome as the population grows.

    gather      the driver's CPU time (time.process_time of this process, Ray's threads in it included) to hand out
                N finished tasks and ray.get each one's result, as dispatch does: one ray.wait at a time with
                num_returns=1 over the list of pending refs, against dispatch.finished (rounds of two ray.waits
                over all pending refs, each handing out every task finished by then). Trivial tasks, all finished
                before the gather starts, so only the gather is timed; N = 100, 1,000 and 10,000.
    state.json  its size and the time to write it (state.save) and read it (state.load) once 0, 10 and 100
                generations of a run with a population of 1,000 are logged (the cifar10 preset's space,
                evolve.strategy random), the population built by neuroevo.population from made-up fitnesses,
                without training.

    python bench/driver_scale.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import common  # first: puts this checkout's neuroevo on the path
import numpy as np
import pandas as pd
import ray

from neuroevo import config
from neuroevo.evolve import population
from neuroevo.evolve.population import Evaluated
from neuroevo.execution import dispatch
from neuroevo.store import rundir, state


@ray.remote(num_cpus=1)
def trivial(i: int) -> int:
    return i


def one_at_a_time(pending: dict):
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        yield done


def gather_seconds(n: int, how) -> tuple[float, int]:
    """Driver CPU seconds to gather n finished tasks, and the ray.wait calls it made."""
    pending = {trivial.remote(i): i for i in range(n)}
    ray.get(list(pending))
    calls, wait = [0], ray.wait

    def counting(*args, **kwargs):
        calls[0] += 1
        return wait(*args, **kwargs)

    ray.wait = counting
    try:
        start = time.process_time()
        handled = sum(1 for ref in how(pending) if ray.get(ref) == pending.pop(ref))
        seconds = time.process_time() - start
    finally:
        ray.wait = wait
    assert handled == n and not pending
    return seconds, calls[0]


def state_sizes(generations: tuple[int, ...], size: int = 1000) -> pd.DataFrame:
    """state.json after generation g - 1 is logged, for each g: it holds generation g's population, drawn as the run
    draws it (the elites of generation g - 1's members, scored at random, then fresh ones)."""
    cfg = config.load("cifar10", [f"evolve.population={size}", f"evolve.generations={max(generations)}",
                                  "evolve.strategy=random"])
    rng = np.random.default_rng(0)
    run_dir = Path(tempfile.mkdtemp())
    rows = []
    for g in generations:
        if g == 0:
            members = population.initial_population(cfg)
        else:
            before = population.fresh_members(cfg, g - 1, size)
            members = population.next_population(cfg, g, [Evaluated(m, float(rng.random())) for m in before])
        start = time.perf_counter()
        state.save(run_dir, state.RunState(members, g), cfg.seed)
        saved = time.perf_counter() - start
        start = time.perf_counter()
        assert state.load(run_dir).completed == g
        rows.append({"generations_logged": g, "save_seconds": saved, "load_seconds": time.perf_counter() - start,
                     "state_json_mb": rundir.state_file(run_dir).stat().st_size / 1e6})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="N up to 1,000, and state.json up to generation 10")
    args = ap.parse_args()
    info = common.machine()
    common.start_ray(num_cpus=2)
    sizes = (100, 1000) if args.quick else (100, 1000, 10_000)
    trivial.remote(0)  # warm a worker before timing
    ray.get([trivial.remote(i) for i in range(100)])
    runs = []
    for n in sizes:
        for name, how in (("one at a time", one_at_a_time), ("batched", dispatch.finished)):
            seconds, calls = gather_seconds(n, how)
            runs.append({"tasks": n, "gather": name, "driver_cpu_s": seconds, "ray_waits": calls,
                         "driver_cpu_ms_per_task": 1000 * seconds / n})
    ray.shutdown()
    df = pd.DataFrame(runs)
    ratio = df.pivot(index="tasks", columns="gather", values="driver_cpu_s")
    summary = df.assign(old_over_new=df.tasks.map(ratio["one at a time"] / ratio["batched"]))
    states = state_sizes((0, 10) if args.quick else (0, 10, 100))
    print(states.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
    at = states.set_index("generations_logged")
    common.report("driver_scale", summary, states, info, [
        "state.json, population 1,000: " + ", ".join(f"{r.state_json_mb:.2f} MB with {g} generations logged"
                                                     for g, r in at.iterrows()) +
        f"; written in {states.save_seconds.max():.2f} s at most, read in {states.load_seconds.max():.2f} s"])

if __name__ == "__main__":
    main()
