"""What a run prints while it runs.

By default: a tqdm bar per generation on stderr (done/total, failed, pending, ETA; shown only on a terminal),
a line per finished chromosome and a table per generation on stdout. Quiet (`neuroevo run --quiet`, for
batch logs): one line per generation and nothing else.
"""

from __future__ import annotations

import sys
from typing import IO

import pandas as pd
from tqdm import tqdm

from neuroevo import ranking

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


class GenerationBar:
    """Tasks are submitted all at once, so `pending` counts the queued and the running together."""

    def __init__(self, generation: int, total: int, file: IO[str] | None = None):
        self.generation, self.total, self.done, self.failed = generation, total, 0, 0
        self.bar = tqdm(total=total, desc=f"gen {generation}", unit="chromosome", file=file or sys.stderr,
                        leave=False, dynamic_ncols=True, disable=True if _quiet else None)  # None: a TTY only
        self.bar.set_postfix(failed=0, pending=total)

    def task_done(self, row: dict) -> None:
        self.done += 1  # not bar.n: a disabled bar counts nothing
        self.failed += row["status"] != "ok"
        self.bar.set_postfix(failed=self.failed, pending=self.total - self.done, refresh=False)
        self.bar.update(1)
        if not _quiet:
            tqdm.write(task_line(self.generation, self.done, self.total, row), file=sys.stdout)
            sys.stdout.flush()

    def close(self) -> None:
        self.bar.close()


def task_line(generation: int, done: int, total: int, row: dict) -> str:
    head = f"gen {generation} [{done}/{total}] {row['chromosome_id']}"
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
    table = df.iloc[ranking.order(df["fitness"], chromosome_id=df["chromosome_id"])]
    cols = ["chromosome_id", "is_elite", "born_generation", "params", "d_loss", "g_loss", "fitness", "status",
            "train_seconds"]
    print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(pd.DataFrame(summary).to_string(index=False, float_format=lambda x: f"{x:.4f}"), flush=True)
