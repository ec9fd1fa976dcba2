"""Dispatching a generation's training tasks, two ways, and what is kept of each finished task.

- Generational (train_generation): every member is submitted at once, longest first (evolve.dispatch), and the
  generation ends when its last task does.
- SteadyState (evolve.mode steady_state): the same chromosomes, seeds and rows, but a task slot that frees up at
  a generation's end starts the next generation's chromosomes whose genes are already known.

Both evaluate each finished task as it comes in (fitness.evaluate), for the line the progress display prints. What
follows once all of a generation's members are in (scoring.py, outputs.py) is the loop's (loop.py).

Each task returns its weights file as an object of its own, which the driver holds only while it may still be
written (Finished): the object store holds the weights of a generation's few contenders, not of all its members.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, TypeVar

import ray

from neuroevo.config import RunConfig, elite_count, inheritance
from neuroevo.evolve import fitness, ranking
from neuroevo.evolve.fitness import Evaluation
from neuroevo.evolve.population import (
    Evaluated,
    Member,
    early_members,
    inherits,
    run_losses,
    task_seed,
)
from neuroevo.execution import progress
from neuroevo.execution.capacity import Capacity
from neuroevo.execution.task import (
    has_room,
    outcome,
    task_resources,
    train_task,
)
from neuroevo.space import registry
from neuroevo.store import logs, rundir
from neuroevo.train import data, flops
from neuroevo.train.results import Quality, Start, TaskReport

T = TypeVar("T")


@dataclass(frozen=True)
class Trained:
    """A member's finished task as the driver keeps it."""
    run_id: str
    generation: int
    member: Member
    seed: int
    report: TaskReport | None  # None: the task returned none (failure says why)
    failure: tuple[str, str]
    weights: ray.ObjectRef | None  # its weights file (train.weights); None when it failed or none can be written
    evaluation: Evaluation
    quality: Quality | None = None
    rung: int = 0  # evolve.rungs: the last rung it trained in

    @property
    def row(self) -> dict[str, Any]:
        """Its log row."""
        return logs.row(self.run_id, self.generation, self.member, self.seed, self.report, self.evaluation,
                        self.quality, self.rung)

    @property
    def params(self) -> int:
        """G's and D's parameters together: as trained, or (no report) as planned."""
        r = self.report.result if self.report else None
        return r.params_g + r.params_d if r else sum(registry.param_counts(self.member.chromosome))

    @property
    def evaluated(self) -> Evaluated:
        return Evaluated(self.member, self.evaluation.fitness, self.evaluation.front or 0, self.evaluation.crowding,
                         self.ranked_rung)

    @property
    def ranked_rung(self) -> int:
        """The rung it ranks by (ranking.rung_key): the one it reached, 0 if its training failed."""
        return self.rung if self.evaluation.status == "ok" else 0

    def evaluate(self, cfg: RunConfig, quality: Quality | None) -> Trained:
        """This member evaluated with its generator's `quality`."""
        return dataclasses.replace(self, evaluation=_evaluation(cfg, self.report, self.failure, self.member, quality),
                                   quality=quality)


def _evaluation(cfg: RunConfig, report: TaskReport | None, failure: tuple[str, str], m: Member,
                quality: Quality | None) -> Evaluation:
    return fitness.evaluate(report.result if report else None, cfg.fitness, m.chromosome.loss, failure, quality)


@dataclass(frozen=True)
class _Task:
    generation: int
    member: Member
    seed: int
    weights: ray.ObjectRef
    resources: dict[str, float]


WAIT_SECONDS = 0.2  # generational: how long a round waits for more tasks once one is in (the progress lines' lag)


def finished(pending: Mapping[ray.ObjectRef, Any], linger: float = WAIT_SECONDS) -> Iterator[ray.ObjectRef]:
    """The refs of `pending` as their tasks finish, until `pending` is empty; those of one round in the order of
    `pending`. The caller removes each ref it is given, and may add new ones meanwhile.

    A round waits for one task to finish, then up to `linger` seconds for the rest, and hands out every one
    finished by then: two ray.waits, each one pass over `pending`, however many tasks the round hands out."""
    while pending:
        refs = list(pending)
        ray.wait(refs, num_returns=1, fetch_local=False)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=linger, fetch_local=False)
        done = set(ready)
        for ref in refs:
            if ref in done and ref in pending:
                yield ref


