"""Experiment tracking: every logged generation sent to TensorBoard (tracking.tensorboard) and MLflow
(tracking.mlflow), read back from the run's Parquet logs, so the trackers show what the logs hold and nothing else.

TensorBoard, in RUN_DIR/tensorboard/ (tensorboardX's event files and summaries):

    events.*                        generation/* scalars (step = generation), the generation/fitness histogram, and
                                    the HParams experiment: which genes and metrics the sessions have
    chromosomes/<chromosome_id>/    one HParams session per chromosome among a generation's SESSIONS fittest: its
                                    genes as hparams, and chromosome/* scalars and its status at each generation it
                                    was among them

so the tags stay a dozen however many chromosomes a run draws, and a generation writes at most SESSIONS event
files (besides the run's own, one per driver), however large the population. Each event file starts with a purge
at the first generation it holds (a SessionLog START, as SummaryWriter's purge_step writes): TensorBoard hides
what the folder's earlier files hold from that step on, so a generation written again (after a crash, or trained
again on --resume) replaces its points instead of doubling them.

MLflow: one MLflow run per neuroevo run, created by the first driver (its id kept in RUN_DIR/tracking.json, so a
resume continues it): the resolved config, flattened, as params; config.yaml as an artifact; the generation/*
figures as metrics (step = generation). MLflow keeps every value it is sent, so a generation is sent once: a
damaged generation trained again on --resume is not sent again.

RUN_DIR/tracking.json holds the last generation each tracker was sent; a resume sends every logged generation a
tracker lacks. A tracker that fails mid-run is dropped with one warning: the run goes on, and the next --resume
sends what it missed.

The logs (pandas, pyarrow) load in the functions that read or summarise them: `check` runs among the input's
checks, which load neither.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuroevo import config
from neuroevo.config import RunConfig
from neuroevo.evolve import ranking
from neuroevo.store import rundir

# a chromosome's genes shown as hparams: the flat gene columns of its log row (lists as text)
HPARAMS = ("space", "loss", "noise_channels", "noise_side", "g_n_blocks", "g_channels", "g_kernels", "d_n_blocks",
           "d_channels", "d_kernels", "d_hidden", "g_optimiser", "g_lr", "g_momentum", "d_optimiser", "d_lr",
           "d_momentum", "batch_size", "spectral_norm", "g_ema", "augment", "r1_gamma", "n_critic", "born_generation",
           "operator")
CHROMOSOME_METRICS = ("fitness", "d_loss", "g_loss", "params_g", "params_d", "fid", "kid", "train_flops")
GENERATION_METRICS = ("best_fitness", "mean_fitness", "worst_fitness", "failed", "seconds", "best_fid", "best_kid")
COLUMNS = ("generation", "chromosome_id", "status", "error", *HPARAMS, *CHROMOSOME_METRICS)
MLFLOW_EXPERIMENT = "neuroevo"  # tracking.mlflow_experiment: null
# a generation's fittest chromosomes that get an HParams session: an event file each a generation, so a population of
# 10,000 writes 32 files a generation, not 10,000 (and the dashboard stays a table one can read)
SESSIONS = 32


class TrackingError(Exception):
    """A tracker cannot be had; one line naming the key."""


def check(cfg: RunConfig) -> None:
    """What the config's trackers need is installed."""
    if cfg.tracking.mlflow:
        try:
            import mlflow
        except ImportError:
            raise TrackingError("tracking.mlflow: true needs mlflow, which is not installed; "
                                "pip install 'neuroevo[mlflow]', or set tracking.mlflow: false") from None
        _mlflow_call(lambda: mlflow.MlflowClient().search_experiments(max_results=1))  # the store answers


def _mlflow_call(call: Any) -> Any:
    """call(), with what MLflow raises (a store it cannot open or reach) as one line."""
    import mlflow

    try:
        return call()
    except Exception as e:  # noqa: BLE001 - MLflow raises its own, its HTTP client's and its stores' errors
        raise TrackingError(f"tracking.mlflow: {' '.join(str(e).split())[:300]} (tracking URI "
                            f"{mlflow.get_tracking_uri()}; set MLFLOW_TRACKING_URI)") from None


