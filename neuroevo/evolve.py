"""The driver: sample a population, train every member as one Ray task, log, select, repeat.

The driver holds the population and the run directory; it never touches a model. Each training task
gets the images by reference (one ray.put per run, or the path of the data cache that it maps) and a seed
derived from (run seed, generation, id).
Tasks are dispatched longest first (schedule.py); evolve.mode steady_state also keeps workers busy across
the end of a generation (SteadyState).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import ray
import torch

from neuroevo import fitness as fitness_mod
from neuroevo import data, genome, logs, memory, progress, schedule, selection, train
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


def early_members(cfg: RunConfig, generation: int) -> tuple[Member, ...]:
    """The members of `generation` whose genes depend on no fitness: the fresh chromosomes that replace the
    non-elites (evolve.strategy random). steady_state mode trains them before the generation before them is
    finished."""
    return fresh_members(cfg, generation, cfg.evolve.population - elite_count(cfg.evolve))


def initial_state(cfg: RunConfig) -> RunState:
    seeds = tuple(Member(genome.seed(name, cfg.data.image_size, cfg.data.channels, cfg.space.batch_size), 0, 0,
                         operator="seed") for name in cfg.evolve.seed_chromosomes)
    return RunState((seeds + fresh_members(cfg, 0, cfg.evolve.population - len(seeds)),), completed=0)


@ray.remote(num_returns=2)
def train_task(ch: Genome, images: np.ndarray | data.Cache, cfg: TrainConfig, seed: int, flip: bool = False,
               init_weights: bytes | None = None) -> tuple[TaskReport, Artifacts | None]:
    started = datetime.now(timezone.utc)
    # Ray reuses a worker for tasks of any size, and torch keeps the thread count of the first: use this task's
    # CPUs, or a 1-CPU task could train with more threads than it was given, and with other float rounding
    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    gpu_ids = tuple(str(g) for g in ray.get_gpu_ids())
    result, art = train.run(ch, data.attach(images), cfg, seed, train.pick_device(len(gpu_ids)), flip, init_weights)
    node = f"{socket.gethostname()}/{ray.get_runtime_context().get_node_id()[:8]}"
    return TaskReport(result, node, gpu_ids, started, datetime.now(timezone.utc)), art


def task_resources(cfg: RunConfig, ch: Genome | None = None) -> dict[str, float]:
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


def has_room(total: dict[str, float], running: list[dict[str, float]], need: dict[str, float]) -> bool:
    """Whether a task needing `need` fits in the cluster's `total` resources beside the running tasks."""
    return all(sum(r[key] for r in running) + need[key] <= total.get(name, 0.0) + 1e-9
               for name, key in (("CPU", "num_cpus"), ("GPU", "num_gpus")))


def dispatch_order(cfg: RunConfig, population: tuple[Member, ...], n_images: int | None) -> list[Member]:
    costs = [schedule.cost(m.chromosome, cfg.train, n_images) for m in population]
    return schedule.dispatch_order(population, costs, [m.chromosome.id for m in population], cfg.evolve.dispatch)


@dataclass(frozen=True)
class _Task:
    generation: int
    member: Member
    seed: int
    artifacts: ray.ObjectRef
    resources: dict[str, float]


def _submit(cfg: RunConfig, run_dir: Path, generation: int, m: Member, images_ref: ray.ObjectRef | data.Cache,
            resources: dict[str, float]) -> tuple[ray.ObjectRef, _Task]:
    seed = task_seed(cfg.seed, generation, m.chromosome.id)
    init = _start_weights(run_dir, generation, m) if cfg.evolve.keep_weights else None
    # a task whose worker or node dies is rerun elsewhere; one that raises is not (training is deterministic)
    report_ref, art_ref = train_task.options(name=f"train-g{generation}-{m.chromosome.id}", **resources).remote(
        m.chromosome, images_ref, cfg.train, seed, cfg.data.flip, init)
    return report_ref, _Task(generation, m, seed, art_ref, resources)


