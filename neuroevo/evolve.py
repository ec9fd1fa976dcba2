"""The driver: sample a population, train every member as one Ray task, log, select, repeat.

The driver holds the population and the run directory; it never touches a model. Each training task
gets the images by reference (one ray.put per run) and a seed derived from (run seed, generation, id).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import ray

from neuroevo import fitness as fitness_mod
from neuroevo import genome, logs, memory, selection, train
from neuroevo.config import RunConfig, TrainConfig, elite_count
from neuroevo.genome import Chromosome
from neuroevo.train import Artifacts, TrainResult

_SAMPLE_STREAM = 1  # keeps the sampler's random stream apart from any other drawn from the run seed


@dataclass(frozen=True)
class Member:
    chromosome: Chromosome
    born_generation: int
    resampled: int  # rejected for max_params before this one was drawn


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


def fresh_members(cfg: RunConfig, generation: int, count: int) -> list[Member]:
    """`count` new random chromosomes; the same (seed, generation) always gives the same ones."""
    rng = np.random.default_rng([cfg.seed, generation, _SAMPLE_STREAM])
    members = []
    for _ in range(count):
        ch, rejected = genome.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)
        members.append(Member(ch, generation, rejected))
    return members


@ray.remote(num_returns=2)
def train_task(ch: Chromosome, images: np.ndarray, cfg: TrainConfig, seed: int) -> tuple[TaskReport, Artifacts]:
    started = datetime.now(timezone.utc)
    gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
    result, G, D = train.train(ch, images, cfg, seed, train.pick_device(len(gpu_ids)))
    art = train.artifacts(ch, G, D, cfg.sample_grid, seed)
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
    return {"num_cpus": cfg.resources.num_cpus, "num_gpus": num_gpus}


def _row(cfg: RunConfig, run_id: str, m: Member, is_elite: bool, seed: int, report: TaskReport | None,
         error: str) -> dict:
    r = report.result if report else None
    if r is None:
        status, fit = "failed", cfg.fitness.failed
    elif r.status != "ok":
        status, fit = r.status, cfg.fitness.failed
    else:
        status, fit = "ok", fitness_mod.fitness(r.d_loss, r.g_loss, r.params_g, r.params_d, cfg.fitness)
    params_g, params_d = genome.param_counts(m.chromosome)
    return {
        "run_id": run_id,
        **logs.gene_columns(m.chromosome),
        "born_generation": m.born_generation,
        "is_elite": is_elite,
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
        "error": error or (r.error if r else ""),
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


def run_generation(cfg: RunConfig, run_id: str, run_dir: Path, generation: int, population: list[Member],
                   elite_ids: set[str], images_ref: ray.ObjectRef) -> pd.DataFrame:
    """Train every member (elites too, from fresh weights), write the generation's log, save the best."""
    pending: dict[ray.ObjectRef, tuple[Member, int, ray.ObjectRef]] = {}
    for m in population:
        seed = task_seed(cfg.seed, generation, m.chromosome.id)
        # a task whose worker or node dies is rerun elsewhere; one that raises is not (training is deterministic)
        report_ref, art_ref = train_task.options(
            name=f"train-g{generation}-{m.chromosome.id}", max_retries=cfg.resources.max_retries,
            **task_resources(cfg, m.chromosome)).remote(m.chromosome, images_ref, cfg.train, seed)
        pending[report_ref] = (m, seed, art_ref)

    rows, artifacts = [], {}
    while pending:
        [done], _ = ray.wait(list(pending), num_returns=1)
        m, seed, art_ref = pending.pop(done)
        try:
            report, error = ray.get(done), ""
        except ray.exceptions.RayError as e:  # the task raised, or its worker died past Ray's retries
            report, error = None, " ".join(str(getattr(e, "cause", None) or e).split())[:2000]
        row = _row(cfg, run_id, m, m.chromosome.id in elite_ids, seed, report, error)
        rows.append(row)
        artifacts[row["chromosome_id"]] = art_ref
        _print_task(generation, len(rows), len(population), row)

    logs.write_generation(run_dir, generation, rows)
    df = pd.DataFrame(rows)
    best = df.sort_values(["fitness", "chromosome_id"], ascending=[False, True]).iloc[0]
    if best["status"] == "ok":
        _save_best(run_dir, generation, best.to_dict(), ray.get(artifacts[best["chromosome_id"]]))
    return df


def evolve(cfg: RunConfig, run_id: str, run_dir: Path, images: np.ndarray) -> pd.DataFrame:
    """The reference loop: train all, keep the elite fraction unchanged, replace the rest at random."""
    images_ref = ray.put(images)  # once per run; tasks map it zero-copy from the object store
    n_elite = elite_count(cfg.evolve)
    population = fresh_members(cfg, 0, cfg.evolve.population)
    elite_ids: set[str] = set()
    summary = []
    for generation in range(cfg.evolve.generations):
        start = time.perf_counter()
        df = run_generation(cfg, run_id, run_dir, generation, population, elite_ids, images_ref)
        ids = [m.chromosome.id for m in population]
        by_id = dict(zip(df["chromosome_id"], df["fitness"]))
        kept = selection.elites(population, [by_id[i] for i in ids], ids, n_elite)
        summary.append({
            "generation": generation,
            "best": df["fitness"].max(),
            "mean": df["fitness"].mean(),
            "failed": int((df["status"] != "ok").sum()),
            "seconds": time.perf_counter() - start,
        })
        _print_generation(df, summary)
        elite_ids = {m.chromosome.id for m in kept}
        population = kept + fresh_members(cfg, generation + 1, cfg.evolve.population - n_elite)
    return pd.DataFrame(summary)


def _print_task(generation: int, done: int, total: int, row: dict) -> None:
    if row["status"] == "ok":
        print(f"gen {generation} [{done}/{total}] {row['chromosome_id']} fitness {row['fitness']:.4f} "
              f"d_loss {row['d_loss']:.4f} g_loss {row['g_loss']:.4f} "
              f"params {row['params_g'] + row['params_d']:,} {row['train_seconds']:.1f}s "
              f"{row['images_per_second']:.0f} img/s on {row['device']}", flush=True)
    else:
        print(f"gen {generation} [{done}/{total}] {row['chromosome_id']} {row['status'].upper()}: "
              f"{row['error'][:200]}", flush=True)


def _print_generation(df: pd.DataFrame, summary: list[dict]) -> None:
    table = df.assign(params=df["params_g"] + df["params_d"]).sort_values("fitness", ascending=False)
    cols = ["chromosome_id", "is_elite", "born_generation", "params", "d_loss", "g_loss", "fitness", "status",
            "train_seconds"]
    print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda x: f"{x:.4f}"), flush=True)
