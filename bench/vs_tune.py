"""Benchmark 9: one generation as neuroevo runs it, against the same trainings as Ray Tune trials and as a loop.

The same chromosomes (the first population of the demo preset, one generation), the same training seeds
(population.task_seed), the same train.run call on the same images, four ways, each in a fresh Python process
on this machine, interleaved within each repetition (the order rotates):

    neuroevo     `python -m neuroevo run demo --set evolve.generations=1`: its private local Ray, a 1-CPU task per
                 chromosome, longest first
    tune         a Ray Tune function trainable (1 CPU a trial, grid search over the chromosomes, in the
                 population's order) on a private local Ray, reuse_actors=False: a new actor per trial
    tune_reuse   the same with reuse_actors=True
    sequential   a plain loop over the chromosomes in one process, torch.set_num_threads(cores)

Per run: wall (the process, launch to exit: imports, data, Ray and its workers, training, logs, shutdown), to_first
(launch to the first training's start), trainings (the first training's start to the last's end: warm workers),
busy (core-seconds inside the trainings, each its span x its threads), efficiency = busy / (cores x trainings) and
wall efficiency = busy / (cores x wall). Ratios are taken within each repetition, then their median.

neuroevo's and Tune's rows (1 thread each) must have the same losses, chromosome by chromosome: same work. The
loop's threads round differently; its largest loss difference is printed, not asserted.

    pip install -e ".[bench]"            # Ray Tune
    python bench/vs_tune.py [--reps N] [--population N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import common  # first: puts this checkout's neuroevo on the path

# all an arm's process imports of neuroevo; pandas and the logs load only in the process that times the arms
from neuroevo import config
from neuroevo.evolve import population
from neuroevo.space.chromosome import Chromosome
from neuroevo.train import data

if TYPE_CHECKING:
    import pandas as pd

ARMS = ("neuroevo", "tune", "tune_reuse", "sequential")


def overrides(args: argparse.Namespace) -> list[str]:
    """The demo preset's keys that every arm reads: one generation, the population, --quick's smaller data."""
    quick = ["data.subset=512", "train.epochs=1"] if args.quick else []
    return ["evolve.generations=1", f"evolve.population={args.population}", *quick]


def members(cfg: config.RunConfig) -> list[tuple[Chromosome, int]]:
    """Generation 0's chromosomes and their training seeds, as neuroevo draws them."""
    return [(m.chromosome, population.task_seed(cfg.seed, 0, m.chromosome.id))
            for m in population.initial_population(cfg)]


def train_one(ch: Chromosome, images, cfg: config.RunConfig, seed: int, threads: int) -> dict:
    """One chromosome's training as a neuroevo task does it, on the CPU, with its times."""
    import torch

    from neuroevo.train import trainer

    torch.set_num_threads(threads)
    started = time.time()
    result, _ = trainer.train_and_save(ch, images, cfg.train, seed, "cpu", cfg.data.flip)
    return {"chromosome_id": ch.id, "task_seed": seed, "d_loss": result.d_loss, "g_loss": result.g_loss,
            "status": result.status, "started": started, "finished": time.time(), "threads": threads}


def sequential(cfg: config.RunConfig, images, cores: int) -> list[dict]:
    return [train_one(ch, images, cfg, seed, cores) for ch, seed in members(cfg)]


def trial(space: dict, chromosomes: list, images, cfg: config.RunConfig) -> None:
    """A Tune function trainable: the chromosome space["index"], 1 thread as its 1 CPU."""
    from ray import tune

    ch, seed = chromosomes[space["index"]]
    tune.report(train_one(ch, images, cfg, seed, 1))


def tune_trials(cfg: config.RunConfig, images, cores: int, reuse: bool, storage: Path) -> list[dict]:
    from ray import tune

    common.start_ray(num_cpus=cores)
    chromosomes = members(cfg)
    trainable = tune.with_resources(tune.with_parameters(trial, chromosomes=chromosomes, images=images, cfg=cfg),
                                    {"cpu": 1})
    tuner = tune.Tuner(trainable, param_space={"index": tune.grid_search(list(range(len(chromosomes))))},
                       tune_config=tune.TuneConfig(reuse_actors=reuse),
                       run_config=tune.RunConfig(storage_path=str(storage), name="bench", verbose=0))
    results = tuner.fit()
    if results.errors:
        raise RuntimeError(f"{len(results.errors)} Tune trial(s) failed: {results.errors[0]}")
    keys = ("chromosome_id", "task_seed", "d_loss", "g_loss", "status", "started", "finished", "threads")
    return [{k: r.metrics[k] for k in keys} for r in results]


def child(arm: str, args: argparse.Namespace) -> None:
    """One arm other than neuroevo, in this fresh process; its rows go to args.rows as JSON."""
    cfg = config.load("demo", overrides(args))
    images = data.load(cfg.data, cfg.seed, progress=False).array
    cores = os.cpu_count() or 1
    if arm == "sequential":
        rows = sequential(cfg, images, cores)
    else:
        rows = tune_trials(cfg, images, cores, arm == "tune_reuse", Path(args.rows).parent)
    Path(args.rows).write_text(json.dumps(rows))