def _gather(cfg: RunConfig, run_id: str, ref: ray.ObjectRef, task: _Task) -> dict:
    """The log row of a finished task, whether it trained, failed or its worker died."""
    try:
        report, failure = ray.get(ref), ("", "")
    except ray.exceptions.RayError as e:
        report, failure = None, _failure(e)
    return _row(cfg, run_id, task.generation, task.member, task.seed, report, failure)


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
                   images_ref: ray.ObjectRef | data.Cache, n_images: int | None = None) -> pd.DataFrame:
    """Train every member (elites too, from fresh weights unless evolve.keep_weights), write the generation's
    log, save the best (and with keep_weights the elites' weights).

    Every task is submitted at once, in cfg.evolve.dispatch order (n_images: the dataset's size, for the cost
    estimate); Ray starts queued tasks in that order as workers free up. Always logs exactly one row per
    member. On Ctrl-C the running tasks are cancelled and nothing is written.
    """
    pending = dict(_submit(cfg, run_dir, generation, m, images_ref, task_resources(cfg, m.chromosome))
                   for m in dispatch_order(cfg, population, n_images))
    rows, artifacts = [], {}
    bar = progress.GenerationBar(generation, len(population))
    try:
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done)
            row = _gather(cfg, run_id, done, task)
            rows.append(row)
            artifacts[row["chromosome_id"]] = task.artifacts
            bar.task_done(row)
    except KeyboardInterrupt:
        _cancel(pending)
        raise
    finally:
        bar.close()
    return _log_generation(cfg, run_dir, generation, rows, artifacts)


def _cancel(running: dict[ray.ObjectRef, _Task]) -> None:
    for ref in running:
        ray.cancel(ref, force=True)


def _log_generation(cfg: RunConfig, run_dir: Path, generation: int, rows: list[dict],
                    artifacts: dict[str, ray.ObjectRef]) -> pd.DataFrame:
    logs.write_generation(run_dir, generation, rows)
    df = pd.DataFrame(rows)
    best = df.sort_values(["fitness", "chromosome_id"], ascending=[False, True]).iloc[0]
    if best["status"] == "ok":
        _save_best(run_dir, generation, best.to_dict(), ray.get(artifacts[best["chromosome_id"]]))
    if cfg.evolve.keep_weights:
        _save_elite_weights(run_dir, generation + 1, df, artifacts, elite_count(cfg.evolve))
    return df


LOOKAHEAD = 2  # steady_state starts chromosomes at most this many generations past the one it is finishing