def _tensorboardx() -> Any:
    """tensorboardX, imported without torch: tensorboardX imports torch wherever it is installed, and the driver
    must not load it (seconds and a large footprint, for tensors the driver never holds)."""
    if "torch" in sys.modules or "tensorboardX" in sys.modules:
        import tensorboardX
        return tensorboardX
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` raise ImportError meanwhile
    try:
        import tensorboardX
    finally:
        del sys.modules["torch"]
    return tensorboardX


def _hparams(row: Mapping[str, Any]) -> dict[str, Any]:
    from neuroevo.store import logs

    values = {k: logs.value(row[k]) for k in HPARAMS}
    return {k: str(v) if isinstance(v, list) else v for k, v in values.items() if v is not None}


def fittest(rows: Sequence[Mapping[str, Any]], count: int) -> list[Mapping[str, Any]]:
    """A generation's `count` fittest rows (ranking.order), in the rows' order."""
    keep = ranking.order([r["fitness"] for r in rows], chromosome_id=[r["chromosome_id"] for r in rows],
                         rung=ranking.rung_key([r.get("rung") for r in rows], [r["status"] for r in rows]))[:count]
    return [rows[i] for i in sorted(keep)]


def generation_metrics(rows: Sequence[Mapping[str, Any]], seconds: float | None) -> dict[str, float]:
    """The generation/* figures of one generation's rows; those not measured are left out."""
    from neuroevo.store import logs

    figures = {**logs.generation_summary(rows), "seconds": seconds}
    return {k: float(figures[k]) for k in GENERATION_METRICS if figures[k] is not None}


class _Events:
    """One event file, written in the driver's thread with tensorboardX's RecordWriter: a full disk raises here,
    where SummaryWriter's writer thread would print it and then block the driver on its queue."""

    def __init__(self, folder: Path, purge_step: int, suffix: str):
        self.tbx = _tensorboardx()
        folder.mkdir(parents=True, exist_ok=True)
        # the name TensorBoard looks for, as tensorboardX makes it; the suffix keeps one driver's files apart
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}{suffix}"
        self.file = self.tbx.RecordWriter(str(folder / name))
        self.add(purge_step, file_version="brain.Event:2")
        # TensorBoard hides what earlier files of the folder hold from this step on, as SummaryWriter(purge_step=)
        log = self.tbx.proto.event_pb2.SessionLog
        self.add(purge_step, session_log=log(status=log.START))

    def add(self, step: int, **event: Any) -> None:
        self.file.write(self.tbx.proto.event_pb2.Event(wall_time=time.time(), step=step, **event).SerializeToString())

    def summary(self, step: int, summary: Any) -> None:
        self.add(step, summary=summary)

    def close(self) -> None:
        self.file.close()  # closes the file even where its last write fails


@dataclass
class _TensorBoard:
    folder: Path
    next: int  # the first generation still to write
    events: _Events | None = None  # the run's own file, open while the driver writes it
    sessions: int = SESSIONS

    def write(self, generation: int, rows: list[dict[str, Any]], seconds: float | None) -> None:
        from neuroevo.store import logs

        suffix = f".{os.getpid()}.g{generation:06d}"  # the name's time is in seconds: one file per writer, in order
        if self.events is None:
            self.events = _Events(self.folder, generation, suffix)
            genes = {k: v for r in reversed(rows) for k, v in _hparams(r).items()}
            experiment, _, _ = self.events.tbx.summary.hparams(genes, {f"chromosome/{m}": 0.0 for m in CHROMOSOME_METRICS})
            self.events.summary(generation, experiment)
        summary = self.events.tbx.summary
        for name, v in generation_metrics(rows, seconds).items():
            self.events.summary(generation, summary.scalar(f"generation/{name}", v))
        fitness = np.array([float(r["fitness"]) for r in rows])
        self.events.summary(generation, summary.histogram("generation/fitness", fitness, "auto"))
        for r in fittest(rows, self.sessions):
            folder = self.folder / "chromosomes" / r["chromosome_id"]
            first = generation == r["born_generation"] or not any(folder.glob("events.*"))
            chromosome = _Events(folder, generation, suffix)
            try:
                if first:  # the session starts where the chromosome does (and again where that is rewritten)
                    _, start, end = summary.hparams(_hparams(r), {})
                    chromosome.summary(generation, start)
                    chromosome.summary(generation, end)
                for name in CHROMOSOME_METRICS:
                    v = logs.value(r[name])
                    if v is not None:
                        chromosome.summary(generation, summary.scalar(f"chromosome/{name}", float(v)))
                error = logs.value(r["error"])
                chromosome.summary(generation, summary.text("chromosome/status",
                                                            r["status"] + (f": {error}" if error else "")))
            finally:
                chromosome.close()
        self.events.file.flush()

    def close(self, finished: bool) -> None:
        if self.events is not None:
            self.events.close()


@dataclass
class _MLflow:
    client: Any
    run: str  # the MLflow run's id
    next: int

    @classmethod
    def open(cls, cfg: RunConfig, run_id: str, run_dir: Path, progress: dict[str, Any]) -> _MLflow:
        """The MLflow run tracking.json names, continued; or a new one, with the config, noted there."""
        import mlflow

        client = _mlflow_call(mlflow.MlflowClient)  # MLFLOW_TRACKING_URI, or mlflow's default
        if progress.get("mlflow_run_id"):
            run = progress["mlflow_run_id"]
            _mlflow_call(lambda: client.update_run(run, status="RUNNING"))
            # a driver killed between sending a generation and noting it in tracking.json: MLflow has it
            sent = [m.step for m in _mlflow_call(lambda: client.get_metric_history(run, GENERATION_METRICS[0]))]
            return cls(client, run, max([progress.get("mlflow", -1), *sent]) + 1)
        run = _mlflow_call(lambda: cls._create(client, cfg, run_id, run_dir))
        progress["mlflow_run_id"] = run
        rundir.write(rundir.tracking_file(run_dir), json.dumps(progress, indent=1) + "\n")
        return cls(client, run, 0)

    @staticmethod
    def _create(client: Any, cfg: RunConfig, run_id: str, run_dir: Path) -> str:
        from mlflow.entities import Param

        name = cfg.tracking.mlflow_experiment or MLFLOW_EXPERIMENT
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        run = client.create_run(experiment_id, run_name=run_id,
                                tags={"neuroevo.run_dir": str(Path(run_dir).resolve())}).info.run_id
        params = [Param(k, str(v)) for k, v in config.flat(cfg).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
            client.log_batch(run, params=params[i:i + 100])
        client.log_artifact(run, str(rundir.config_file(run_dir)))
        return run

    def write(self, generation: int, rows: list[dict[str, Any]], seconds: float | None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run, metrics=[Metric(k, v, now, generation)
                                                 for k, v in generation_metrics(rows, seconds).items()])

    def close(self, finished: bool) -> None:
        self.client.set_terminated(self.run, status="FINISHED" if finished else "KILLED")


def _quietly(close: Any, *args: Any) -> None:
    """Close a tracker whose failure, if any, is told already or is of no consequence: the logs hold it all."""
    try:
        close(*args)
    except Exception:  # noqa: BLE001, S110
        pass


@dataclass
class Tracker:
    """The run's trackers, each with the first generation it still lacks."""
    run_dir: Path
    backends: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)  # tracking.json

    def upto(self, completed: int, seconds: Mapping[int, float] | None = None) -> None:
        """Send each tracker every logged generation before `completed` that it lacks, in order, as the logs hold
        it; seconds: the wall time of the generations this driver trained."""
        import pyarrow.dataset as ds

        from neuroevo.store import logs

        first = min((b.next for b in self.backends.values()), default=completed)
        if first >= completed:
            return
        between = (ds.field("generation") >= first) & (ds.field("generation") < completed)
        history = logs.read_generations(self.run_dir, columns=list(COLUMNS), filter=between)
        for generation, df in history.groupby("generation", sort=True):
            rows = df.to_dict("records")
            for name, backend in list(self.backends.items()):
                if backend.next > generation:
                    continue
                try:
                    backend.write(int(generation), rows, (seconds or {}).get(int(generation)))
                except Exception as e:  # noqa: BLE001 - a tracker never stops the run: the logs have it all
                    print(f"tracking: warning: {name} stopped at generation {generation} ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]}); the run goes on, and --resume sends what it missed",
                          file=sys.stderr, flush=True)
                    del self.backends[name]
                    _quietly(backend.close, False)
                    continue
                backend.next = int(generation) + 1
                self.progress[name] = int(generation)
            rundir.write(rundir.tracking_file(self.run_dir), json.dumps(self.progress, indent=1) + "\n")

    def close(self, finished: bool) -> None:
        for backend in self.backends.values():
            _quietly(backend.close, finished)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, kind: type | None, *_: object) -> None:
        self.close(finished=kind is None)


def open_trackers(cfg: RunConfig, run_id: str, run_dir: Path, first: int) -> Tracker:
    """The trackers cfg.tracking asks for; first: the first generation this driver trains (on --resume, the next
    one, or the first damaged one it trains again). TrackingError where MLflow cannot be had."""
    try:
        progress = json.loads(rundir.tracking_file(run_dir).read_text())
    except (OSError, ValueError):  # none yet, or damaged: every tracker starts over (TensorBoard purges)
        progress = {}
    tracker = Tracker(Path(run_dir), progress=progress if isinstance(progress, dict) else {})
    if cfg.tracking.tensorboard:
        folder = rundir.tensorboard_dir(run_dir)
        done = tracker.progress.get("tensorboard", -1) if any(folder.glob("events.*")) else -1
        tracker.backends["tensorboard"] = _TensorBoard(folder, min(first, done + 1))
    if cfg.tracking.mlflow:
        tracker.backends["mlflow"] = _MLflow.open(cfg, run_id, run_dir, tracker.progress)
    return tracker