def run_arm(arm: str, args: argparse.Namespace, tmp: Path) -> tuple[pd.DataFrame, float, float]:
    """Run one arm in a fresh process: its rows, its launch time (time.time) and its wall time."""
    import pandas as pd

    from neuroevo.store import logs

    keys = overrides(args)
    if arm == "neuroevo":
        cmd = [sys.executable, "-m", "neuroevo", "run", "demo", *(a for k in keys for a in ("--set", k)),
               "--set", f"out_dir={tmp}", "--set", "run_id=bench"]
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--arm", arm, "--rows", str(tmp / "rows.json"),
               "--population", str(args.population), *(["--quick"] if args.quick else [])]
    output = tmp / "output.txt"
    with output.open("w") as out:
        launched, start = time.time(), time.perf_counter()
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{arm} exited {proc.returncode}:\n{output.read_text()[-3000:]}")
    if arm != "neuroevo":
        return pd.DataFrame(json.loads((tmp / "rows.json").read_text())), launched, wall
    df = logs.read_generations(tmp / "bench")
    seconds = {c: df[c].map(lambda t: t.timestamp()) for c in ("started_at", "finished_at")}
    return (pd.DataFrame({"chromosome_id": df.chromosome_id, "task_seed": df.task_seed, "d_loss": df.d_loss,
                          "g_loss": df.g_loss, "status": df.status, "started": seconds["started_at"],
                          "finished": seconds["finished_at"], "threads": 1}), launched, wall)


def metrics(rows: pd.DataFrame, launched: float, wall: float, cores: int) -> dict:
    trainings = float(rows.finished.max() - rows.started.min())
    busy = float(((rows.finished - rows.started) * rows.threads).sum())
    return {"wall_s": wall, "to_first_s": float(rows.started.min() - launched), "trainings_s": trainings, "busy_s": busy,
            "efficiency": busy / (cores * trainings), "wall_efficiency": busy / (cores * wall),
            "failed": int((rows.status != "ok").sum())}


def same_work(rows: dict[str, pd.DataFrame]) -> float:
    """Assert that every 1-thread arm trained the same chromosomes with the same seeds to the same losses;
    return the loop's largest relative loss difference from neuroevo's."""
    cols = ["task_seed", "d_loss", "g_loss"]
    ref = rows["neuroevo"].set_index("chromosome_id").sort_index()[cols]
    for arm in ("tune", "tune_reuse"):
        got = rows[arm].set_index("chromosome_id").sort_index()[cols]
        if not got.equals(ref):
            raise AssertionError(f"{arm}'s trainings differ from neuroevo's:\n{got.compare(ref)}")
    loop = rows["sequential"].set_index("chromosome_id").sort_index()[cols]
    if not loop.task_seed.equals(ref.task_seed):
        raise AssertionError("the sequential loop trained other chromosomes or seeds than neuroevo")
    return float((abs(loop[["d_loss", "g_loss"]] - ref[["d_loss", "g_loss"]]) / ref[["d_loss", "g_loss"]].abs()).max().max())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=None, help="repetitions, each running every arm once (default 4, quick 1)")
    p.add_argument("--population", type=int, default=8, help="chromosomes in the generation (default 8)")
    p.add_argument("--quick", action="store_true", help="512 images, 1 epoch; 1 repetition")
    p.add_argument("--arm", choices=ARMS[1:], help=argparse.SUPPRESS)  # one arm's process, started by this script
    p.add_argument("--rows", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.arm:
        return child(args.arm, args)
    import pandas as pd

    reps = args.reps or (1 if args.quick else 4)
    cores = os.cpu_count() or 1
    info = common.machine()
    runs, loop_diff = [], []
    for rep in range(reps):
        rows = {}
        for arm in ARMS[rep % len(ARMS):] + ARMS[:rep % len(ARMS)]:
            with tempfile.TemporaryDirectory() as tmp:
                rows[arm], launched, wall = run_arm(arm, args, Path(tmp))
            runs.append({"arm": arm, "rep": rep, **metrics(rows[arm], launched, wall, cores)})
            print(runs[-1], flush=True)
        loop_diff.append(same_work(rows))

    df = pd.DataFrame(runs)
    cols = ["wall_s", "to_first_s", "trainings_s", "busy_s", "efficiency", "wall_efficiency"]
    summary = df.groupby("arm", sort=False)[cols].median().reset_index()
    summary.insert(2, "wall_min_s", df.groupby("arm", sort=False).wall_s.min().values)
    per_rep = df.pivot(index="rep", columns="arm")
    for col, name in (("wall_s", "wall_vs_neuroevo"), ("trainings_s", "trainings_vs_neuroevo")):
        summary[name] = [(per_rep[col][arm] / per_rep[col].neuroevo).median() for arm in summary.arm]
    notes = [f"one generation of {args.population} demo chromosomes{' (quick: 512 images, 1 epoch)' if args.quick else ''}"
             f", {cores} cores; medians of {reps} interleaved repetition(s); *_vs_neuroevo: the arm's time / "
             "neuroevo's, median of the per-repetition ratios",
             "neuroevo and both Tune arms trained every chromosome to the same losses (asserted); the loop's "
             f"{cores} threads differ by at most {max(loop_diff):.2g} (relative)",
             "Tune runs its trials in the population's order; neuroevo longest first"]
    common.report("vs_tune", summary, df, info, notes)


if __name__ == "__main__":
    main()
