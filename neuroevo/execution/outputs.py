"""What a scored generation leaves in the run directory: its Parquet rows, the best's weights, sample grid and
chromosome, with evolve.inherit (or keep_weights) the weights the next generation starts from, and with train.keep
all every generator. Every file goes through rundir's atomic writes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ray

from neuroevo.config import RunConfig, to_yaml
from neuroevo.evolve import ranking
from neuroevo.evolve.population import weights_kept
from neuroevo.execution.capacity import Capacity
from neuroevo.execution.dispatch import Trained
from neuroevo.execution.task import samples_task, task_resources
from neuroevo.store import logs, rundir


def write_generation(cfg: RunConfig, run_dir: Path, generation: int, trained: list[Trained],
                     cap: Capacity) -> list[Trained]:
    """Write a trained generation's rows, the best's weights, samples and chromosome, with evolve.inherit the
    weights the next generation will start from (its parents': population.weights_kept), and with train.keep all
    every generator. The best's sample grid is drawn by a task (samples_task) meanwhile. Returns the
    members without their weights, which the driver no longer holds."""
    best = trained[ranking.order([t.evaluation.fitness for t in trained],
                                 chromosome_id=[t.member.chromosome.id for t in trained],
                                 rung=[t.ranked_rung for t in trained])[0]]
    ok = best.evaluation.status == "ok"
    grid = samples_task.options(name=f"samples-g{generation}-{best.member.chromosome.id}",
                                **task_resources(cfg, best.member.chromosome, cap)).remote(
        best.weights, cfg.train.sample_grid, best.seed) if ok else None
    logs.write_generation(run_dir, generation, [t.row for t in trained], to_yaml(cfg))
    by_member = {t.member: t for t in trained}
    if ok:
        rundir.write(rundir.best_weights(run_dir, generation), ray.get(best.weights))
        rundir.write(rundir.best_samples(run_dir, generation), ray.get(grid))
        rundir.write(rundir.best_chromosome(run_dir, generation), best.member.chromosome.to_json() + "\n")
    for m in weights_kept(cfg, generation, [t.evaluated for t in trained]):
        if by_member[m].evaluation.status == "ok":
            rundir.write(rundir.weights_file(run_dir, generation + 1, m.chromosome.id), ray.get(by_member[m].weights))
    if cfg.train.keep == "all":
        for t in trained:
            if t.evaluation.status == "ok":
                rundir.write(rundir.generator_file(run_dir, generation, t.member.chromosome.id),
                             ray.get(t.weights))
    return [dataclasses.replace(t, weights=None) for t in trained]
