"""Benchmark 8: a cold `neuroevo run`'s first generation, with its workers warmed as soon as Ray starts and
without (as neuroevo runs).

Each run is a new process that starts its own private Ray, as `neuroevo run` on one machine does: one generation
of the `demo` preset's 8 chromosomes (quick: 4 steps each) on all the machine's cores. "warmed" submits, right
after Ray starts, one task per CPU that loads what a training task loads (torch, neuroevo.train, neuroevo.quality)
and asks what a training task asks (1 CPU), without waiting for them, so that their loading overlaps the rest of
the driver's start-up and the first generation's tasks find torch loaded. The two alternate within each
repetition. Reported: the whole run's wall time (process start to end), generation 0's seconds as the run prints
them (its tasks' submission to its last row logged), and how long after the submission its first task started
training (its started_at, taken once the task's imports are done).

    python bench/warm_start.py [--quick] [--reps N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import common  # first: puts this checkout's neuroevo on the path
import pandas as pd


def child(warm: bool, steps: int | None, out_dir: str) -> None:
    """One cold run in this process; prints its figures as one JSON line."""
    start = time.perf_counter()
    from neuroevo import api
    from neuroevo.execution import experiment, loop

    if warm:
        start_ray = experiment._init_ray

        def init_and_warm(request):
            start_ray(request)
            import ray

            @ray.remote(num_cpus=1)
            def warm_up() -> None:
                from neuroevo.train import checkpoint, quality, trainer  # noqa: F401

            for _ in range(int(ray.cluster_resources()["CPU"])):
                warm_up.remote()

        experiment._init_ray = init_and_warm
    submitted = []
    run_generation = loop.run_generation

    def timed_generation(*args, **kwargs):
        submitted.append(datetime.now(timezone.utc))
        return run_generation(*args, **kwargs)

    loop.run_generation = timed_generation
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = api.run("demo", {"evolve.generations": 1, "train.steps_per_epoch": steps}, out_dir=out_dir)
    wall = time.perf_counter() - start
    gen0 = float(re.search(r"^gen 0: .* ([0-9.]+)s$", printed.getvalue(), re.M).group(1))
    first = (pd.read_parquet(result.run_dir / "generations").started_at.min() - submitted[0]).total_seconds()
    print(json.dumps({"run_s": wall, "generation_0_s": gen0, "first_task_start_s": first}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4 steps a chromosome, 1 repetition")
    p.add_argument("--reps", type=int, default=None, help="repetitions (default 4, quick 1)")
    p.add_argument("--child", choices=["warm", "cold"], help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child == "warm", args.steps, args.out)
        return
    reps = args.reps or (1 if args.quick else 4)
    steps = 4 if args.quick else None
    info = common.machine()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(reps):
            for way in (("warmed", "not warmed") if rep % 2 == 0 else ("not warmed", "warmed")):
                command = [sys.executable, __file__, "--child", "warm" if way == "warmed" else "cold", "--out", tmp,
                           *(["--steps", str(steps)] if steps else [])]
                done = subprocess.run(command, capture_output=True, text=True, check=True)
                runs.append({"way": way, "rep": rep, **json.loads(done.stdout.strip().splitlines()[-1])})
                print(runs[-1], flush=True)
    df = pd.DataFrame(runs)
    summary = df.groupby("way", sort=False)[["run_s", "generation_0_s", "first_task_start_s"]].median().reset_index()
    per_rep = df.pivot(index="rep", columns="way")
    notes = [f"{'4 steps' if steps else 'the demo preset whole (2 epochs)'} per chromosome, 8 chromosomes, "
             f"medians of {reps} repetition(s); other processes' load lengthens everything",
             f"warmed / not warmed: whole run {(per_rep.run_s.warmed / per_rep.run_s['not warmed']).median():.3f}, "
             f"generation 0 {(per_rep.generation_0_s.warmed / per_rep.generation_0_s['not warmed']).median():.3f} "
             "(medians of per-repetition ratios)"]
    common.report("warm_start", summary, df, info, notes)


if __name__ == "__main__":
    main()
