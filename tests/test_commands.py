"""`neuroevo best`, `report`, `sample` and `query` as a user runs them, on a real finished run of each preset
family: `demo` (search space seed-v1), `v2`, and `dcgan` (v2 with the chromosomes dcgan and dcgan_sn seeded into
generation 0, strategy mutation). Then the scaling of sampled images, on generators whose output is known.

Each run is a `neuroevo run` subprocess with its own local Ray; the next one starts as soon as the one before it
trains, so that one family's commands are checked while the others still train.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from neuroevo import config
from neuroevo.analysis import report
from neuroevo.space import registry, v2
from neuroevo.space.chromosome import Chromosome
from neuroevo.train import model
from tests.conftest import (
    GRID_FILES,
    PLOT_FILES,
    Page,
    assert_enlarged,
    assert_report_written,
    neuroevo,
    plain,
)

SIDE = 16  # image side of every run here
N_SAMPLES = 9  # train.sample_grid of every run, and the n of `neuroevo sample`: the grids are comparable
GRID = 3 * (SIDE + 2) + 2  # 9 images in rows of 3, with torchvision's 2 px padding around each: 56 x 56

COMMON = ["data.source=demo", f"data.image_size={SIDE}", "data.subset=128", "train.epochs=2",
          "train.steps_per_epoch=2", f"train.sample_grid={N_SAMPLES}", "evolve.population=3",
          "evolve.generations=2"]
V2 = ["space.channels=[8,16]", "space.fc_units=[16,32]", "space.start_side=[4,4]", "space.batch_size=16",
      "space.decay_epoch=[1,1]"]
FAMILIES = {
    "demo": ["space.channels=[5,8]", "space.d_hidden=[30,40]", "space.batch_size=16"],
    # sigmoid outputs only, so that this run's samples are the [0, 1] kind; the dcgan run keeps tanh and sigmoid
    "v2": V2 + ["space.outputs=[sigmoid]"],
    "dcgan": V2,
}


def overrides(family: str) -> list[str]:
    return COMMON + FAMILIES[family]


def set_args(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def fittest(df: pd.DataFrame) -> pd.Series:
    """The fittest row that trained, ties to the earlier generation, then the smaller id: pandas alone."""
    ok = df[df.status == "ok"]
    return ok.sort_values(["fitness", "generation", "chromosome_id"], ascending=[False, True, True]).iloc[0]


def no_traceback(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-5000:]}"


# --- the configs these runs use ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_config_validates_and_keeps_its_preset(family):
    cfg = config.load(family, overrides(family))
    assert cfg.data.image_size == SIDE and cfg.evolve.population == 3 and cfg.evolve.generations == 2
    assert cfg.space.name == ("seed-v1" if family == "demo" else "v2")
    if family == "dcgan":
        assert cfg.evolve.seed_chromosomes == ("dcgan", "dcgan_sn") and cfg.evolve.strategy == "mutation"
    else:
        assert not cfg.evolve.seed_chromosomes and cfg.evolve.strategy == "random"


def test_the_dcgan_seed_fits_16px_images():
    cfg = config.load("dcgan", overrides("dcgan"))
    ch = v2.dcgan(SIDE, 3, cfg.space.batch_size)
    assert v2.g_sides(ch) == [4, 8, 16]  # 128x4x4 -> 64x8x8 -> 3x16x16
    assert v2.d_sides(ch) == [8, 4] and registry.plan(ch).d_features == 128 * 4 * 4
    G, D = model.build(ch)
    fake = G(model.noise(ch, 2))
    assert fake.shape == (2, 3, SIDE, SIDE) and D(fake)[1].shape == (2,)
    assert (model.count_params(G), model.count_params(D)) == registry.param_counts(ch)


# --- one real run per family, through the CLI ----------------------------------------------------------------


class Runs:
    """The three `neuroevo run` subprocesses, started in the background one after the other: each once the one
    before it trains, so that no two Ray instances start at once on a loaded machine, and the tests of one family
    run while the next families train."""

    def __init__(self, root: Path):
        self.root, self.procs, self.stopping = root, {}, threading.Event()
        self.launched = {family: threading.Event() for family in FAMILIES}
        self.thread = threading.Thread(target=self._launch, daemon=True)
        self.thread.start()

    def _launch(self) -> None:
        for family in FAMILIES:
            if self.stopping.is_set():
                return
            logs, run_dir = self.root / f"{family}-log", self.root / "runs" / family
            logs.mkdir()
            with open(logs / "stdout", "w") as out, open(logs / "stderr", "w") as err:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "neuroevo", "run", family, "--quiet",
                     *set_args(overrides(family) + [f"out_dir={self.root / 'runs'}", f"run_id={family}"])],
                    stdout=out, stderr=err, cwd=self.root, start_new_session=True)
            self.procs[family] = (proc, run_dir, logs)
            self.launched[family].set()
            # Ray is up and the first generation submitted once state.json is written
            deadline = time.monotonic() + 180
            while (proc.poll() is None and not (run_dir / "state.json").exists() and time.monotonic() < deadline
                   and not self.stopping.is_set()):
                time.sleep(0.2)

    def finished(self, family: str) -> Path:
        assert self.launched[family].wait(timeout=600), f"neuroevo run {family} never started"
        proc, run_dir, logs = self.procs[family]
        rc = proc.wait(timeout=600)
        assert rc == 0, f"neuroevo run {family} exited {rc}:\n{(logs / 'stderr').read_text()[-5000:]}"
        return run_dir

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        for proc, _, _ in self.procs.values():
            if proc.poll() is None:  # a test failed before this run ended: end it and the Ray it started
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    r = Runs(tmp_path_factory.mktemp("commands"))
    yield r
    r.stop()


@pytest.fixture(scope="module", params=list(FAMILIES))
def run(request, runs):
    """(family, run directory) of a finished run."""
    return request.param, runs.finished(request.param)


@pytest.fixture(scope="module")
def history(run):
    df = plain(run[1])
    assert len(df) == 6 and (df.status == "ok").any()
    return df


def expected_layers(ch: Chromosome) -> tuple[int, int]:
    """Layers of G and of D, each one row of `neuroevo best`'s table."""
    if ch.space == "v2":  # FC layers, the projection, the blocks, the output / the score
        return len(ch.g_fc) + 1 + len(ch.g_blocks) + 1, len(ch.d_blocks) + len(ch.d_fc) + 1
    return len(ch.g_blocks) + 1, len(ch.d_blocks) + 2  # blocks, output / blocks, FC hidden, FC to 1


