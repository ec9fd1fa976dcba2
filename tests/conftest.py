"""Shared fixtures and helpers: a tiny config that trains in about a second, and its v2 search space; what makes a
v2 chromosome valid; what autograd keeps; one Ray instance per test module, the CLI as a subprocess, the fast
lane's guard; a run's logs read by pandas alone, an HTML page's images and table cells."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neuroevo import config
from neuroevo.space import registry, v2
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.v2 import V2Chromosome, V2Space

# Ray binds a single-machine cluster to 127.0.0.1 only when its multi-node mode is off; read at `import ray`,
# so set before any test module imports it (CLI subprocesses and `ray start` inherit it too).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

REPO = Path(__file__).resolve().parents[1]
CIFAR_SUBSET = Path(os.environ.get("NEUROEVO_SHARED", REPO.parent / "shared")) / "data" / "cifar10-subset" / "train"

# 12x12 images, 5-8 channels, one epoch of two batches: a whole chromosome trains in well under a second.
TINY = {
    "seed": 0,
    "data": {"source": "demo", "image_size": 12, "channels": 3, "subset": 128},
    "space": {
        "noise_channels": [2, 3],
        "noise_side": [0.25, 0.5],  # 3-6 px
        "g_blocks": [1, 3],
        "d_blocks": [1, 2],
        "channels": [5, 8],
        "d_hidden": [30, 40],
        "lr": [1.0e-4, 1.0e-3],
        "batch_size": 32,
        "max_params": 100000,
    },
    "train": {"epochs": 1, "steps_per_epoch": 2, "sample_grid": 16},
    "fitness": {"scale": 1.0e4},
    "evolve": {"population": 4, "generations": 2, "elite_fraction": 0.5},
    "resources": {"num_cpus": 1},
}


def tiny_dict(**sections) -> dict:
    """TINY with some sections' keys replaced, e.g. tiny_dict(evolve={"population": 6})."""
    d = copy.deepcopy(TINY)
    for section, values in sections.items():
        if isinstance(values, dict):
            d.setdefault(section, {}).update(values)
        else:
            d[section] = values
    return d


def tiny_config(**sections) -> config.RunConfig:
    return config.from_dict(tiny_dict(**sections))


# 12x12 images, 2-6 channels: every gene on offer, a chromosome builds and steps in milliseconds.
TINY_V2_SPACE = {
    "name": "v2",
    "noise_dim": [2, 8],
    "start_side": [3, 6],  # 3 -> 12 in two doublings, 6 -> 12 in one
    "g_blocks": [0, 2],
    "d_blocks": [0, 3],
    "g_fc": [0, 1],
    "d_fc": [0, 2],
    "channels": [2, 6],
    "fc_units": [4, 16],
    "kernels": [1, 2, 3, 4, 5],
    "batch_size": 32,
    "max_flatten": 432,  # a 3 x 12 x 12 image: D may have no convolutions at all
    "decay_epoch": [1, 1],
    "max_params": 100_000,
}


def v2_dict(**sections) -> dict:
    """TINY with the space TINY_V2_SPACE and two epochs (so that a step decay can happen)."""
    space = {**copy.deepcopy(TINY_V2_SPACE), **sections.pop("space", {})}
    d = tiny_dict(train={"epochs": 2, **sections.pop("train", {})}, **sections)
    d["space"] = space
    return d


def v2_config(**sections) -> config.RunConfig:
    return config.from_dict(v2_dict(**sections))


