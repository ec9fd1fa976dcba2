"""Successive halving within a generation (evolve.rungs, evolve.eta), and the training budget (evolve.budget).

With K rungs and reduction factor eta, every member trains in rung 0; the fittest ceil(n / eta) of the n that
trained in rung k go on to rung k + 1, continuing exactly where they paused (trainer.train_leg) from the
continuation their task left in the object store. Rung k trains a chromosome up to rung_steps(T, K, eta)[k] steps
of its whole training of T steps, so the last rung's survivors train exactly as without rungs.

Each rung is one wave of Ray tasks (rung_task), submitted at once and collected as they finish (dispatch.finished).
The driver never opens a continuation: it holds the task's third object ref and hands it to the next rung's task.

Across rungs the ranking is ASHA's (ranking.order's `rung`): a member that reached a higher rung ranks above one
stopped earlier, whatever their fitness. Each member's Trained, and so its log row, is that of the last rung it
trained in.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import ray

from neuroevo.config import RunConfig
from neuroevo.evolve import ranking
from neuroevo.evolve.population import Member, task_seed
from neuroevo.execution.capacity import Capacity
from neuroevo.execution.dispatch import (
    Finished,
    Generational,
    Trained,
    _collect,
    _Task,
    dispatch_order,
    finished,
    generation_bar,
    kept_places,
    starts,
)
from neuroevo.execution.task import rung_task, task_resources
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.genes import Recipe
from neuroevo.store import logs
from neuroevo.train import flops


def rung_steps(total: int, rungs: int, eta: int) -> tuple[int, ...]:
    """The steps a training has taken by the end of each rung: total / eta^(rungs-1-k) for rung k, rounded up and
    at least 1, so that the last rung trains to the end."""
    return tuple(max(1, math.ceil(total / eta ** (rungs - 1 - k))) for k in range(rungs))


def promoted(n: int, eta: int) -> int:
    """How many of a rung's n trained members go on to the next rung."""
    return math.ceil(n / eta)


def total_steps(ch: Chromosome, cfg: RunConfig, n_images: int | None) -> int:
    """The steps of a chromosome's whole training: train.epochs x its steps per epoch."""
    return flops.images_per_epoch(ch, cfg.train, n_images) // ch.batch_size * cfg.train.epochs


def steps_flops(ch: Chromosome, steps: int, seeds: int = 1) -> float:
    """Training FLOPs of `steps` D steps of each of `seeds` trainings, with a G step after every n_critic of them
    (flops.train_flops)."""
    return flops.train_flops(ch, steps, steps // (ch.recipe or Recipe()).n_critic) * seeds


def logged_flops(run_dir: Path, before: int) -> float:
    """Training FLOPs the logged generations before `before` spent, from their rows' steps."""
    if before <= 0:
        return 0.0
    df = logs.read_generations(run_dir, columns=["generation", "chromosome", "steps", "seeds"])
    df = df[(df["generation"] < before) & df["steps"].notna()]
    return sum(steps_flops(registry.from_json(c), int(s), int(n))
               for c, s, n in zip(df["chromosome"], df["steps"], df["seeds"].fillna(1)))


@dataclass
class Rungs(Generational):
    """Generational training in rungs of successive halving: K waves of tasks per generation, each of the fittest
    1/eta of the one before."""

    tasks: list[int] = field(default_factory=list)  # the tasks each rung of the last generation submitted

    def train(self, generation: int, population: tuple[Member, ...], cap: Capacity) -> list[Trained]:
        cfg, e = self.cfg, self.cfg.evolve
        spent = logged_flops(self.run_dir, generation) if e.budget is not None else 0.0  # resumed runs too
        share = (e.budget - spent) / (e.generations - generation) if e.budget is not None else math.inf
        begin = starts(cfg, self.run_dir, generation, population)
        until = {m: rung_steps(total_steps(m.chromosome, cfg, self.n_images), e.rungs, e.eta) for m in population}
        latest: dict[Member, Trained] = {}
        paused: dict[Member, ray.ObjectRef] = {}  # each member's continuation, while it may go on
        wave, spent_here, self.tasks = list(population), 0.0, []
        for k in range(e.rungs):
            if k:
                ok = [m for m in wave if latest[m].evaluation.status == "ok"]
                keys = [latest[m] for m in ok]
                order = ranking.order([t.evaluation.fitness for t in keys],
                                      chromosome_id=[m.chromosome.id for m in ok])
                wave = [ok[i] for i in order[:promoted(len(wave), e.eta)]]
                paused = {m: paused[m] for m in wave if m in paused}  # the others' continuations are freed
            cost = sum(steps_flops(m.chromosome, until[m][k] - (until[m][k - 1] if k else 0), e.seeds_per_chromosome)
                       for m in wave)
            if k and spent_here + cost > share:
                break  # the budget: the rest end at the rung before
            spent_here += cost
            self._rung(generation, k, wave, until, begin, paused, latest, cap)
        if e.budget is not None:
            print(f"budget: generation {generation} spent {spent_here:.3g} training FLOPs in {len(self.tasks)} "
                  f"rung(s) (its share {share:.3g}); the run {spent + spent_here:.3g} of {e.budget:.3g}", flush=True)
        done = Finished(kept_places(cfg))  # holds the weights of those that may be written, as train_generation
        for m in population:
            done.add(latest[m])
        return [done.trained[m] for m in population]

    def _rung(self, generation: int, k: int, wave: list[Member], until: dict[Member, tuple[int, ...]],
              begin: dict, paused: dict[Member, ray.ObjectRef], latest: dict[Member, Trained], cap: Capacity) -> None:
        """Rung k: each member of the wave trained on to until[m][k] steps, from its continuation (or, in rung 0,
        from fresh or inherited weights); `latest` and `paused` updated as the tasks finish."""
        cfg = self.cfg
        pending = {}
        for m in dispatch_order(cfg, tuple(wave), self.n_images):
            if k and until[m][k] == until[m][k - 1]:  # a training too short to split: it is already this far
                latest[m] = dataclasses.replace(latest[m], rung=k)
                continue
            seed = task_seed(cfg.seed, generation, m.chromosome.id)
            resources = task_resources(cfg, m.chromosome, cap)
            in_task = self.reference if cfg.quality.evaluate == "all" else None
            report_ref, weights_ref, pause_ref = rung_task.options(
                name=f"train-g{generation}-r{k}-{m.chromosome.id}", **resources).remote(
                m.chromosome, self.images_ref, cfg.train, seed, cfg.data.flip, begin.get(m) if k == 0 else None,
                cfg.evolve.seeds_per_chromosome, cfg.quality, in_task, until[m][k], paused.pop(m, None))
            pending[report_ref] = (_Task(generation, m, seed, weights_ref, resources), pause_ref)
        self.tasks.append(len(pending))
        bar = generation_bar(cfg, generation, len(pending))
        try:
            for ref in finished(pending):
                task, pause_ref = pending.pop(ref)
                t = dataclasses.replace(_collect(cfg, self.run_id, ref, task), rung=k)
                if k and t.report and latest[task.member].report:  # the row tells the whole generation's training
                    first = latest[task.member].report
                    t = dataclasses.replace(t, report=dataclasses.replace(
                        t.report, started_at=first.started_at, inherited=first.inherited))
                latest[task.member] = t
                if t.evaluation.status == "ok":
                    paused[task.member] = pause_ref
                bar.task_done(t.row)
        finally:
            bar.close()
