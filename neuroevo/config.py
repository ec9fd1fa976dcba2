"""The run configuration: one frozen dataclass tree, loaded from a preset or YAML file plus `--set` overrides.

Types and bounds are checked by pydantic; relations between keys (min <= max, lambda + gamma = 1,
noise that can grow to the image) are checked here. Every problem becomes a one-line ConfigError that
names the key, before Ray starts or anything is written.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import BeforeValidator, ConfigDict, Discriminator, Field, PlainValidator, Tag, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError
from pydantic.dataclasses import dataclass

STRICT = ConfigDict(extra="forbid")
PRESETS = ("demo", "cifar10", "cifar100", "imagenet", "v2", "dcgan")

T = TypeVar("T")
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
IntRange = tuple[PositiveInt, PositiveInt]
CountRange = tuple[NonNegativeInt, NonNegativeInt]
UnitRange = tuple[Annotated[float, Field(gt=0, lt=1)], Annotated[float, Field(gt=0, lt=1)]]
LrRange = tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]
MomentumRange = tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]]
Choices = Annotated[tuple[T, ...], Field(min_length=1)]  # a non-empty list to draw from uniformly

# The gene values of space v2 (model.py and losses.py implement each one).
Activation = Literal["relu", "leaky_relu", "prelu", "sigmoid", "tanh", "swish", "softplus"]
Norm = Literal["batch", "instance", "none"]
Pool = Literal["none", "max", "avg"]
Output = Literal["tanh", "sigmoid"]  # G's output, with real images scaled to [-1, 1] or [0, 1]
Loss = Literal["bce", "wgan-gp", "hinge"]
OptimiserName = Literal["sgd", "adam"]
Schedule = Literal["none", "step"]
Init = Literal["default", "normal"]  # PyTorch's default, or N(0, 0.02) as DCGAN
# YAML reads a bare on/off as true/false; both spellings mean the same switch
Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(lambda v: {True: "on", False: "off"}.get(v, v))]


class ConfigError(ValueError):
    """A bad configuration; its message is one line naming the key."""


def _gpu_request(v: Any) -> float | str | None:
    if v is None or v == "memory":
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
        return float(v)
    raise PydanticCustomError("gpu_request", "expected a number >= 0, null or 'memory'")


GpuRequest = Annotated[float | Literal["memory"] | None, PlainValidator(_gpu_request)]


# Every default below is the reference experiment on CIFAR-10 (the `cifar10` preset).


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


@dataclass(frozen=True, config=STRICT)
class SpaceConfig:
    """The search space `seed-v1`: the reference experiment's ranges (all inclusive)."""

    name: Literal["seed-v1"] = "seed-v1"
    noise_channels: IntRange = (2, 5)
    noise_side: UnitRange = (0.25, 0.75)  # noise height = width, as a fraction of the image side
    g_blocks: tuple[Annotated[int, Field(ge=0)], PositiveInt] = (3, 23)  # ConvTranspose-BN-PReLU blocks before G's output layer
    d_blocks: IntRange = (1, 6)  # Conv-BN-PReLU blocks before D's FC layers
    channels: IntRange = (5, 300)
    kernel: IntRange = (3, 5)
    bn_momentum: UnitRange = (0.1, 0.9)
    d_hidden: IntRange = (30, 1200)
    lr: LrRange = (1e-5, 1e-4)  # log-uniform
    momentum: MomentumRange = (0.05, 0.9)
    batch_size: PositiveInt = 64
    max_params: PositiveInt | None = 50_000_000  # params_G + params_D; larger samples are redrawn


