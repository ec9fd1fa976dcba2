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
from typing import Annotated, Any, Literal

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

STRICT = ConfigDict(extra="forbid")
PRESETS = ("demo", "cifar10", "cifar100", "imagenet")

PositiveInt = Annotated[int, Field(ge=1)]
IntRange = tuple[PositiveInt, PositiveInt]
UnitRange = tuple[Annotated[float, Field(gt=0, lt=1)], Annotated[float, Field(gt=0, lt=1)]]
# YAML reads a bare on/off as true/false; both spellings mean the same switch
Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(lambda v: {True: "on", False: "off"}.get(v, v))]


class ConfigError(ValueError):
    """A bad configuration; its message is one line naming the key."""


# Every default below is the reference experiment on CIFAR-10 (the `cifar10` preset).


@dataclass(frozen=True, config=STRICT)
class DataConfig:
    source: Literal["demo", "cifar10", "cifar100", "imagenet", "folder"] = "cifar10"
    root: str | None = "data"  # dataset folder (ImageFolder layout, or torchvision's CIFAR root)
    image_size: Annotated[int, Field(ge=4, le=1024)] = 64  # images are square: image_size x image_size
    channels: Literal[1, 3] = 3
    subset: PositiveInt | None = None  # use only the first N images (the demo generates N)
    download: bool = False  # CIFAR only: let torchvision download into root


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
    lr: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (1e-5, 1e-4)  # log-uniform
    momentum: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.05, 0.9)
    batch_size: PositiveInt = 64
    max_params: PositiveInt | None = 50_000_000  # params_G + params_D; larger samples are redrawn


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
    dispatch: Literal["longest_first", "fifo"] = "longest_first"  # task order; cost estimated from the genes
    mode: Literal["generational", "steady_state"] = "generational"  # steady_state: no idle wait at generation ends


@dataclass(frozen=True, config=STRICT)
class ResourcesConfig:
    num_gpus: Annotated[float, Field(ge=0)] | None = None  # per task; None = 1 if the cluster has GPUs, else 0
    num_cpus: Annotated[float, Field(gt=0)] = 1.0  # per task
    max_retries: Annotated[int, Field(ge=0)] = 3  # re-runs of a task whose worker or node died; then "lost"


@dataclass(frozen=True, config=STRICT)
class RunConfig:
    seed: int = 0
    out_dir: str = "runs"
    run_id: str | None = None  # None = <timestamp>-seed<seed>
    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
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
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields or not dataclasses.is_dataclass(fields[part].default_factory):
            return []
        cls = fields[part].default_factory
    return [f.name for f in dataclasses.fields(cls)]


def _describe(err: dict[str, Any]) -> str:
    loc = tuple(err["loc"])
    key = ".".join(str(p) for p in loc)
    if err["type"] == "unexpected_keyword_argument":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        hint = f" (did you mean {'.'.join([*map(str, loc[:-1]), close[0]])}?)" if close else ""
        return f"{key}: unknown key{hint}"
    if err["type"] == "dataclass_type":
        return f"{key}: expected a section of keys, got {err['input']!r}"
    return f"{key}: {err['msg'][0].lower()}{err['msg'][1:]} (got {err['input']!r})"


def noise_sides(space: SpaceConfig, image_size: int) -> tuple[int, int]:
    """Smallest and largest noise side: 16-48 for 64x64 images, 50-150 for 200x200."""
    return math.ceil(space.noise_side[0] * image_size), math.floor(space.noise_side[1] * image_size)


def check(cfg: RunConfig) -> None:
    """Relations between keys that field types cannot express."""
    s = cfg.space
    for name in ("noise_channels", "noise_side", "g_blocks", "d_blocks", "channels", "kernel",
                 "bn_momentum", "d_hidden", "lr", "momentum"):
        lo, hi = getattr(s, name)
        if lo > hi:
            raise ConfigError(f"space.{name}: min {lo} is greater than max {hi}")
    if s.kernel[0] < 2:
        raise ConfigError(f"space.kernel: kernels must be at least 2 to grow or shrink the image (got {list(s.kernel)})")
    if not math.isclose(cfg.fitness.lam + cfg.fitness.gamma, 1.0):
        raise ConfigError(f"fitness.lam + fitness.gamma: must equal 1 (got {cfg.fitness.lam} + {cfg.fitness.gamma})")
    if cfg.data.source in ("folder", "imagenet") and not cfg.data.root:
        raise ConfigError(f"data.root: required when data.source is {cfg.data.source} (a folder of class sub-folders)")

    size = cfg.data.image_size
    lo, hi = noise_sides(s, size)
    if lo > hi or lo < 1 or hi >= size:
        raise ConfigError(f"space.noise_side: {list(s.noise_side)} of a {size}px image leaves no noise side between 1 and {size - 1}")
    for side in range(lo, hi + 1):
        if not generator_depths(s, size - side):
            grow = size - side
            raise ConfigError(
                f"space.g_blocks: {list(s.g_blocks)} blocks cannot grow a {side}px noise to {size}px with kernels "
                f"{list(s.kernel)} (needs {math.ceil(grow / (s.kernel[1] - 1)) - 1} to {grow // (s.kernel[0] - 1) - 1} blocks)")
    if s.d_blocks[1] * (s.kernel[1] - 1) >= size:
        raise ConfigError(f"space.d_blocks: {s.d_blocks[1]} blocks of kernel {s.kernel[1]} shrink a {size}px image to nothing")
    if cfg.data.subset is not None and cfg.data.subset < s.batch_size:
        raise ConfigError(f"data.subset: {cfg.data.subset} images is fewer than one batch (space.batch_size={s.batch_size})")
    n_elite, population = elite_count(cfg.evolve), cfg.evolve.population
    if n_elite < 1:
        raise ConfigError(f"evolve.elite_fraction: {cfg.evolve.elite_fraction} of a population of {population} keeps no elite (needs at least 1)")
    if n_elite >= population:
        raise ConfigError(f"evolve.elite_fraction: {cfg.evolve.elite_fraction} keeps the whole population of {population}")


def generator_depths(space: SpaceConfig, grow: int) -> list[int]:
    """Block counts B in space.g_blocks such that B blocks plus the output layer (B + 1 stride-1 layers,
    each adding kernel - 1 pixels) can grow the noise side by exactly `grow` pixels."""
    kmin, kmax = space.kernel
    return [b for b in range(space.g_blocks[0], space.g_blocks[1] + 1)
            if (kmin - 1) * (b + 1) <= grow <= (kmax - 1) * (b + 1)]


def elite_count(evolve: EvolveConfig) -> int:
    """Elites kept per generation: elite_fraction of the population, rounded half up."""
    return math.floor(evolve.elite_fraction * evolve.population + 0.5)
