"""The runs of an out_dir at a glance (`neuroevo ls`): each one's status, generations done of its total, best fitness
and FID, start, search space, and the compute it has spent (training and quality measurement, in FLOPs and seconds).

Reads only what a run writes, and of it only what it needs: state.json's count (state.completed), config.yaml (else
the copy in its logs), eight columns of the logs, and whether a driver holds the run (rundir.claimed, which writes
nothing). No Ray, no torch.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from neuroevo import config, errors
from neuroevo.store import logs, rundir, state

RUNNING, FINISHED, INTERRUPTED, EMPTY = "running", "finished", "interrupted", "empty"
_COLUMNS = ["status", "fitness", "fid", "started_at", "train_flops", "quality_flops", "train_seconds", "quality_seconds"]


class RunsError(ValueError):
    """An OUT_DIR that is no folder; one line."""


@dataclass(frozen=True)
class Run:
    run_id: str
    status: str  # running: a driver holds it; finished: all generations logged; interrupted: fewer; empty: no run
    done: int | None  # generations logged (None: state.json unreadable)
    total: int | None  # evolve.generations (None: no readable config)
    best_fitness: float | None  # of the rows that trained
    best_fid: float | None  # the lowest measured
    started: datetime | None  # the first training's start, else config.yaml's time
    space: str | None
    flops: float | None = None  # every training's and quality measurement's (None: trainings logged without them)
    seconds: float | None = None  # every training's and quality measurement's, summed


def find(out_dir: str | Path) -> list[Run]:
    """Every run directory in out_dir (each sub-folder not hidden), by name; out_dir alone if it is a run itself."""
    out = Path(out_dir)
    if not out.is_dir():
        raise RunsError(f"{out}: {'not a directory' if out.exists() else 'no such directory'} (expected a folder of "
                        f"run directories, e.g. {config.RunConfig.out_dir})")
    dirs = [out] if _is_run(out) else [d for d in sorted(out.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    best = _best(dirs)
    return [summary(d, *best.get(str(d), (None,) * 5)) for d in dirs]


def _is_run(run_dir: Path) -> bool:
    return any(p.exists() for p in (rundir.config_file(run_dir), rundir.state_file(run_dir),
                                    rundir.generations_dir(run_dir)))


def summary(run_dir: Path, best_fitness: float | None, best_fid: float | None, started: datetime | None,
            flops: float | None = None, seconds: float | None = None) -> Run:
    """The run's line, given what its logs tell (`_best`)."""
    running = rundir.claimed(run_dir)
    if not running and not _is_run(run_dir):
        return Run(run_dir.name, EMPTY, None, None, None, None, None, None)
    cfg = _config(run_dir)
    total = cfg.evolve.generations if cfg else None
    done = state.completed(run_dir) if rundir.state_file(run_dir).is_file() else 0
    status = RUNNING if running else FINISHED if done is not None and total is not None and done >= total \
        else INTERRUPTED
    if started is None and rundir.config_file(run_dir).is_file():
        started = datetime.fromtimestamp(rundir.config_file(run_dir).stat().st_mtime, timezone.utc)
    return Run(run_dir.name, status, done, total, best_fitness, best_fid, started, cfg.space.name if cfg else None,
               flops, seconds)


def _config(run_dir: Path) -> config.RunConfig | None:
    """The run's config.yaml, else the copy its logs keep (a damaged config.yaml), else None."""
    try:
        return config.load_saved(rundir.config_file(run_dir))
    except errors.ConfigError:
        copy = logs.saved_config(run_dir)
    try:
        return config.loads_saved(copy[1], str(copy[0])) if copy else None
    except errors.ConfigError:
        return None


_SCHEMA = pa.schema([pa.field("run", pa.string()), *(logs.SCHEMA.field(name) for name in _COLUMNS)])


def _best(run_dirs: list[Path]) -> dict[str, tuple]:
    """Per run (its path): the highest fitness of a row that trained, the lowest FID, the first training's start, the
    FLOPs and seconds of its trainings and quality measurements. All runs' logs are one scan, which pyarrow reads in
    parallel; a run whose logs do not read is left out."""
    logged = [d for d in run_dirs if rundir.generations_dir(d).is_dir()]
    try:
        table = _scan(logged)
    except (OSError, pa.ArrowException):  # a damaged file: each run alone, so that only its own is left out
        tables = []
        for d in logged:
            try:
                tables.append(_scan([d]))
            except (OSError, pa.ArrowException):
                continue
        table = pa.concat_tables(tables) if tables else _SCHEMA.empty_table()
    table = table.append_column("trained", pc.if_else(pc.equal(table["status"], "ok"), table["fitness"], None))
    # a training that ended by itself counted its steps: ok, diverged or timeout (oom, failed and lost ones could not)
    ended = pc.is_in(table["status"], pa.array(["ok", "diverged", "timeout"]))
    table = table.append_column("ended", pc.if_else(ended, table["fitness"], None))
    sums = [(c, "sum") for c in ("train_flops", "quality_flops", "train_seconds", "quality_seconds")]
    per_run = table.group_by("run").aggregate([("trained", "max"), ("fid", "min"), ("started_at", "min"), *sums,
                                               ("train_flops", "count"), ("ended", "count")])
    return {r["run"]: (r["trained_max"], r["fid_min"], r["started_at_min"], _compute(r, "flops"),
                       _compute(r, "seconds")) for r in per_run.to_pylist()}


def _compute(r: dict, unit: str) -> float | None:
    """A run's training and quality FLOPs or seconds; FLOPs None where a training that ended by itself was logged
    without them (by a neuroevo before logs' schema_version 5)."""
    if unit == "flops" and r["train_flops_count"] < r["ended_count"]:
        return None
    return (r[f"train_{unit}_sum"] or 0.0) + (r[f"quality_{unit}_sum"] or 0.0)


def _scan(run_dirs: list[Path]) -> pa.Table:
    return logs.dataset([(d, ds.field("run") == str(d)) for d in run_dirs], _SCHEMA).to_table()


def render(runs: list[Run], fmt: str) -> str:
    """The runs as an aligned table (one line each), CSV or a JSON array."""
    records = [{**asdict(r), "started": r.started.isoformat() if r.started else None} for r in runs]
    if fmt == "json":
        return json.dumps(records)
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(Run.__dataclass_fields__), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return text.getvalue().rstrip("\n")
    if not runs:
        return "no runs"
    cells = [["run_id", "status", "generations", "best_fitness", "best_fid", "started", "space", "flops",
              "compute"]] + [
        [r.run_id, r.status, f"{_text(r.done)}/{_text(r.total)}" if r.status != EMPTY else "-",
         _text(r.best_fitness, ".4g"), _text(r.best_fid, ".1f"),
         _text(r.started and r.started.astimezone(timezone.utc), "%Y-%m-%d %H:%M:%S UTC"), _text(r.space),
         _text(r.flops, ".2e"), duration(r.seconds) if r.seconds is not None else "-"]
        for r in runs]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells)


def _text(value: object, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def duration(seconds: float) -> str:
    """e.g. 35.2 s, 4.2 min, 3.1 h"""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"