@dataclass(frozen=True, config=STRICT)
class SpaceV2:
    """The search space `v2`: per-block layer, normalisation and activation genes, loss, optimiser and practices.

    Ranges are inclusive [min, max]; lists are choices drawn uniformly. See README "Search space v2".
    """

    name: Literal["v2"] = "v2"
    noise_dim: IntRange = (32, 128)  # z ~ N(0, I), a noise_dim x 1 x 1 tensor
    start_side: tuple[Annotated[int, Field(ge=2)], Annotated[int, Field(ge=2)]] = (4, 8)  # G's first feature map
    g_blocks: CountRange = (0, 4)  # G's blocks between its projection and its output layer
    d_blocks: CountRange = (1, 5)  # D's blocks before it flattens
    g_fc: CountRange = (0, 1)  # FC layers on the noise vector, before G's projection
    d_fc: CountRange = (0, 1)  # hidden FC layers after D flattens, before its score
    channels: IntRange = (16, 256)
    fc_units: IntRange = (64, 512)
    kernels: Choices[PositiveInt] = (3, 4, 5)
    strides: Choices[Literal[1, 2]] = (1, 2)  # 2: G doubles the side (ConvTranspose), D halves it (Conv)
    pools: Choices[Pool] = ("none", "max", "avg")  # D only: a 2x2 pooling after the block
    skips: Choices[bool] = (False, True)  # a residual connection around the block
    norms: Choices[Norm] = ("batch", "instance", "none")
    g_activations: Choices[Activation] = ("relu", "leaky_relu", "prelu", "sigmoid", "tanh", "swish", "softplus")
    d_activations: Choices[Activation] = ("relu", "leaky_relu", "prelu", "sigmoid", "tanh", "swish", "softplus")
    outputs: Choices[Output] = ("tanh", "sigmoid")
    losses: Choices[Loss] = ("bce", "wgan-gp", "hinge")
    optimisers: Choices[OptimiserName] = ("sgd", "adam")  # per network
    sgd_lr: LrRange = (1e-5, 1e-4)  # log-uniform
    sgd_momentum: MomentumRange = (0.05, 0.9)
    adam_lr: LrRange = (1e-4, 4e-4)  # log-uniform, around DCGAN's 2e-4
    adam_beta1: MomentumRange = (0.3, 0.7)  # around DCGAN's 0.5; beta2 is 0.999
    schedules: Choices[Schedule] = ("none", "step")  # step: lr x decay_factor once, after decay_epoch epochs
    decay_epoch: IntRange = (1, 5)
    decay_factor: UnitRange = (0.1, 0.5)
    label_smoothing: Choices[bool] = (False, True)  # bce only: real target 0.9
    feature_matching: Choices[bool] = (False, True)  # G also matches D's mean features on real images
    inits: Choices[Init] = ("default", "normal")
    separate_batches: Choices[bool] = (False, True)  # D sees real and fake in separate batches, not one
    batch_size: Annotated[int, Field(ge=2)] = 64
    max_flatten: PositiveInt = 8192  # bound on D's flattened features (channels x side x side)
    max_params: PositiveInt | None = 50_000_000


def _space_name(v: Any) -> str:
    return v.get("name", "seed-v1") if isinstance(v, dict) else getattr(v, "name", "seed-v1")


# `space.name` picks the space; without it a space is seed-v1, as before v2 existed.
Space = Annotated[Union[Annotated[SpaceConfig, Tag("seed-v1")], Annotated[SpaceV2, Tag("v2")]],
                  Discriminator(_space_name)]
SPACES = {"seed-v1": SpaceConfig, "v2": SpaceV2}


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


@dataclass(frozen=True, config=STRICT)
class FitnessConfig:
    lam: Annotated[float, Field(ge=0, le=1)] = 0.75  # weight of the loss term
    gamma: Annotated[float, Field(ge=0, le=1)] = 0.25  # weight of the size term
    scale: Annotated[float, Field(gt=0)] = 5e6  # S in P = S / (params_G + params_D)
    failed: float = 0.0  # fitness of a chromosome whose training failed or diverged


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
    seed_chromosomes: tuple[Literal["dcgan"], ...] = ()  # fixed chromosomes in the first population
    dispatch: Literal["longest_first", "fifo"] = "longest_first"  # task order; cost estimated from the genes
    mode: Literal["generational", "steady_state"] = "generational"  # steady_state: no idle wait at generation ends


@dataclass(frozen=True, config=STRICT)
class ResourcesConfig:
    # per task; None = 1 if the cluster has GPUs, else 0; "memory" = the share of one GPU (1/8, 1/4, 1/2 or 1)
    # that fits the chromosome's estimated training memory, or 0 without GPUs
    num_gpus: GpuRequest = None
    num_cpus: Annotated[float, Field(gt=0)] = 1.0  # per task
    gpu_memory_gb: Annotated[float, Field(gt=0)] = 16.0  # of the cluster's smallest GPU, for num_gpus: memory
    max_retries: Annotated[int, Field(ge=0)] = 3  # re-runs of a task whose worker or node died; then "lost"


@dataclass(frozen=True, config=STRICT)
class RunConfig:
    seed: int = 0
    out_dir: str = "runs"
    run_id: str | None = None  # None = <timestamp>-seed<seed>
    data: DataConfig = field(default_factory=DataConfig)
    space: Space = field(default_factory=SpaceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)


