"""The loop: train a generation, score it, log it, select the next one, save the state; repeat.

The driver holds the population and the run directory; it never touches a model, nor imports torch. Each
training task (task.py) gets the images by reference (one ray.put per run, or the path of the data cache that
it maps) and a seed derived from (run seed, generation, id). How the tasks are dispatched is dispatch.py's
business; how a generation is scored, scoring.py's; what it leaves on disk, outputs.py's; who is in the next
generation, evolve/population.py's. With evolve.rungs, a generation trains in rungs of successive halving
(rungs.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import ray

from neuroevo.config import RunConfig
from neuroevo.evolve import population
from neuroevo.evolve.population import Member
from neuroevo.execution import capacity, dispatch, outputs, progress, rungs, scoring
from neuroevo.execution.dispatch import Trained
from neuroevo.store import fingerprints, logs, resume, rundir, tracking
from neuroevo.store import state as run_state
from neuroevo.store.state import RunState
from neuroevo.train import data

if TYPE_CHECKING:
    from neuroevo.execution.capacity import Capacity
    from neuroevo.train.quality import Reference


def run_generation(cfg: RunConfig, run_id: str, run_dir: Path, generation: int, members: tuple[Member, ...],
                   images_ref: ray.ObjectRef | data.Cache, n_images: int | None = None,
                   reference: ray.ObjectRef | None = None, runner: dispatch.Generational | None = None) -> list[Trained]:
    """One generation: every member trained (a Ray task each), scored and logged; the members in population order,
    with their final evaluation and log row. `runner` dispatches the tasks (default: all at once)."""
    runner = runner or dispatch.Generational(cfg, run_id, run_dir, images_ref, n_images, reference)
    cap = capacity.read()
    trained = runner.train(generation, members, cap)
    scored = scoring.score(cfg, trained, reference, cap)
    return outputs.write_generation(cfg, run_dir, generation, scored, cap)


def evolve(cfg: RunConfig, run_id: str, run_dir: Path, images: np.ndarray | data.Cache,
           state: RunState | None = None, redo: tuple[int, ...] = (), reference: Reference | None = None,
           cap: Capacity | None = None) -> RunState:
    """Train all, keep the elite fraction unchanged, fill the rest by evolve.strategy (the reference: at random).

    images: an array, put in the object store once per run and mapped zero-copy by every task, or a data
    cache that every task maps from its node's disk (data.for_tasks decides which).
    On Ctrl-C or SIGTERM nothing more is written; the running tasks are left to Ray's shutdown, which stops a local
    cluster's workers with the driver (on a remote cluster they finish, unread): cancelling them races with tasks
    finishing in between, and a reply for a task Ray has already failed makes its core worker abort the driver
    (`Check failed: ... Tried to complete task that was not pending`).
    `state` continues a run from its last logged generation; `redo` re-trains logged generations whose files
    were found damaged, in order (each one's population: resume.logged_population). `reference`: the
    real images' statistics for sample quality (quality.reference), needed when quality.evaluate is on. `cap`: the
    cluster's capacity as the start-up read it, for the estimate.
    """
    images_ref = ray.put(images) if isinstance(images, np.ndarray) else images
    reference_ref = ray.put(reference) if reference is not None else None  # once, like the images
    n_images = images.shape[0]
    runner = (dispatch.SteadyState if cfg.evolve.mode == "steady_state" else
              rungs.Rungs if cfg.evolve.rungs > 1 or cfg.evolve.budget is not None else dispatch.Generational)(
        cfg, run_id, run_dir, images_ref, n_images, reference_ref)
    with tracking.open_trackers(cfg, run_id, run_dir, min((*redo, state.completed)) if state else 0) as track:
        if state is None:
            state = RunState(population.initial_population(cfg), completed=0)
            run_state.save(run_dir, state, cfg.seed)
        todo = len(redo) + max(0, cfg.evolve.generations - state.completed)
        if todo:
            first = redo[0] if redo else state.completed
            members = resume.logged_population(cfg, run_dir, first) if redo else state.population
            progress.before_training(cfg, members, todo, n_images, resumed=first > 0, cap=cap)
        for generation in redo:  # in order: a population drawn again needs the generation before logged whole
            members = resume.logged_population(cfg, run_dir, generation)
            run_generation(cfg, run_id, run_dir, generation, members, images_ref, n_images, reference_ref,
                           runner if isinstance(runner, rungs.Rungs) else None)
            state = state.fingerprinted(generation, _fingerprint(run_dir, generation))
            run_state.save(run_dir, state, cfg.seed)
        track.upto(state.completed)  # what the trackers lack of the logged generations, those trained again too
        summary = []
        for generation in range(state.completed, cfg.evolve.generations):
            start = time.perf_counter()
            trained = run_generation(cfg, run_id, run_dir, generation, state.population, images_ref, n_images,
                                     reference_ref, runner)
            selected = population.next_population(cfg, generation + 1, [t.evaluated for t in trained])
            state = state.advance(selected, _fingerprint(run_dir, generation))
            run_state.save(run_dir, state, cfg.seed)
            rows = [t.row for t in trained]
            summary.append(_summary(generation, rows, time.perf_counter() - start))
            track.upto(state.completed, {generation: summary[-1]["seconds"]})
            progress.generation_done(rows, summary)
            if generation == 0:
                progress.first_generation(cfg, rows)
    return state


def _fingerprint(run_dir: Path, generation: int) -> str:
    """The sha256 of the generation's file, hashed as soon as it is logged (read back from the page cache: one
    read a generation, and the dispatchers need not hand the hash up), before anything else can touch it."""
    return fingerprints.of(rundir.generation_file(run_dir, generation))


def _summary(generation: int, rows: list[dict], seconds: float) -> dict:
    s = logs.generation_summary(rows)
    return {"generation": generation, "best": s["best_fitness"], "mean": s["mean_fitness"], "failed": s["failed"],
            "seconds": seconds}
