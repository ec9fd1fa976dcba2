"""The loop: train a generation, log it, select the next one, save the state; repeat.

The driver holds the population and the run directory; it never touches a model, nor imports torch. Each
training task (task.py) gets the images by reference (one ray.put per run, or the path of the data cache that
it maps) and a seed derived from (run seed, generation, id). Who is in each generation is population.py's
business; how the tasks are dispatched, dispatch.py's; where the files go, rundir.py's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import ray

from neuroevo.config import RunConfig
from neuroevo.evolve import population
from neuroevo.execution import dispatch, progress
from neuroevo.store import fingerprints, logs, rundir, tracking
from neuroevo.store import state as run_state
from neuroevo.store.state import RunState
from neuroevo.train import data

if TYPE_CHECKING:
    from neuroevo.execution.capacity import Capacity
    from neuroevo.train.quality import Reference


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
    were found damaged, in order (each one's population: state.logged_population). `reference`: the
    real images' statistics for sample quality (quality.reference), needed when quality.evaluate is on. `cap`: the
    cluster's capacity as the start-up read it, for the estimate.
    """
    images_ref = ray.put(images) if isinstance(images, np.ndarray) else images
    reference_ref = ray.put(reference) if reference is not None else None  # once, like the images
    runner = (dispatch.SteadyState if cfg.evolve.mode == "steady_state" else dispatch.Generational)(
        cfg, run_id, run_dir, images_ref, images.shape[0], reference_ref)
    with tracking.open_trackers(cfg, run_id, run_dir, min((*redo, state.completed)) if state else 0) as track:
        if state is None:
            state = RunState(population.initial_population(cfg), completed=0)
            run_state.save(run_dir, state, cfg.seed)
        todo = len(redo) + max(0, cfg.evolve.generations - state.completed)
        if todo:
            first = redo[0] if redo else state.completed
            members = run_state.logged_population(cfg, run_dir, first) if redo else state.population
            progress.before_training(cfg, members, todo, images.shape[0], resumed=first > 0, cap=cap)
        for generation in redo:  # in order: a population drawn again needs the generation before logged whole
            members = run_state.logged_population(cfg, run_dir, generation)
            dispatch.run_generation(cfg, run_id, run_dir, generation, members, images_ref, images.shape[0],
                                    reference_ref)
            state = state.fingerprinted(generation, _fingerprint(run_dir, generation))
            run_state.save(run_dir, state, cfg.seed)
        track.upto(state.completed)  # what the trackers lack of the logged generations, those trained again too
        summary = []
        for generation in range(state.completed, cfg.evolve.generations):
            start = time.perf_counter()
            trained = runner.run_generation(generation, state.population)
            state = state.advance(population.next_population(cfg, generation + 1, [t.evaluated for t in trained]),
                                  _fingerprint(run_dir, generation))
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