def generation_bar(cfg: RunConfig, generation: int, total: int) -> progress.GenerationBar:
    """A generation's progress bar; its lines name each chromosome's loss where the run can draw several."""
    return progress.GenerationBar(generation, total, name_loss=len(run_losses(cfg)) > 1)


def order_tasks(items: Sequence[T], costs: Sequence[float], ids: Sequence[str], how: str) -> list[T]:
    """longest_first: highest cost first, ties by id; fifo: as given."""
    if how == "fifo":
        return list(items)
    if how != "longest_first":
        raise ValueError(f"dispatch must be one of ('longest_first', 'fifo'), got {how!r}")
    order = sorted(range(len(items)), key=lambda i: (-costs[i], ids[i]))
    return [items[i] for i in order]


def dispatch_order(cfg: RunConfig, population: tuple[Member, ...], n_images: int | None) -> list[Member]:
    costs = [flops.cost(m.chromosome, cfg.train, n_images) for m in population]
    return order_tasks(population, costs, [m.chromosome.id for m in population], cfg.evolve.dispatch)


def starts(cfg: RunConfig, run_dir: Path, generation: int, members: Sequence[Member]) -> dict[Member, Start]:
    """evolve.inherit: the trained weights each member that inherits starts from, its parents' as the generation
    before kept them (an elite's parent is itself), with the training steps behind each. Each file goes into the
    object store once, however many children share it. A member none of whose parents' weights were kept is not in
    the dict: it starts fresh."""
    heirs = [m for m in members if inherits(cfg, generation, m)]
    if not heirs:
        return {}
    files = {p: rundir.weights_file(run_dir, generation, p) for m in heirs for p in m.parents}
    refs = {p: ray.put(path.read_bytes()) for p, path in files.items() if path.is_file()}
    steps = logs.lineage_steps(run_dir, generation - 1)
    kept = {m: [p for p in m.parents if p in refs] for m in heirs}
    return {m: Start({p: refs[p] for p in ps}, {p: steps.get(p, 0) for p in ps}) for m, ps in kept.items() if ps}


def _submit(cfg: RunConfig, generation: int, m: Member, images_ref: ray.ObjectRef | data.Cache,
            resources: dict[str, float], reference: ray.ObjectRef | None = None,
            start: Start | None = None) -> tuple[ray.ObjectRef, _Task]:
    seed = task_seed(cfg.seed, generation, m.chromosome.id)
    in_task = reference if cfg.quality.evaluate == "all" else None  # top_k measures after the generation
    # a task whose worker or node dies is rerun elsewhere; one that raises is not (training is deterministic)
    report_ref, weights_ref = train_task.options(name=f"train-g{generation}-{m.chromosome.id}", **resources).remote(
        m.chromosome, images_ref, cfg.train, seed, cfg.data.flip, start, cfg.evolve.seeds_per_chromosome,
        cfg.quality, in_task)
    return report_ref, _Task(generation, m, seed, weights_ref, resources)


def _collect(cfg: RunConfig, run_id: str, ref: ray.ObjectRef, task: _Task) -> Trained:
    """A finished task, whether it trained, failed or its worker died, evaluated with what it measured."""
    report, failure = outcome(ref)
    quality = report.quality if report else None
    evaluation = _evaluation(cfg, report, failure, task.member, quality)
    return Trained(run_id, task.generation, task.member, task.seed, report, failure,
                   task.weights if evaluation.status == "ok" else None, evaluation, quality)


def kept_places(cfg: RunConfig) -> int | None:
    """How many of a generation's fittest may have their weights written: the best, or with evolve.inherit (or
    keep_weights) the elites, the parents of the next generation. None: any member may, or which ones is known only
    once all are in (train.keep all, fitness.kind pareto, quality.evaluate top_k, inherit all with tournaments,
    which any member may win)."""
    if cfg.train.keep == "all" or cfg.fitness.kind == "pareto" or cfg.quality.evaluate == "top_k":
        return None
    how = inheritance(cfg.evolve)
    if how == "all" and cfg.evolve.strategy == "tournament":
        return None
    return max(1, elite_count(cfg.evolve)) if how != "none" else 1