@pytest.mark.slow
def test_run_trained_the_family(run, history):
    family, run_dir = run
    assert sorted(history.generation.unique()) == [0, 1] and (history.groupby("generation").size() == 3).all()
    assert set(history.space) == {"seed-v1" if family == "demo" else "v2"}
    g0 = history[history.generation == 0]
    if family == "dcgan":  # the seeds, as v2.dcgan and v2.dcgan_sn build them at this size, in generation 0
        seed = g0[g0.operator == "seed"]
        assert sorted(seed.chromosome) == sorted([v2.dcgan(SIDE, 3, 16).to_json(), v2.dcgan_sn(SIDE, 3, 16).to_json()])
        assert set(history[(history.generation == 1) & ~history.is_elite].operator) == {"mutation"}
    if family == "v2":
        assert {json.loads(c)["g_out"]["activation"] for c in history.chromosome} == {"sigmoid"}


@pytest.mark.slow
def test_best_lays_out_the_fittest_chromosome(run, history):
    family, run_dir = run
    p = neuroevo("best", run_dir)
    assert p.returncode == 0 and "Traceback" not in p.stderr, no_traceback(p)
    top = fittest(history)
    ch = registry.from_json(top.chromosome)
    lines = p.stdout.splitlines()
    assert top.chromosome_id in lines[0] and f"generation {top.generation}" in lines[0], lines[0]
    assert f"{top.fitness:.4f}" in p.stdout

    # the layer table: one row per layer of G, then of D
    rows = [(m.group(1), line) for line in lines if (m := re.match(r"^\s*([GD])\s+\S", line))]
    g_rows = [line for net, line in rows if net == "G"]
    d_rows = [line for net, line in rows if net == "D"]
    assert (len(g_rows), len(d_rows)) == expected_layers(ch), p.stdout
    assert [net for net, _ in rows] == ["G"] * len(g_rows) + ["D"] * len(d_rows)
    # G's output layer: the image side reached, with the output activation
    out_activation = ch.g_out.activation if ch.space == "v2" else "tanh"
    assert out_activation in g_rows[-1].lower(), g_rows[-1]
    assert re.search(rf"(?<![\d.]){SIDE}(?![\d.])", g_rows[-1]), g_rows[-1]

    # the optimiser each network trains with, by name
    optimisers = " ".join(line for line in lines if line.lower().startswith("optimiser"))
    names = [o.name for o in ch.optimisers]
    for net, name in zip("GD", names):
        m = re.search(rf"\b{net}\b\W+(sgd|adam)\b", optimisers, re.IGNORECASE)
        assert m and m.group(1).lower() == name, (net, name, optimisers)

    samples = re.search(r"^samples\s+(\S+)$", p.stdout, re.MULTILINE).group(1)
    assert samples.endswith(f"best/generation={top.generation:04d}/samples.png")
    assert Image.open(samples).format == "PNG"


