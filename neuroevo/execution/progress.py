"""What a run prints while it runs.

Before the first task: the run's estimated cost (estimate.py) and, on stderr, a warning where the fitness cannot
rank by size; after generation 0, one where the losses did not count. Then by default: a tqdm bar per generation
on stderr (done/total, failed, pending, ETA; shown only on a terminal), a line per finished chromosome and a table
per generation on stdout. Quiet (`neuroevo run --quiet`, for batch logs): one line per generation and nothing else.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Iterator

import pandas as pd
from tqdm import tqdm

from neuroevo.config import RunConfig
from neuroevo.evolve import fitness, population, ranking
from neuroevo.evolve.population import Member
from neuroevo.execution import estimate
from neuroevo.space import registry

if TYPE_CHECKING:
    from neuroevo.execution.capacity import Capacity

_quiet = False


@contextmanager
def quiet(on: bool) -> Iterator[None]:
    """Quiet printing while the block runs; as it was after (a Python session runs several experiments)."""
    global _quiet
    before, _quiet = _quiet, on
    try:
        yield
    finally:
        _quiet = before


class GenerationBar:
    """Tasks are submitted all at once, so `pending` counts the queued and the running together."""

    def __init__(self, generation: int, total: int, file: IO[str] | None = None, name_loss: bool = False):
        self.generation, self.total, self.done, self.failed = generation, total, 0, 0
        self.name_loss = name_loss  # the run's chromosomes may have different losses
        self.bar = tqdm(total=total, desc=f"gen {generation}", unit="chromosome", file=file or sys.stderr,
                        leave=False, dynamic_ncols=True, disable=True if _quiet else None)  # None: a TTY only
        self.bar.set_postfix(failed=0, pending=total)

    def task_done(self, row: dict) -> None:
        self.done += 1  # not bar.n: a disabled bar counts nothing
        self.failed += row["status"] != "ok"
        self.bar.set_postfix(failed=self.failed, pending=self.total - self.done, refresh=False)
        self.bar.update(1)
        if not _quiet:
            tqdm.write(task_line(self.generation, self.done, self.total, row, self.name_loss), file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        self.bar.close()


def task_line(generation: int, done: int, total: int, row: dict, name_loss: bool = False) -> str:
    """name_loss: say which loss it trained with, where the population mixes losses."""
    head = f"gen {generation} [{done}/{total}] {row['chromosome_id']}" + (f" {row['loss']}" if name_loss else "")
    if row["status"] != "ok":
        return f"{head} {row['status'].upper()}: {row['error'][:200]}"
    return (f"{head} fitness {row['fitness']:.4f} d_loss {row['d_loss']:.4f} g_loss {row['g_loss']:.4f} "
            f"params {row['params_g'] + row['params_d']:,} {row['train_seconds']:.1f}s "
            f"{row['images_per_second']:.0f} img/s on {row['device']}")


def generation_done(rows: list[dict], summary: list[dict]) -> None:
    """rows: the generation's log rows; summary: one dict per generation so far (best, mean, failed, seconds)."""
    if _quiet:
        s = summary[-1]
        print(f"gen {s['generation']}: best {s['best']:.4f} mean {s['mean']:.4f} failed {s['failed']}/{len(rows)} "
              f"{s['seconds']:.1f}s", flush=True)
        return
    df = pd.DataFrame(rows)
    df = df.assign(params=df["params_g"] + df["params_d"])
    table = df.iloc[ranking.order(df["fitness"], chromosome_id=df["chromosome_id"],
                                  rung=ranking.rung_key(df["rung"], df["status"]))]
    cols = ["chromosome_id", "is_elite", "born_generation", "params", "d_loss", "g_loss", "fitness", "status",
            "train_seconds"]
    print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda x: f"{x:.4f}"), flush=True)


def warn(text: str | None) -> None:
    if text:
        print(f"warning: {text}", file=sys.stderr, flush=True)


def before_training(cfg: RunConfig, members: tuple[Member, ...], generations: int, n_images: int,
                    resumed: bool = False, cap: Capacity | None = None) -> None:
    """The estimate of what the `generations` left will cost, read off `members`, the first generation to train,
    on the resources of the cluster Ray has joined (its nodes up now; where the tasks ask for GPUs and none is up
    yet, one node of a GPU type the autoscaler can launch); a warning where fitness.scale saturates the size term
    for a sample of the space. Before any task starts. `cap`: the cluster's capacity, read here when not given."""
    from neuroevo.execution import capacity
    from neuroevo.execution.task import task_resources

    cap = capacity.read() if cap is None else cap
    tasks = [estimate.task(m.chromosome, cfg, n_images, task_resources(cfg, m.chromosome, cap)) for m in members]
    total = dict(cap.total)
    if any(t.gpus for t in tasks) and not cap.gpus and cap.gpu_types:
        total["GPU"] = cap.gpu_types[0].resources["GPU"]
    for line in estimate.lines(estimate.estimate(tasks, total, generations), cfg, n_images, resumed):
        print(line)
    drawn = [*population.space_sample(cfg), *(m.chromosome for m in members)]
    warn(fitness.scale_warning([sum(registry.param_counts(ch)) for ch in drawn], cfg.fitness))
    sys.stdout.flush()


def first_generation(cfg: RunConfig, rows: list[dict]) -> None:
    """After generation 0: a warning where the loss term counted for nothing against the size term."""
    trained = [(r["d_loss"], r["g_loss"], r["loss"], r["params_g"] + r["params_d"]) for r in rows if r["status"] == "ok"]
    warn(fitness.loss_warning(trained, cfg.fitness))