_ADAPTER = TypeAdapter(RunConfig)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), ready for YAML."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def flat(cfg: RunConfig) -> dict[str, Any]:
    """{"evolve.population": 10, ...}"""

    def walk(d: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(walk(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out

    return walk(to_dict(cfg), "")


# Keys a resumed run may change: they do not change which chromosomes are drawn or how they are scored (the
# fast-path switches change a GPU's float rounding at most).
RESUMABLE_CHANGES = ("out_dir", "run_id", "evolve.generations", "evolve.dispatch", "evolve.mode", "resources.",
                     "train.bf16", "train.channels_last", "train.data_on_gpu", "train.cudnn_benchmark", "train.compile")


def experiment_differences(saved: RunConfig, requested: RunConfig) -> list[str]:
    """'key (saved -> requested)' for each key that would change the experiment if a run were resumed with it."""
    a, b = flat(saved), flat(requested)
    return [f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(RESUMABLE_CHANGES)]


def preset_path(name: str) -> Path:
    return Path(str(resources.files("neuroevo") / "presets" / f"{name}.yaml"))


def load(source: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Resolve a preset name or YAML path (default: the demo preset) plus `key=value` overrides."""
    source = source or "demo"
    path = preset_path(source) if source in PRESETS else Path(source)
    if not path.is_file():
        raise ConfigError(f"{source}: no such config file or preset (presets: {', '.join(PRESETS)})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({_one_line(e)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> RunConfig:
    try:
        cfg = _ADAPTER.validate_python(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e.errors()[0])) from None
    check(cfg)
    return cfg


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item}: expected key=value, e.g. evolve.population=4")
    try:
        value = yaml.safe_load(text)  # so "4" is an int, "[1, 3]" a list, "null" None
    except yaml.YAMLError:
        value = text
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item}: {part} is not a section")
        node = child
    node[leaf] = value


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _known_keys(loc: tuple) -> list[str]:
    cls: Any = RunConfig
    for part in loc[:-1]:
        if part in SPACES and cls in SPACES.values():
            cls = SPACES[part]
            continue
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields or not dataclasses.is_dataclass(fields[part].default_factory):
            return []
        cls = fields[part].default_factory
    return [f.name for f in dataclasses.fields(cls)]


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    if err["type"] == "union_tag_invalid":
        return f"{'.'.join(map(str, loc))}.name: expected one of {', '.join(SPACES)} (got {err['input'].get('name')!r})"
    # the space's tag is part of pydantic's location, not of the key the user wrote
    key = ".".join(str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "space" and p in SPACES))
    if err["type"] == "unexpected_keyword_argument":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        prefix = key.rpartition(".")[0]
        hint = f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""
        return f"{key}: unknown key{hint}"
    if err["type"] == "dataclass_type":
        return f"{key}: expected a section of keys, got {err['input']!r}"
    return f"{key}: {err['msg'][0].lower()}{err['msg'][1:]} (got {err['input']!r})"


def noise_sides(space: SpaceConfig, image_size: int) -> tuple[int, int]:
    """Smallest and largest noise side: 16-48 for 64x64 images, 50-150 for 200x200."""
    return math.ceil(space.noise_side[0] * image_size), math.floor(space.noise_side[1] * image_size)


def check(cfg: RunConfig) -> None:
    """Relations between keys that field types cannot express."""
    if not math.isclose(cfg.fitness.lam + cfg.fitness.gamma, 1.0):
        raise ConfigError(f"fitness.lam + fitness.gamma: must equal 1 (got {cfg.fitness.lam} + {cfg.fitness.gamma})")
    if cfg.data.source in ("folder", "imagenet") and not cfg.data.root:
        raise ConfigError(f"data.root: required when data.source is {cfg.data.source} (a folder of class sub-folders)")
    if isinstance(cfg.space, SpaceV2):
        _check_v2(cfg.space, cfg.data, cfg.train)
    else:
        _check_v1(cfg.space, cfg.data.image_size)
    s = cfg.space
    if cfg.data.subset_pick == "random" and cfg.data.subset is None:
        raise ConfigError("data.subset_pick: random needs data.subset, the number of images to draw")
    if cfg.data.subset is not None and cfg.data.subset < s.batch_size:
        raise ConfigError(f"data.subset: {cfg.data.subset} images is fewer than one batch (space.batch_size={s.batch_size})")
    _check_evolve(cfg.evolve, s)


def _check_ranges(s: Any, names: tuple[str, ...]) -> None:
    for name in names:
        lo, hi = getattr(s, name)
        if lo > hi:
            raise ConfigError(f"space.{name}: min {lo} is greater than max {hi}")


def _check_v1(s: SpaceConfig, size: int) -> None:
    _check_ranges(s, ("noise_channels", "noise_side", "g_blocks", "d_blocks", "channels", "kernel",
                      "bn_momentum", "d_hidden", "lr", "momentum"))
    if s.kernel[0] < 2:
        raise ConfigError(f"space.kernel: kernels must be at least 2 to grow or shrink the image (got {list(s.kernel)})")
    problem = _image_misfit(s, size)
    if problem:
        fits = next((bigger for bigger in range(size + 1, 1025) if not _image_misfit(s, bigger)), None)
        hint = f"; data.image_size {size}px is too small for this search space (the smallest that fits is {fits}px)"
        raise ConfigError(problem + (hint if fits else ""))


def _check_v2(s: SpaceV2, data: DataConfig, train: TrainConfig) -> None:
    _check_ranges(s, ("noise_dim", "start_side", "g_blocks", "d_blocks", "g_fc", "d_fc", "channels", "fc_units",
                      "sgd_lr", "sgd_momentum", "adam_lr", "adam_beta1", "decay_epoch", "decay_factor"))
    size = data.image_size
    if 1 in s.strides and not odd_kernels(s):
        raise ConfigError(f"space.kernels: stride-1 layers keep the side with padding (k-1)/2, which needs an odd "
                          f"kernel (got {list(s.kernels)}); add one or set space.strides: [2]")
    if not v2_generator_depths(s, size):
        reachable = [size >> u for u in range(size.bit_length()) if size % 2**u == 0 and size >> u >= 2]
        raise ConfigError(
            f"space.start_side: G cannot reach {size}px from a start side in {list(s.start_side)} by doubling, with "
            f"{list(s.g_blocks)} blocks (space.g_blocks) and strides {list(s.strides)}; start sides that double to "
            f"{size}px: {reachable}")
    if not v2_discriminator_depths(s, size, data.channels):
        raise ConfigError(
            f"space.max_flatten: no D of {list(s.d_blocks)} blocks (space.d_blocks) with strides {list(s.strides)} and "
            f"pools {list(s.pools)} brings a {size}px image under {s.max_flatten} flattened features with at least "
            f"{s.channels[0]} channels while keeping every feature map at least 2px")
    if "bce" not in s.losses and False not in s.label_smoothing:
        raise ConfigError(f"space.label_smoothing: only the bce loss smooths labels, and space.losses is {list(s.losses)}")
    if "step" in s.schedules and s.decay_epoch[1] >= train.epochs:
        raise ConfigError(f"space.decay_epoch: a decay after epoch {s.decay_epoch[1]} never happens in train.epochs="
                          f"{train.epochs}; lower it or set space.schedules: [none]")


def _check_evolve(e: EvolveConfig, space: Any) -> None:
    n_elite, population = elite_count(e), e.population
    if n_elite < 1:
        raise ConfigError(f"evolve.elite_fraction: {e.elite_fraction} of a population of {population} keeps no elite (needs at least 1)")
    if n_elite >= population:
        raise ConfigError(f"evolve.elite_fraction: {e.elite_fraction} keeps the whole population of {population}")
    if e.mode == "steady_state" and (e.strategy != "random" or e.keep_weights):
        raise ConfigError(f"evolve.mode: steady_state starts the next generation's newcomers before this one's fitness "
                          f"is known, so it needs evolve.strategy: random and evolve.keep_weights: false (got "
                          f"{e.strategy}, {str(e.keep_weights).lower()})")
    if e.strategy == "crossover" and n_elite < 2:
        raise ConfigError(f"evolve.strategy: crossover needs at least 2 elites to cross, and evolve.elite_fraction "
                          f"{e.elite_fraction} of {population} keeps {n_elite}")
    if e.strategy == "tournament" and e.tournament_size > population:
        raise ConfigError(f"evolve.tournament_size: {e.tournament_size} is larger than the population of {population}")
    if e.seed_chromosomes and not isinstance(space, SpaceV2):
        raise ConfigError(f"evolve.seed_chromosomes: {e.seed_chromosomes[0]} is a v2 chromosome; it needs space.name: v2")
    if len(set(e.seed_chromosomes)) < len(e.seed_chromosomes):
        raise ConfigError(f"evolve.seed_chromosomes: {list(e.seed_chromosomes)} names a chromosome twice")
    if len(e.seed_chromosomes) > population:
        raise ConfigError(f"evolve.seed_chromosomes: {len(e.seed_chromosomes)} seeds do not fit a population of {population}")


def _image_misfit(s: SpaceConfig, size: int) -> str:
    """Why the search space cannot make size x size images, or "" when it can."""
    lo, hi = noise_sides(s, size)
    if lo > hi or lo < 1 or hi >= size:
        return f"space.noise_side: {list(s.noise_side)} of a {size}px image leaves no noise side between 1 and {size - 1}"
    for side in range(lo, hi + 1):
        if not generator_depths(s, size - side):
            grow = size - side
            return (f"space.g_blocks: {list(s.g_blocks)} blocks cannot grow a {side}px noise to {size}px with kernels "
                    f"{list(s.kernel)} (needs {math.ceil(grow / (s.kernel[1] - 1)) - 1} to {grow // (s.kernel[0] - 1) - 1} blocks)")
    if s.d_blocks[1] * (s.kernel[1] - 1) >= size:
        return f"space.d_blocks: {s.d_blocks[1]} blocks of kernel {s.kernel[1]} shrink a {size}px image to nothing"
    return ""


def generator_depths(space: SpaceConfig, grow: int) -> list[int]:
    """Block counts B in space.g_blocks such that B blocks plus the output layer (B + 1 stride-1 layers,
    each adding kernel - 1 pixels) can grow the noise side by exactly `grow` pixels."""
    kmin, kmax = space.kernel
    return [b for b in range(space.g_blocks[0], space.g_blocks[1] + 1)
            if (kmin - 1) * (b + 1) <= grow <= (kmax - 1) * (b + 1)]


# Space v2's side arithmetic. Every convolution has padding (k - 1) // 2, so a stride-1 layer (odd k) keeps the
# side, a stride-2 ConvTranspose in G doubles it exactly, and a stride-2 Conv or a 2x2 pooling in D halves it
# (rounding up or down, never below ceil(side / 2)).


def odd_kernels(space: SpaceV2) -> tuple[int, ...]:
    return tuple(k for k in space.kernels if k % 2 == 1)


def v2_upsamplings(space: SpaceV2, size: int, n_blocks: int) -> list[int]:
    """Counts u of stride-2 layers among G's n_blocks blocks and its output layer such that G's start side,
    size / 2**u, is a whole number within space.start_side."""
    layers = n_blocks + 1
    lo = layers if 1 not in space.strides else 0
    hi = layers if 2 in space.strides else 0
    return [u for u in range(lo, min(hi, size.bit_length()) + 1)
            if size % 2**u == 0 and space.start_side[0] <= size >> u <= space.start_side[1]]


def v2_generator_depths(space: SpaceV2, size: int) -> list[int]:
    return [n for n in range(space.g_blocks[0], space.g_blocks[1] + 1) if v2_upsamplings(space, size, n)]


def halved_side(size: int, halvings: int) -> int:
    """The largest side D's feature map can have after `halvings` halvings of a size x size image."""
    return -(-size // 2**halvings)


def v2_halvings(space: SpaceV2, size: int, image_channels: int, n_blocks: int) -> range:
    """How many halvings n_blocks D blocks may make (each block: a stride-2 conv, a pooling, or both): at least
    enough that space.channels[0] channels flatten to at most space.max_flatten features, at most as many as keep
    every feature map at least 2px (InstanceNorm and 2x2 pooling need that)."""
    if n_blocks == 0:
        return range(1) if image_channels * size**2 <= space.max_flatten else range(0)
    per_block_forced = (1 not in space.strides) + ("none" not in space.pools)
    per_block_optional = (set(space.strides) == {1, 2}) + ("none" in space.pools and len(set(space.pools)) > 1)
    hi = min(n_blocks * (per_block_forced + per_block_optional), size.bit_length() - 2)
    lo = next((h for h in range(hi + 1) if space.channels[0] * halved_side(size, h) ** 2 <= space.max_flatten), hi + 1)
    return range(max(lo, n_blocks * per_block_forced), hi + 1)


def v2_discriminator_depths(space: SpaceV2, size: int, image_channels: int) -> list[int]:
    return [n for n in range(space.d_blocks[0], space.d_blocks[1] + 1)
            if len(v2_halvings(space, size, image_channels, n))]


def elite_count(evolve: EvolveConfig) -> int:
    """Elites kept per generation: elite_fraction of the population, rounded half up."""
    return math.floor(evolve.elite_fraction * evolve.population + 0.5)