@dataclass
class SteadyState:
    """Runs the generations of generational mode, with the same chromosomes, seeds and rows, but lets no
    task slot wait at a generation's end.

    While generation g is unfinished, a slot that frees up starts the next chromosome whose genes are already
    known: one of g's own, else one of early_members(g + 1), then of g + 2 (LOOKAHEAD), which are drawn from the
    run seed alone. Members that depend on g's fitness (the elites carried into g + 1) start as soon as g is
    logged. Earlier generations go first; within one, cfg.evolve.dispatch decides. A generation is logged once
    all its members are in, so logs, state.json and --resume are exactly as in generational mode.
    """

    cfg: RunConfig
    run_id: str
    run_dir: Path
    images_ref: ray.ObjectRef | data.Cache
    n_images: int | None = None
    running: dict[ray.ObjectRef, _Task] = field(default_factory=dict)
    queued: list[tuple[int, int, Member]] = field(default_factory=list)  # (generation, place in dispatch order, member)
    started: dict[int, set[Member]] = field(default_factory=dict)  # queued, running or finished
    finished: dict[int, dict[Member, tuple[dict, ray.ObjectRef]]] = field(default_factory=dict)
    horizon: int = -1  # the last generation whose known members are queued
    bars: dict[int, progress.GenerationBar] = field(default_factory=dict)

    def run_generation(self, generation: int, population: tuple[Member, ...]) -> pd.DataFrame:
        """Generation `generation`, whose population is now known: its log, as run_generation writes it."""
        self._settle(generation, population)
        finished = self.finished.setdefault(generation, {})
        try:
            while len(finished) < len(population):
                self._fill(generation)
                [done], _ = ray.wait(list(self.running), num_returns=1)
                task = self.running.pop(done)
                row = _gather(self.cfg, self.run_id, done, task)
                self.finished.setdefault(task.generation, {})[task.member] = (row, task.artifacts)
                self._bar(task.generation).task_done(row)
        except KeyboardInterrupt:
            _cancel(self.running)
            for bar in self.bars.values():
                bar.close()
            raise
        self._bar(generation).close()
        del self.finished[generation], self.started[generation], self.bars[generation]
        rows = [finished[m][0] for m in population]
        return _log_generation(self.cfg, self.run_dir, generation, rows,
                               {r["chromosome_id"]: a for r, a in finished.values()})

    def _bar(self, generation: int) -> progress.GenerationBar:
        if generation not in self.bars:
            self.bars[generation] = progress.GenerationBar(generation, self.cfg.evolve.population)
        return self.bars[generation]

    def _queue(self, generation: int, members: tuple[Member, ...]) -> None:
        started = self.started.setdefault(generation, set())
        for place, m in enumerate(dispatch_order(self.cfg, members, self.n_images)):
            if m not in started:
                started.add(m)
                self.queued.append((generation, place, m))
        self.horizon = max(self.horizon, generation)

    def _settle(self, generation: int, population: tuple[Member, ...]) -> None:
        """Queue the members not started yet; drop any started early that are not in the population."""
        wrong = self.started.get(generation, set()) - set(population)
        if wrong:
            print(f"steady_state: {len(wrong)} chromosome(s) started early are not in generation {generation}; "
                  "their training is discarded", file=sys.stderr)
            self.queued = [q for q in self.queued if not (q[0] == generation and q[2] in wrong)]
            for ref, task in list(self.running.items()):
                if task.generation == generation and task.member in wrong:
                    del self.running[ref]
                    ray.cancel(ref)  # interrupts the training; the worker lives on
            for m in wrong:
                self.finished.get(generation, {}).pop(m, None)
                self.started[generation].discard(m)
        self._queue(generation, population)

    def _fill(self, generation: int) -> None:
        """Start queued tasks, earliest generation first, while the cluster has room for them; look ahead when
        none is queued. Only what can run now is submitted, so a later elite never queues behind them."""
        total = ray.cluster_resources()
        while True:
            if not self.queued:
                ahead = self.horizon + 1
                if ahead > generation + LOOKAHEAD or ahead >= self.cfg.evolve.generations:
                    return
                self._queue(ahead, early_members(self.cfg, ahead))
                continue
            item = min(self.queued, key=lambda q: q[:2])
            need = task_resources(self.cfg, item[2].chromosome)
            if self.running and not has_room(total, [t.resources for t in self.running.values()], need):
                return
            self.queued.remove(item)
            ref, task = _submit(self.cfg, self.run_dir, item[0], item[2], self.images_ref, need)
            self.running[ref] = task


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
    n_images = images.shape[0]
    if state is None:
        state = initial_state(cfg)
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        save_state(run_dir, state, cfg.seed)
    for generation in redo:
        run_generation(cfg, run_id, run_dir, generation, state.population(generation), images_ref, n_images)
    steady = SteadyState(cfg, run_id, run_dir, images_ref, n_images) if cfg.evolve.mode == "steady_state" else None
    summary = []
    for generation in range(state.completed, cfg.evolve.generations):
        start = time.perf_counter()
        population = state.population(generation)
        df = (steady.run_generation(generation, population) if steady else
              run_generation(cfg, run_id, run_dir, generation, population, images_ref, n_images))
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
