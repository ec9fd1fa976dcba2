"""The driver: sample a population, train every member as one Ray task, log, select, repeat.

The driver holds the population and the run directory; it never touches a model. Each training task
gets the images by reference (one ray.put per run, or the path of the data cache that it maps) and a seed
derived from (run seed, generation, id).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import ray

from neuroevo import fitness as fitness_mod
from neuroevo import data, genome, logs, memory, progress, selection, train
from neuroevo.config import RunConfig, TrainConfig, elite_count
from neuroevo.genome import Genome
from neuroevo.state import Member, RunState
from neuroevo.state import save as save_state
from neuroevo.train import Artifacts, TrainResult

_SAMPLE_STREAM = 1  # keeps the sampler's random stream apart from any other drawn from the run seed
_BREED_STREAM = 2  # the random stream of mutation, crossover and tournaments


@dataclass(frozen=True)
class TaskReport:
    result: TrainResult
    node: str
    gpu_ids: tuple[str, ...]
    started_at: datetime
    finished_at: datetime


def task_seed(run_seed: int, generation: int, chromosome_id: str) -> int:
    """A training seed that depends only on the run seed, the generation and the chromosome."""
    ss = np.random.SeedSequence([run_seed, generation, int(chromosome_id, 16)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))  # fits a signed int64


def fresh_members(cfg: RunConfig, generation: int, count: int) -> tuple[Member, ...]:
    """`count` new random chromosomes; the same (seed, generation) always gives the same ones."""
    rng = np.random.default_rng([cfg.seed, generation, _SAMPLE_STREAM])
    members = []
    for _ in range(count):
        ch, rejected = genome.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)
        members.append(Member(ch, generation, rejected))
    return tuple(members)


def bred_members(cfg: RunConfig, generation: int, population: tuple[Member, ...],
                 fitness: list[float]) -> tuple[Member, ...]:
    """The non-elite places of `generation` by the strategy evolve.strategy (not random), from the generation
    before; the same (seed, generation) and fitness always give the same children."""
    rng = np.random.default_rng([cfg.seed, generation, _BREED_STREAM])
    n_elite = elite_count(cfg.evolve)
    children = selection.breed(cfg.evolve.strategy, [m.chromosome for m in population], fitness, n_elite,
                               cfg.evolve.population - n_elite, cfg.space, rng, cfg.evolve.tournament_size)
    return tuple(Member(c.chromosome, generation, c.rejected, c.parents, c.operator) for c in children)


def next_population(cfg: RunConfig, generation: int, population: tuple[Member, ...],
                    fitness: list[float]) -> tuple[Member, ...]:
    """Generation `generation`'s members: the elites of the one before, then the strategy's newcomers."""
    ids = [m.chromosome.id for m in population]
    n_elite = elite_count(cfg.evolve)
    kept = tuple(replace(m, parents=(m.chromosome.id,), operator="elite")
                 for m in selection.elites(population, fitness, ids, n_elite))
    if cfg.evolve.strategy == "random":
        return kept + fresh_members(cfg, generation, cfg.evolve.population - n_elite)
    return kept + bred_members(cfg, generation, population, fitness)


def initial_state(cfg: RunConfig) -> RunState:
    seeds = tuple(Member(genome.SEEDS[name](cfg.data.image_size, cfg.data.channels, cfg.space.batch_size), 0, 0,
                         operator="seed") for name in cfg.evolve.seed_chromosomes)
    return RunState((seeds + fresh_members(cfg, 0, cfg.evolve.population - len(seeds)),), completed=0)


@ray.remote(num_returns=2)
def train_task(ch: Genome, images: np.ndarray | data.Cache, cfg: TrainConfig, seed: int, flip: bool = False,
               init_weights: bytes | None = None) -> tuple[TaskReport, Artifacts | None]:
    started = datetime.now(timezone.utc)
    gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
    result, art = train.run(ch, data.attach(images), cfg, seed, train.pick_device(len(gpu_ids)), flip, init_weights)
    node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    return TaskReport(result, node, gpu_ids, started, datetime.now(timezone.utc)), art


def task_resources(cfg: RunConfig, ch: Chromosome | None = None) -> dict[str, float]:
    """What one training task asks Ray for; `ch` is needed only for num_gpus: memory."""
    num_gpus = cfg.resources.num_gpus
    if num_gpus is None or num_gpus == "memory":
        if ray.cluster_resources().get("GPU", 0) == 0:
            num_gpus = 0.0
        elif num_gpus == "memory":
            num_gpus = memory.gpu_share(ch, cfg.resources.gpu_memory_gb)
        else:
            num_gpus = 1.0
    return {"num_cpus": cfg.resources.num_cpus, "num_gpus": num_gpus, "max_retries": cfg.resources.max_retries}


def _failure(e: ray.exceptions.RayError) -> tuple[str, str]:
    """(status, error) of a task that returned no report."""
    if isinstance(e, ray.exceptions.RayTaskError):  # the training code raised
        return "failed", " ".join(str(e.cause if e.cause is not None else e).split())[:2000]
    if isinstance(e, ray.exceptions.OutOfMemoryError):  # Ray's memory monitor killed the worker (host RAM)
        return "oom", " ".join(str(e).split())[:2000]
    # the worker or its node died, past cfg.resources.max_retries re-runs
    return "lost", f"{type(e).__name__}: " + " ".join(str(e).split())[:2000]


def _row(cfg: RunConfig, run_id: str, generation: int, m: Member, seed: int, report: TaskReport | None,
         failure: tuple[str, str]) -> dict:
    r = report.result if report else None
    if r is None:
        (status, error), fit = failure, cfg.fitness.failed
    elif r.status != "ok":
        status, error, fit = r.status, r.error, cfg.fitness.failed
    else:
        status, error = "ok", ""
        fit = fitness_mod.fitness(r.d_loss, r.g_loss, r.params_g, r.params_d, cfg.fitness, m.chromosome.loss)
    params_g, params_d = genome.param_counts(m.chromosome)
    return {
        "run_id": run_id,
        **logs.gene_columns(m.chromosome),
        "born_generation": m.born_generation,
        "is_elite": m.born_generation < generation,
        "parents": list(m.parents),
        "operator": m.operator,
        "resampled": m.resampled,
        "task_seed": seed,
        "params_g": r.params_g if r else params_g,
        "params_d": r.params_d if r else params_d,
        "d_loss": r.d_loss if r else None,
        "g_loss": r.g_loss if r else None,
        "d_losses": list(r.d_losses) if r else None,
        "g_losses": list(r.g_losses) if r else None,
        "fitness": fit,
        "status": status,
        "error": error,
        "train_seconds": r.train_seconds if r else None,
        "images_per_second": r.images_per_second if r else None,
        "device": r.device if r else None,
        "node": report.node if report else None,
        "gpu_ids": list(report.gpu_ids) if report else None,
        "started_at": report.started_at if report else None,
        "finished_at": report.finished_at if report else None,
    }


def _save_best(run_dir: Path, generation: int, row: dict, art: Artifacts) -> Path:
    out = run_dir / "best" / f"generation={generation:04d}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "weights.pt").write_bytes(art.weights)
    (out / "samples.png").write_bytes(art.samples_png)
    (out / "chromosome.json").write_text(row["chromosome"] + "\n")
    return out


def _weights_path(run_dir: Path, generation: int, chromosome_id: str) -> Path:
    return Path(run_dir) / "weights" / f"generation={generation:04d}" / f"{chromosome_id}.pt"


def _start_weights(run_dir: Path, generation: int, m: Member) -> bytes | None:
    """evolve.keep_weights: an elite starts from the weights it ended the generation before with."""
    path = _weights_path(run_dir, generation, m.chromosome.id)
    return path.read_bytes() if m.born_generation < generation and path.is_file() else None


def _save_elite_weights(run_dir: Path, generation: int, df: pd.DataFrame, artifacts: dict, n_elite: int) -> None:
    """The weights the elites of `generation` - 1 will start `generation` from, as selection.elites ranks them."""
    ranked = df.sort_values(["fitness", "chromosome_id"], ascending=[False, True]).head(n_elite)
    for row in ranked[ranked["status"] == "ok"].itertuples():
        path = _weights_path(run_dir, generation, row.chromosome_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(ray.get(artifacts[row.chromosome_id]).weights)
        os.replace(tmp, path)


def run_generation(cfg: RunConfig, run_id: str, run_dir: Path, generation: int, population: tuple[Member, ...],
                   images_ref: ray.ObjectRef | data.Cache) -> pd.DataFrame:
    """Train every member (elites too, from fresh weights unless evolve.keep_weights), write the generation's
    log, save the best (and with keep_weights the elites' weights).

    Always logs exactly one row per member. On Ctrl-C the running tasks are cancelled and nothing is written.
    """
    pending: dict[ray.ObjectRef, tuple[Member, int, ray.ObjectRef]] = {}
    for m in population:
        seed = task_seed(cfg.seed, generation, m.chromosome.id)
        init = _start_weights(run_dir, generation, m) if cfg.evolve.keep_weights else None
        # a task whose worker or node dies is rerun elsewhere; one that raises is not (training is deterministic)
        report_ref, art_ref = train_task.options(
            name=f"train-g{generation}-{m.chromosome.id}", **task_resources(cfg, m.chromosome)).remote(
            m.chromosome, images_ref, cfg.train, seed, cfg.data.flip, init)
        pending[report_ref] = (m, seed, art_ref)

    rows, artifacts = [], {}
    bar = progress.GenerationBar(generation, len(population))
    try:
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            m, seed, art_ref = pending.pop(done)
            try:
                report, failure = ray.get(done), ("", "")
            except ray.exceptions.RayError as e:
                report, failure = None, _failure(e)
            row = _row(cfg, run_id, generation, m, seed, report, failure)
            rows.append(row)
            artifacts[row["chromosome_id"]] = art_ref
            bar.task_done(row)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        bar.close()

    logs.write_generation(run_dir, generation, rows)
    df = pd.DataFrame(rows)
    best = df.sort_values(["fitness", "chromosome_id"], ascending=[False, True]).iloc[0]
    if best["status"] == "ok":
        _save_best(run_dir, generation, best.to_dict(), ray.get(artifacts[best["chromosome_id"]]))
    if cfg.evolve.keep_weights:
        _save_elite_weights(run_dir, generation + 1, df, artifacts, elite_count(cfg.evolve))
    return df


def evolve(cfg: RunConfig, run_id: str, run_dir: Path, images: np.ndarray | data.Cache,
           state: RunState | None = None, redo: tuple[int, ...] = ()) -> RunState:
    """The loop: train all, keep the elite fraction unchanged, fill the rest by evolve.strategy (the reference:
    at random).

    images: an array, put in the object store once per run and mapped zero-copy by every task, or a data
    cache that every task maps from its node's disk (data.for_tasks decides which).
    `state` continues a run from its last logged generation; `redo` re-trains logged generations whose files
    were found damaged (their populations are in the state, and selection already happened).
    """
    images_ref = ray.put(images) if isinstance(images, np.ndarray) else images
    if state is None:
        state = initial_state(cfg)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        save_state(run_dir, state, cfg.seed)
    for generation in redo:
        run_generation(cfg, run_id, run_dir, generation, state.population(generation), images_ref)
    summary = []
    for generation in range(state.completed, cfg.evolve.generations):
        start = time.perf_counter()
        population = state.population(generation)
        df = run_generation(cfg, run_id, run_dir, generation, population, images_ref)
        by_id = dict(zip(df["chromosome_id"], df["fitness"]))
        fitness = [by_id[m.chromosome.id] for m in population]
        state = state.advance(next_population(cfg, generation + 1, population, fitness))
        save_state(run_dir, state, cfg.seed)
        summary.append({
            "generation": generation,
            "best": df["fitness"].max(),
            "mean": df["fitness"].mean(),
            "failed": int((df["status"] != "ok").sum()),
            "seconds": time.perf_counter() - start,
        })
        progress.generation_done(df, summary)
    return state

