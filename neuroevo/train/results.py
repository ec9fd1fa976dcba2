"""What a training task reports to the driver (beside the weights file, which it returns as a separate object):
the training's result, the generator's sample quality, what its weights started from, the task's report; and
several trainings of one chromosome as one. And what the driver gives a task to start from (Start).

Plain data, no torch: the driver unpickles these from every task, and unpickling imports the module that defines
them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class TrainResult:
    status: str  # ok | diverged (a NaN or infinite loss) | timeout (past cfg.timeout_s) | oom (out of GPU memory)
    error: str
    d_loss: float  # mean over the last epoch of D's loss, e.g. BCE(D(real), 1) + BCE(D(G(z)), 0) (losses.py)
    g_loss: float  # mean over the last epoch of G's loss, e.g. BCE(D(G(z)), 1)
    d_losses: tuple[float, ...]  # per epoch
    g_losses: tuple[float, ...]
    params_g: int
    params_d: int
    train_seconds: float
    images_per_second: float  # real images through D per second of training
    device: str  # "cpu", or e.g. "cuda:0 (NVIDIA H100 80GB HBM3; bf16 channels_last ... compile 31.2s)"
    # the steps the training took, as it counted them, and their FLOPs (flops.train_flops); None: not counted (oom)
    g_steps: int | None = None
    d_steps: int | None = None
    train_flops: float | None = None
    steps: int = 0  # D steps taken (with n_critic 1, each one D step and one G step): where a paused training stands


@dataclass(frozen=True)
class Quality:
    fid: float
    kid: float  # mean over the subsets
    kid_std: float
    samples: int  # generated images measured
    seconds: float  # sampling, features, FID and KID
    flops: float = 0.0  # G's forward and the feature extractor's on every sample


@dataclass(frozen=True)
class SeedResult:
    """One of a chromosome's trainings in a generation (evolve.seeds_per_chromosome)."""
    seed: int
    d_loss: float
    g_loss: float
    fid: float | None  # None where quality was not measured


@dataclass(frozen=True)
class Start:
    """The trained weights a chromosome's training may start from (evolve.inherit): its parents' weights files by
    chromosome id (an elite's parent is itself), and the training steps behind each (its lineage's)."""
    weights: Mapping[str, Any]  # bytes; the driver sends Ray object refs of them, which the task fetches
    steps: Mapping[str, int]


@dataclass(frozen=True)
class Inherited:
    """What a training's weights started from: the parents whose weights it took (G's, then D's where that is
    another), the share of its parameters taken from them, and the training steps behind those."""
    parents: tuple[str, ...] = ()  # empty: fresh weights
    fraction: float = 0.0
    steps: int = 0


@dataclass(frozen=True)
class TaskReport:
    result: TrainResult  # with several seeds: the losses are their means, the time their sum
    node: str  # host name / the first 8 characters of Ray's node id
    gpu_ids: tuple[str, ...]
    started_at: datetime
    finished_at: datetime
    quality: Quality | None = None  # quality.evaluate all: the generator's FID and KID (the seeds' means)
    seeds: tuple[SeedResult, ...] = ()
    inherited: Inherited = Inherited()


def mean_result(runs: list[TrainResult]) -> TrainResult:
    """Several trainings of one chromosome as one result: the first failure's status, the mean losses (and per-epoch
    losses) of the trainings, their summed time, steps and FLOPs."""
    if len(runs) == 1:
        return runs[0]
    failed = next((r for r in runs if r.status != "ok"), None)
    epochs = min(len(r.d_losses) for r in runs)

    def mean(values) -> float:
        return float(np.mean(list(values)))

    def total(values) -> float | None:
        values = list(values)
        return None if None in values else sum(values)

    return dataclasses.replace(
        runs[0], status=failed.status if failed else "ok", error=failed.error if failed else "",
        d_loss=mean(r.d_loss for r in runs), g_loss=mean(r.g_loss for r in runs),
        d_losses=tuple(mean(r.d_losses[e] for r in runs) for e in range(epochs)),
        g_losses=tuple(mean(r.g_losses[e] for r in runs) for e in range(epochs)),
        train_seconds=sum(r.train_seconds for r in runs), images_per_second=mean(r.images_per_second for r in runs),
        g_steps=total(r.g_steps for r in runs), d_steps=total(r.d_steps for r in runs),
        train_flops=total(r.train_flops for r in runs))


def mean_quality(qualities: list[Quality]) -> Quality:
    """Several generators of one chromosome (evolve.seeds_per_chromosome) as one: mean FID and KID, summed time and
    FLOPs."""
    if len(qualities) == 1:
        return qualities[0]
    return Quality(float(np.mean([q.fid for q in qualities])), float(np.mean([q.kid for q in qualities])),
                   float(np.mean([q.kid_std for q in qualities])), qualities[0].samples,
                   sum(q.seconds for q in qualities), sum(q.flops for q in qualities))
