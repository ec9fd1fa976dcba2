"""Scoring a generation once all its tasks are in: with quality.evaluate top_k, the sample quality of the k fittest
by the reference formula, measured by quality tasks on their saved generators, and those members evaluated again;
with fitness.kind pareto, the generation's fronts and crowding (fitness.rank_generation)."""

from __future__ import annotations

import dataclasses

import ray

from neuroevo.config import RunConfig
from neuroevo.evolve import fitness, ranking
from neuroevo.execution.capacity import Capacity
from neuroevo.execution.dispatch import Trained
from neuroevo.execution.task import quality_task, task_resources


def score(cfg: RunConfig, trained: list[Trained], reference: ray.ObjectRef | None, cap: Capacity) -> list[Trained]:
    """The generation's members with their final evaluation: measured (top_k) and ranked (pareto)."""
    if cfg.quality.evaluate == "top_k":
        trained = measure_top_k(cfg, trained, reference, cap)
    ranked = fitness.rank_generation([t.evaluation for t in trained], [t.quality for t in trained],
                                     [t.params for t in trained], cfg.fitness)
    return [dataclasses.replace(t, evaluation=e) for t, e in zip(trained, ranked)]


def measure_top_k(cfg: RunConfig, trained: list[Trained], reference: ray.ObjectRef,
                  cap: Capacity) -> list[Trained]:
    """quality.evaluate top_k: the sample quality of the quality.top_k members fittest by the reference formula
    (ties by id), each measured by a quality task on the saved generator; those members evaluated again."""
    by_reference = dataclasses.replace(cfg.fitness, kind="reference")
    screen = [fitness.evaluate(t.report.result if t.report else None, by_reference, t.member.chromosome.loss, t.failure, None)
              for t in trained]
    ok = [i for i in ranking.order([e.fitness for e in screen], chromosome_id=[t.member.chromosome.id for t in trained])
          if screen[i].status == "ok"][:cfg.quality.top_k]
    refs = {i: quality_task.options(name=f"quality-g{trained[i].generation}-{trained[i].member.chromosome.id}",
                                    **task_resources(cfg, trained[i].member.chromosome, cap)).remote(
        trained[i].weights, cfg.quality, reference, trained[i].seed) for i in ok}
    measured = dict(zip(refs, ray.get(list(refs.values()))))
    return [t.evaluate(cfg, measured[i]) if i in measured else t for i, t in enumerate(trained)]