@pytest.mark.slow
def test_report_writes_valid_plots_and_a_page_with_the_fittest_first(run, history, tmp_path):
    family, run_dir = run
    out = tmp_path / "rep"
    p = neuroevo("report", run_dir, "--out", out)
    assert p.returncode == 0 and "Traceback" not in p.stderr, no_traceback(p)
    assert_report_written(p, out)

    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert not page.links
    srcs = [img["src"] for img in page.images]
    # the plots, the fittest's samples beside real images, then each generation's best samples
    assert len(srcs) == 4 + 2 + 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    pngs = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    for png in pngs:
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG"
            img.verify()
    assert pngs[:6] == [(out / n).read_bytes() for n in PLOT_FILES + GRID_FILES]
    for png, g in zip(pngs[6:], (0, 1)):
        assert_enlarged(png, (report.best_dir(run_dir, g) / "samples.png").read_bytes())

    # the top table: every distinct chromosome that trained, the run's fittest first
    ok = history[history.status == "ok"].sort_values(["fitness", "generation", "chromosome_id"],
                                                      ascending=[False, True, True])
    ids = [c for c in page.cells if re.fullmatch(r"[0-9a-f]{12}", c)]
    assert ids[0] == fittest(history).chromosome_id
    assert ids == ok.drop_duplicates("chromosome_id").chromosome_id.tolist()


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB")).astype(int)


def assert_same_pixels(drawn: np.ndarray, saved: np.ndarray, what: str) -> None:
    """Equal but for a pixel that rounds the other way (a different thread count gives other float rounding)."""
    assert drawn.shape == saved.shape, what
    diff = np.abs(drawn - saved).max()
    assert diff <= 1, (f"{what}: up to {diff} levels off the saved grid; mean pixel {drawn.mean():.1f}, saved "
                       f"{saved.mean():.1f}")


@pytest.mark.slow
def test_sample_draws_the_best_generators_grid_again(run, history, tmp_path):
    """The best's saved grid was drawn with its task seed; `sample` with that seed and n draws the same images,
    scaled from the generator's output range (tanh or sigmoid) alike."""
    family, run_dir = run
    top = fittest(history)
    p = neuroevo("sample", run_dir, "--n", N_SAMPLES, "--seed", top.task_seed, "--out", tmp_path / "grid.png")
    assert p.returncode == 0 and "Traceback" not in p.stderr, no_traceback(p)
    assert f"{N_SAMPLES} samples of 3x{SIDE}x{SIDE}" in p.stdout and top.chromosome_id in p.stdout
    with Image.open(tmp_path / "grid.png") as img:
        assert img.format == "PNG" and img.size == (GRID, GRID) and img.mode == "RGB"
    drawn = read_png(tmp_path / "grid.png")
    saved = read_png(report.best_dir(run_dir, int(top.generation)) / "samples.png")
    assert drawn[2:2 + SIDE, 2:2 + SIDE].std() > 0  # an image, not blank padding
    assert_same_pixels(drawn, saved, f"neuroevo sample of {top.chromosome_id}")

    # every generation's best, through the public function
    for g in (0, 1):
        best = report.best_dir(run_dir, g)
        cid = registry.from_json((best / "chromosome.json").read_text()).id
        row = history[(history.generation == g) & (history.chromosome_id == cid)].iloc[0]
        report.sample(best / "weights.pt", N_SAMPLES, int(row.task_seed), tmp_path / f"g{g}.png")
        assert_same_pixels(read_png(tmp_path / f"g{g}.png"), read_png(best / "samples.png"), f"generation {g}'s best")