@dataclass
class Finished:
    """A generation's members as their tasks finish, holding a member's weights only while it may be written.

    With `places` (kept_places) set, a member with `places` members ranked above it by ranking.order (fitness,
    ties by chromosome id) among those in can never be the best nor an elite: its weights ref is dropped, which
    frees the object. None keeps every one (also while the generation's population is not known yet:
    steady_state's early members)."""
    places: int | None
    trained: dict[Member, Trained] = field(default_factory=dict)
    contenders: list[Member] = field(default_factory=list)  # those in whose weights are still held

    def add(self, t: Trained) -> Trained:
        """A finished member, as held: without its weights if it cannot be written."""
        self.trained[t.member] = t
        if t.weights is not None:
            self.contenders.append(t.member)
        self._prune()
        return self.trained[t.member]

    def settle(self, places: int | None, wrong: set[Member]) -> None:
        """The population is known: forget the members not in it, and hold only `places` from now on."""
        for m in wrong:
            self.trained.pop(m, None)
        self.contenders = [m for m in self.contenders if m not in wrong]
        self.places = places
        self._prune()

    def _prune(self) -> None:
        if self.places is None or len(self.contenders) <= self.places:
            return
        held = [self.trained[m] for m in self.contenders]
        keys = [(t.evaluation.fitness, t.member.chromosome.id, t.ranked_rung) for t in held]
        rank = ranking.order([k[0] for k in keys], chromosome_id=[k[1] for k in keys], rung=[k[2] for k in keys])
        last = keys[rank[self.places - 1]]
        out = {int(i) for i in rank[self.places:] if keys[i] != last}  # a member tied with the last place stays
        for i in out:
            self.trained[held[i].member] = dataclasses.replace(held[i], weights=None)
        self.contenders = [m for i, m in enumerate(self.contenders) if i not in out]


def train_generation(cfg: RunConfig, run_id: str, run_dir: Path, generation: int, population: tuple[Member, ...],
                     images_ref: ray.ObjectRef | data.Cache, cap: Capacity, n_images: int | None = None,
                     reference: ray.ObjectRef | None = None) -> list[Trained]:
    """Train every member (from fresh weights, or what it inherits: evolve.inherit); returns the trained members
    in population order, each evaluated as its task came in.

    Every task is submitted at once, in cfg.evolve.dispatch order (n_images: the dataset's size, for the cost
    estimate); Ray starts queued tasks in that order as workers free up. On Ctrl-C the running tasks are left to
    Ray's shutdown (see loop.py).
    """
    begin = starts(cfg, run_dir, generation, population)
    pending = dict(_submit(cfg, generation, m, images_ref, task_resources(cfg, m.chromosome, cap), reference,
                           begin.get(m)) for m in dispatch_order(cfg, population, n_images))
    done_here = Finished(kept_places(cfg))
    bar = generation_bar(cfg, generation, len(population))
    try:
        for done in finished(pending):
            # no name bound to the task or its Trained: the weights ref must go when Finished drops it
            bar.task_done(done_here.add(_collect(cfg, run_id, done, pending.pop(done))).row)
    finally:
        bar.close()
    return [done_here.trained[m] for m in population]


@dataclass
class Generational:
    """train_generation for one run: every member of a generation submitted at once."""
    cfg: RunConfig
    run_id: str
    run_dir: Path
    images_ref: ray.ObjectRef | data.Cache
    n_images: int | None = None
    reference: ray.ObjectRef | None = None  # the real images' quality.Reference, with quality.evaluate on

    def train(self, generation: int, population: tuple[Member, ...], cap: Capacity) -> list[Trained]:
        return train_generation(self.cfg, self.run_id, self.run_dir, generation, population, self.images_ref, cap,
                                self.n_images, self.reference)


LOOKAHEAD = 2  # steady_state starts chromosomes at most this many generations past the one it is finishing