def samples(cfg: config.RunConfig, n: int, seed: int = 0) -> list[V2Chromosome]:
    """n chromosomes of cfg's space (within max_params), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    return [registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, rng)[0] for _ in range(n)]


def assert_valid(ch: V2Chromosome, s: V2Space, in_space: bool = True) -> None:
    """What makes a v2 chromosome build: G ends at the image side, stride-1 layers have odd kernels, D's maps keep a
    side of 2 and its flattened features stay bounded. `in_space`: also every gene within the space."""
    assert v2.g_sides(ch)[-1] == ch.image_size
    assert ch.g_project.kernel == ch.image_size >> ch.upsamplings and ch.g_project.stride == 1
    for b in (*ch.g_blocks, ch.g_out, *ch.d_blocks):
        assert b.stride in (1, 2) and (b.stride == 2 or b.kernel % 2 == 1)
    assert ch.g_out.channels == ch.image_channels and ch.g_out.norm == "none" and not ch.g_out.skip
    assert all(b.pool == "none" for b in (ch.g_project, *ch.g_blocks, ch.g_out))
    assert all(side >= 2 for side in v2.d_sides(ch))
    assert ch.label_smoothing is False or ch.loss == "bce"
    if not in_space:
        return
    assert registry.plan(ch).d_features <= s.max_flatten
    assert s.noise_dim[0] <= ch.noise_dim <= s.noise_dim[1]
    assert s.g_blocks[0] <= len(ch.g_blocks) <= s.g_blocks[1] and s.d_blocks[0] <= len(ch.d_blocks) <= s.d_blocks[1]
    assert s.g_fc[0] <= len(ch.g_fc) <= s.g_fc[1] and s.d_fc[0] <= len(ch.d_fc) <= s.d_fc[1]
    assert s.start_side[0] <= ch.g_project.kernel <= s.start_side[1]
    for b in (ch.g_project, *ch.g_blocks, *ch.d_blocks):
        assert s.channels[0] <= b.channels <= s.channels[1] and b.norm in s.norms
    for b in (*ch.g_blocks, ch.g_out, *ch.d_blocks):
        assert b.kernel in s.kernels
    for b in (*ch.g_blocks, *ch.d_blocks):
        assert b.skip in s.skips
    assert all(b.activation in s.g_activations for b in (ch.g_project, *ch.g_blocks, *ch.g_fc))
    assert all(b.activation in s.d_activations for b in (*ch.d_blocks, *ch.d_fc))
    assert ch.g_out.activation in s.outputs and all(b.pool in s.pools for b in ch.d_blocks)
    for d in (*ch.g_fc, *ch.d_fc):
        assert s.fc_units[0] <= d.units <= s.fc_units[1] and d.norm in s.norms and d.norm != "instance"
    assert ch.loss in s.losses and ch.init in s.inits
    assert ch.feature_matching in s.feature_matching and ch.separate_batches in s.separate_batches
    for opt in (ch.g_opt, ch.d_opt):
        lr, momentum = (s.sgd_lr, s.sgd_momentum) if opt.name == "sgd" else (s.adam_lr, s.adam_beta1)
        assert opt.name in s.optimisers and lr[0] <= opt.lr <= lr[1] and momentum[0] <= opt.momentum <= momentum[1]
        assert opt.decay_epoch == 0 or (s.decay_epoch[0] <= opt.decay_epoch <= s.decay_epoch[1]
                                        and s.decay_factor[0] <= opt.decay_factor <= s.decay_factor[1])
    assert ch.batch_size == s.batch_size
    assert s.max_params is None or sum(registry.param_counts(ch)) <= s.max_params


def saved_activation_floats(ch: Chromosome) -> int:
    """Floats that autograd saves for backward in G(z), D(real) and D(G(z)), weights left out."""
    import torch

    from neuroevo.train import model

    G, D = model.build(ch)
    weights = {p.untyped_storage().data_ptr() for p in [*G.parameters(), *D.parameters()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        saved[s.data_ptr()] = s.nbytes()  # by storage: a tensor saved by two layers counts once
        return t

    real = torch.rand(ch.batch_size, ch.image_channels, ch.image_size, ch.image_size)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fake = G(model.noise(ch, ch.batch_size))
        D(real), D(fake.detach())
    return sum(n for ptr, n in saved.items() if ptr not in weights) // 4


@pytest.fixture(scope="session", autouse=True)
def data_cache(tmp_path_factory):
    """Prepared images go to a fresh folder, never the user's ~/.cache (CLI subprocesses inherit it too)."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["NEUROEVO_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Torch runs on one thread in the test process: the models here are tiny, and on two shared cores a second
    thread mostly waits for a core (a tiny model's training step then takes ten times the CPU time)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _local_ray(num_gpus: int):
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=num_gpus, _node_ip_address="127.0.0.1", include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the whole module (starting one takes ~5 s on 2 cores)."""
    yield from _local_ray(num_gpus=0)


@pytest.fixture(scope="module")
def ray_with_gpus():
    """The same with two logical GPUs (no CUDA here: tasks that get a GPU share train on the CPU)."""
    yield from _local_ray(num_gpus=2)


# The fast lane (`pytest -m "not slow"`) holds no test that starts Ray or a Python subprocess: those take seconds
# each. A test not marked slow that starts one fails at that start, naming the command, so the lane stays fast.
_unmarked: str | None = None  # the test, not marked slow, whose setup or call is under way
_started: list[str] = []


def _is_ray_or_python(arg) -> bool:
    if not isinstance(arg, (str, bytes, os.PathLike)):
        return False
    path = os.fsdecode(arg)
    return os.path.basename(path).startswith("python") or f"{os.sep}ray{os.sep}" in path or (
        os.path.isabs(path) and os.path.realpath(path) == os.path.realpath(sys.executable))


def _refuse_in_fast_lane(event: str, args: tuple) -> None:
    if event != "subprocess.Popen" or _unmarked is None:
        return
    program, argv = args[0], args[1]
    if any(map(_is_ray_or_python, [program, *argv])):  # also behind a wrapper such as setpriv or timeout
        command = " ".join(os.fsdecode(a) if isinstance(a, (str, bytes, os.PathLike)) else str(a) for a in argv)
        _started.append(command.splitlines()[0][:200])
        raise RuntimeError(f"not marked slow, yet starts `{_started[-1]}`")


sys.addaudithook(_refuse_in_fast_lane)


def _watch(item: pytest.Item):
    global _unmarked
    if item.get_closest_marker("slow"):
        return (yield)
    _unmarked = item.nodeid
    _started.clear()
    try:
        return (yield)
    finally:
        _unmarked = None
        if _started:  # also when the code under test caught the RuntimeError above
            raise pytest.fail.Exception(f"{item.nodeid} is not marked slow, yet starts Ray or Python: "
                                        f"`{_started[0]}`", pytrace=False) from None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _watch(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _watch(item))


needs_cifar_subset = pytest.mark.skipif(
    not CIFAR_SUBSET.is_dir(),
    reason=f"real CIFAR-10 images not found at {CIFAR_SUBSET} (set NEUROEVO_SHARED to the folder holding data/)")


def neuroevo(*args, cwd=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """`python -m neuroevo ARGS...` as a user runs it: its exit code, stdout and stderr (text)."""
    return subprocess.run([sys.executable, "-m", "neuroevo", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, **kwargs)


def plain(*run_dirs) -> pd.DataFrame:
    """Runs' logs read by pandas alone (no neuroevo code), with `run_dir` and `generation` as an int."""
    frames = [pd.read_parquet(Path(d) / "generations").assign(run_dir=str(d)) for d in run_dirs]
    df = pd.concat(frames, ignore_index=True)
    return df.assign(generation=df["generation"].astype(int))


def old_layout(run_dir: Path, version: int = 3) -> None:
    """Turn a run's logs into what neuroevo wrote before schema 4: folders generation=NNNN, files of schema_version
    `version` (4: as such a run logs a generation on resume), without `generation` and the other columns later
    versions added (metadata, the config's copy among it, kept), and a state.json without fingerprints."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from neuroevo.store import logs, rundir

    if rundir.state_file(run_dir).is_file():
        doc = json.loads(rundir.state_file(run_dir).read_text())
        doc.pop("sha256", None)
        rundir.state_file(run_dir).write_text(json.dumps(doc))
    later = sorted({"generation", *(name for v, names in logs.ADDED.items() if v > version for name in names)})
    for g in rundir.logged_generations(run_dir):
        new = rundir.generations_dir(run_dir) / f"{g:04d}"
        table = pq.read_table(new / "part-0.parquet").drop_columns(later)
        table = table.set_column(0, "schema_version", pa.array([version] * len(table), pa.int16()))
        old = new.with_name(f"generation={g:04d}")
        new.rename(old)
        metadata = {**table.schema.metadata, logs.VERSION_KEY: str(version).encode()}
        pq.write_table(table.replace_schema_metadata(metadata), old / "part-0.parquet")


def old_state(run_dir: Path, completed: int, lineage: bool) -> dict:
    """The state file neuroevo wrote before format 2, of the run's populations 0..completed (from its rows); without
    parents and operators (lineage False) as written before those were recorded."""
    from neuroevo.space.registry import from_json
    from neuroevo.store import logs

    keys = ("chromosome", "born_generation", "resampled") + (("parents", "operator") if lineage else ())
    pops = [logs.logged_members(run_dir, g) for g in range(completed + 1)]
    return {"seed": 0, "completed": completed, "generations": [
        {"generation": g, "elite_ids": [from_json(m["chromosome"]).id for m in pop if m["born_generation"] < g],
         "population": [{k: m[k] for k in keys} for m in pop]} for g, pop in enumerate(pops)]}


class Page(HTMLParser):
    """An HTML page's <img> attributes, linked resources, <td> texts and title."""

    def __init__(self):
        super().__init__()
        self.images, self.links, self.cells, self.title = [], [], [], ""
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        if tag in ("a", "link", "script") and (attrs.get("href") or attrs.get("src")):
            self.links.append(attrs)
        self._in = tag

    def handle_data(self, text):
        if self._in == "td":
            self.cells.append(text)
        if self._in == "title":
            self.title += text


PLOT_FILES = ["fitness.png", "pareto.png", "elites.png", "quality.png"]
GRID_FILES = ["best-samples.png", "real-images.png"]  # the fittest chromosome's samples, real training images
REPORT_FILES = PLOT_FILES + GRID_FILES + ["report.html"]


def assert_report_written(p: subprocess.CompletedProcess, out: Path) -> None:
    """`neuroevo report --out out` printed the paths of its files, and its plots and grids are real PNGs of a
    readable size."""
    from PIL import Image

    from neuroevo.analysis import report

    assert p.stdout.split() == [str(out / n) for n in REPORT_FILES]
    for name in PLOT_FILES + GRID_FILES:
        with Image.open(out / name) as img:
            img.verify()
            assert img.format == "PNG"
            assert img.size[0] > 400 and img.size[1] > 150 if name in PLOT_FILES else max(img.size) >= report.GRID_PX


def assert_enlarged(png: bytes, original: bytes) -> None:
    """png is the grid image `original` enlarged by a whole factor, every pixel a square of pixels, to at least
    report.GRID_PX a side."""
    import io

    import numpy as np
    from PIL import Image

    from neuroevo.analysis import report

    with Image.open(io.BytesIO(png)) as big, Image.open(io.BytesIO(original)) as small:
        k = big.width // small.width
        assert k >= 1 and big.size == (k * small.width, k * small.height) and max(big.size) >= report.GRID_PX
        assert np.array_equal(np.asarray(big)[::k, ::k], np.asarray(small))


# A stand-in for the Inception network in quality tests: features in milliseconds, not seconds.


class StandIn(torch.nn.Module):
    """N x 3 x 299 x 299 -> N x 16: a fixed random projection of the image's 4 x 4 mean colours."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3 * 4 * 4, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1))


@pytest.fixture(scope="session")
def standin(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("extractor") / "standin.pt"
    torch.jit.script(StandIn().eval()).save(str(path))
    return str(path)