@pytest.mark.slow
def test_export_writes_a_generator_that_draws_the_same_images_without_neuroevo(run, history, tmp_path):
    """The exported TorchScript file, loaded where neuroevo cannot be imported, draws from the same noise the images
    `sample` draws; the safetensors file holds the same weights."""
    from safetensors.torch import load_file

    family, run_dir = run
    top = fittest(history)
    out = tmp_path / "export"
    p = neuroevo("export", run_dir, "--out", out)
    assert p.returncode == 0 and "Traceback" not in p.stderr, no_traceback(p)
    assert sorted(f.name for f in out.iterdir()) == ["generator.json", "generator.pt", "generator.safetensors"]
    meta = json.loads((out / "generator.json").read_text())
    assert meta["chromosome_id"] == top.chromosome_id and meta["image_shape"] == [3, SIDE, SIDE]
    code = ("import json, sys, torch\n"
            "sys.modules['neuroevo'] = None  # any import of neuroevo fails from here on\n"
            "G = torch.jit.load(sys.argv[1] + '/generator.pt')\n"
            "shape = json.load(open(sys.argv[1] + '/generator.json'))['noise_shape']\n"
            "z = torch.randn(int(sys.argv[2]), *shape, generator=torch.Generator().manual_seed(int(sys.argv[3])))\n"
            "with torch.no_grad():\n"
            "    torch.save(G(z), sys.argv[1] + '/images.pt')\n")
    q = subprocess.run([sys.executable, "-c", code, str(out), str(N_SAMPLES), str(top.task_seed)], cwd=tmp_path,
                       capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    weights = report.best_dir(run_dir, int(top.generation)) / "weights.pt"
    _, expected = report.draw(weights, N_SAMPLES, int(top.task_seed))
    torch.testing.assert_close(torch.load(out / "images.pt"), expected, rtol=0, atol=1e-6)
    saved = torch.load(weights, weights_only=True)["generator"]
    exported = load_file(out / "generator.safetensors")
    assert exported.keys() == saved.keys() and all(torch.equal(exported[k], saved[k]) for k in saved)


@pytest.mark.slow
def test_query_json_rows_equal_pandas(run, history):
    family, run_dir = run
    p = neuroevo("query", run_dir, "--where", "status = 'ok'", "--format", "json")
    assert p.returncode == 0 and "Traceback" not in p.stderr, no_traceback(p)
    rows = json.loads(p.stdout)
    want = history[history.status == "ok"].sort_values(["generation", "chromosome_id"])
    assert len(rows) == len(want) > 0
    assert [list(r) for r in rows[:1]] == [["run_id", "generation", "chromosome_id", "is_elite", "params",
                                            "d_loss", "g_loss", "fitness", "status"]]
    got = pd.DataFrame(rows)
    assert got.run_id.tolist() == [family] * len(want)
    for col in ("generation", "chromosome_id", "is_elite", "d_loss", "g_loss", "fitness", "status"):
        assert got[col].tolist() == want[col].tolist(), col
    assert got.params.tolist() == (want.params_g + want.params_d).tolist()


# --- sampled images are scaled from the generator's output range ---------------------------------------------


def constant_generator(tmp_path: Path, activation: str, value: float) -> Path:
    """A weights file, as train.weights writes it, of a 16 px DCGAN generator whose output layer has the given
    activation and zero weights, and a bias that makes every pixel `value`."""
    ch = v2.dcgan(SIDE, 3)
    ch = dataclasses.replace(ch, g_out=dataclasses.replace(ch.g_out, activation=activation))
    assert registry.plan(ch).output_range == ((0.0, 1.0) if activation == "sigmoid" else (-1.0, 1.0))
    G, D = model.build(ch)
    out = G.convs[-1].main[0]  # the output ConvTranspose, with a bias (no norm follows it)
    assert isinstance(out, torch.nn.ConvTranspose2d) and out.out_channels == 3 and out.bias is not None
    with torch.no_grad():
        out.weight.zero_()
        out.bias.fill_(math.log(value / (1 - value)) if activation == "sigmoid" else math.atanh(value))
    G.eval()
    assert torch.allclose(G(model.noise(ch, 2)), torch.full((2, 3, SIDE, SIDE), value), atol=1e-6)
    path = tmp_path / f"{activation}.pt"
    torch.save({"chromosome": ch.to_json(), "generator": G.state_dict(), "discriminator": D.state_dict()}, path)
    return path


def assert_grid_of(png: Path, n: int, level: int) -> None:
    """n images in rows of ceil(sqrt(n)), every pixel of every image `level`, the 2 px padding black."""
    per_row = math.ceil(math.sqrt(n))
    rows = math.ceil(n / per_row)
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (per_row * (SIDE + 2) + 2, rows * (SIDE + 2) + 2)
        pixels = np.asarray(img.convert("RGB"))
    mask = np.zeros(pixels.shape[:2], dtype=bool)
    for i in range(n):
        r, c = divmod(i, per_row)
        y, x = 2 + r * (SIDE + 2), 2 + c * (SIDE + 2)
        mask[y:y + SIDE, x:x + SIDE] = True
    assert sorted(set(pixels[mask].ravel().tolist())) == [level]
    assert sorted(set(pixels[~mask].ravel().tolist())) == [0]


@pytest.mark.parametrize("activation, value, level", [
    ("sigmoid", 0.25, round(255 * 0.25)),  # 64; as if it were tanh's [-1, 1] it would be 159
    ("sigmoid", 0.8, round(255 * 0.8)),  # 204
    ("tanh", 0.5, round(255 * (0.5 + 1) / 2)),  # 191
    ("tanh", -0.6, round(255 * (-0.6 + 1) / 2)),  # 51; clamped as if it were sigmoid's [0, 1] it would be 0
])
def test_sample_scales_the_generators_output_range_to_pixels(tmp_path, activation, value, level):
    weights = constant_generator(tmp_path, activation, value)
    ch = report.sample(weights, 4, 0, tmp_path / "grid.png")
    assert ch.g_out.activation == activation
    assert_grid_of(tmp_path / "grid.png", 4, level)