@dataclass
class SteadyState(Generational):
    """Runs the generations of generational mode, with the same chromosomes, seeds and rows, but lets no
    task slot wait at a generation's end.

    While generation g is unfinished, a slot that frees up starts the next chromosome whose genes are already
    known: one of g's own, else one of early_members(g + 1), then of g + 2 (LOOKAHEAD), which are drawn from the
    run seed alone. Members that depend on g's fitness (the elites carried into g + 1) start as soon as g is
    logged. Earlier generations go first; within one, cfg.evolve.dispatch decides. A generation is logged once
    all its members are in, so logs, state.json and --resume are exactly as in generational mode.
    """

    running: dict[ray.ObjectRef, _Task] = field(default_factory=dict)
    # a heap of (generation, place in dispatch order, when queued, member): earliest generation first, then
    # cfg.evolve.dispatch, then queue order
    queued: list[tuple[int, int, int, Member]] = field(default_factory=list)
    serial: Iterator[int] = field(default_factory=itertools.count)  # "when queued"
    started: dict[int, set[Member]] = field(default_factory=dict)  # queued, running or finished
    finished: dict[int, Finished] = field(default_factory=dict)
    horizon: int = -1  # the last generation whose known members are queued
    bars: dict[int, progress.GenerationBar] = field(default_factory=dict)

    def train(self, generation: int, population: tuple[Member, ...], cap: Capacity) -> list[Trained]:
        """Generation `generation`, whose population is now known: trained as train_generation trains it."""
        self._settle(generation, population)
        done_here = self._finished(generation)
        try:
            if len(done_here.trained) < len(population):
                self._fill(generation, cap)
                # no lingering: a freed slot is filled at once, and `running` holds what the cluster runs at once
                for ref in finished(self.running, linger=0):
                    of = self.running[ref].generation
                    self._bar(of).task_done(self._finished(of).add(_collect(self.cfg, self.run_id, ref,
                                                                            self.running.pop(ref))).row)
                    if len(done_here.trained) == len(population):
                        break
                    self._fill(generation, cap)
        except KeyboardInterrupt:
            for bar in self.bars.values():
                bar.close()
            raise
        self._bar(generation).close()
        del self.finished[generation], self.started[generation], self.bars[generation]
        return [done_here.trained[m] for m in population]

    def _finished(self, generation: int) -> Finished:
        """Its finished members; every weights ref held until the generation is settled (_settle)."""
        return self.finished.setdefault(generation, Finished(None))

    def _bar(self, generation: int) -> progress.GenerationBar:
        if generation not in self.bars:
            self.bars[generation] = generation_bar(self.cfg, generation, self.cfg.evolve.population)
        return self.bars[generation]

    def _queue(self, generation: int, members: tuple[Member, ...]) -> None:
        started = self.started.setdefault(generation, set())
        for place, m in enumerate(dispatch_order(self.cfg, members, self.n_images)):
            if m not in started:
                started.add(m)
                heapq.heappush(self.queued, (generation, place, next(self.serial), m))
        self.horizon = max(self.horizon, generation)

    def _settle(self, generation: int, population: tuple[Member, ...]) -> None:
        """Queue the members not started yet; drop any started early that are not in the population."""
        wrong = self.started.get(generation, set()) - set(population)
        if wrong:
            print(f"steady_state: {len(wrong)} chromosome(s) started early are not in generation {generation}; "
                  "their training is discarded", file=sys.stderr)
            self.queued = [q for q in self.queued if not (q[0] == generation and q[3] in wrong)]
            heapq.heapify(self.queued)
            for ref, task in list(self.running.items()):
                if task.generation == generation and task.member in wrong:
                    del self.running[ref]
                    ray.cancel(ref)  # interrupts the training; the worker lives on
            for m in wrong:
                self.started[generation].discard(m)
        self._finished(generation).settle(kept_places(self.cfg), wrong)
        self._queue(generation, population)

    def _fill(self, generation: int, cap: Capacity) -> None:
        """Start queued tasks, earliest generation first, while the cluster has room for them (with the nodes
        its autoscaler can still launch); look ahead when none is queued. Only what can run now (or once those
        nodes are up) is submitted, so a later elite never queues behind them."""
        while True:
            if not self.queued:
                ahead = self.horizon + 1
                if ahead > generation + LOOKAHEAD or ahead >= self.cfg.evolve.generations:
                    return
                self._queue(ahead, early_members(self.cfg, ahead))
                continue
            generation_of, _, _, m = self.queued[0]
            need = task_resources(self.cfg, m.chromosome, cap)
            if self.running and not has_room(cap.most, [t.resources for t in self.running.values()], need):
                return
            heapq.heappop(self.queued)
            start = starts(self.cfg, self.run_dir, generation_of, (m,)).get(m)
            ref, task = _submit(self.cfg, generation_of, m, self.images_ref, need, self.reference, start)
            self.running[ref] = task
