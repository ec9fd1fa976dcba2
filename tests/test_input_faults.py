"""Inputs a user can get wrong after a run: a weights file that is malicious or not torch's, an --n no grid holds;
each one line naming the file or option, exit 2, nothing run and nothing written. And the batched sample grid is
torchvision's save_image of all n images at once, byte for byte."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision.utils as vutils

from neuroevo.analysis import report
from neuroevo.space import registry, v2
from neuroevo.store import rundir
from neuroevo.train import checkpoint, model
from tests.conftest import neuroevo


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A real one-generation demo run (no Ray needed by the commands below)."""
    out = tmp_path_factory.mktemp("runs")
    p = neuroevo("run", "demo", "--quiet", "--set", f"out_dir={out}", "--set", "run_id=r", "--set",
                 "evolve.population=2", "--set", "evolve.generations=1", "--set", "train.epochs=1", "--set",
                 "train.steps_per_epoch=1", "--set", "train.sample_grid=4", "--set", "resources.num_cpus=1")
    assert p.returncode == 0, p.stderr
    return out / "r"


class Payload:
    """Unpickled, it would run a shell command."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def malicious(path: Path, marker: Path) -> Path:
    torch.save({"chromosome": Payload(f"touch {marker}"), "generator": {}}, path)
    return path


@pytest.mark.slow
def test_the_malicious_file_is_armed(tmp_path):
    """Without weights_only the payload runs: the file the tests below use would do harm."""
    marker = tmp_path / "ran"
    path = malicious(tmp_path / "w.pt", marker)
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(path)!r}, weights_only=False)"], check=True)
    assert marker.exists()


def swapped(run_dir: Path, tmp_path: Path, content: bytes) -> Path:
    """A copy of the run whose best weights file holds `content`."""
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    rundir.best_weights(copy, 0).write_bytes(content)
    return copy


def bad_files(tmp_path: Path) -> dict[str, bytes]:
    marker = tmp_path / "ran"
    good = (tmp_path / "good.pt")
    torch.save([1, 2, 3], good)
    return {
        "malicious": malicious(tmp_path / "m.pt", marker).read_bytes(),
        "garbage": b"not a weights file\n" * 20,
        "empty": b"",
        "truncated": malicious(tmp_path / "t.pt", marker).read_bytes()[:200],
        "a torch file of something else": good.read_bytes(),
    }


EXPECTED = {
    "malicious": "refused by torch.load(weights_only=True): Trying to load unsupported GLOBAL posix.system",
    "garbage": "refused by torch.load(weights_only=True): Unsupported operand 110",  # b"n", read as a pickle
    "empty": "not a torch weights file (EOFError",
    "truncated": "not a torch weights file (RuntimeError: PytorchStreamReader failed reading zip archive",
    "a torch file of something else": "not the weights of a neuroevo generator (TypeError",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(EXPECTED))
@pytest.mark.parametrize("command", ["sample", "score"])
def test_a_bad_weights_file_is_one_line_naming_it(run_dir, tmp_path, kind, command):
    copy = swapped(run_dir, tmp_path, bad_files(tmp_path)[kind])
    out = tmp_path / "grid.png"
    p = neuroevo(command, copy, *(["--out", out] if command == "sample" else []))
    weights = rundir.best_weights(copy, 0)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    line, = p.stderr.strip().splitlines()
    assert line.startswith(f"neuroevo: error: {weights}: {EXPECTED[kind]}"), line
    assert not (tmp_path / "ran").exists() and not out.exists()


@pytest.mark.slow
def test_score_stops_at_the_weights_before_the_reference(run_dir, tmp_path):
    """A bad file is found before the real images' reference statistics are computed (minutes on big data)."""
    copy = swapped(run_dir, tmp_path, b"garbage")
    p = neuroevo("score", copy)
    assert p.returncode == 2 and "quality: reference statistics" not in p.stdout


def test_load_generator_of_bytes_names_them(tmp_path):
    with pytest.raises(checkpoint.WeightsError, match=r"^weights: refused by torch.load\(weights_only=True\)"):
        checkpoint.load_generator(__import__("io").BytesIO(malicious(tmp_path / "m.pt", tmp_path / "ran").read_bytes()))
    assert not (tmp_path / "ran").exists()


@pytest.mark.slow
@pytest.mark.parametrize("n", [report.MAX_SAMPLES + 1, 10**9])
def test_sample_n_beyond_the_maximum_is_one_line(run_dir, tmp_path, n):
    out = tmp_path / "grid.png"
    p = neuroevo("sample", run_dir, "--n", n, "--out", out)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr == f"neuroevo: error: --n: {n:,} images is more than one grid holds (at most 10,000)\n"
    assert not out.exists()


@pytest.mark.slow
def test_sample_at_the_maximum_works(run_dir, tmp_path):
    out = tmp_path / "grid.png"
    p = neuroevo("sample", run_dir, "--n", report.MAX_SAMPLES, "--out", out)
    assert p.returncode == 0, p.stderr
    from PIL import Image

    with Image.open(out) as img:  # 100 x 100 images of 16 px, 2 px apart
        assert img.size == (100 * 18 + 2, 100 * 18 + 2)


def save_image_of_all(weights: Path, n: int, seed: int, out: Path) -> None:
    """What `sample` wrote before it drew in batches: every image through G at once, then save_image."""
    ch, G = checkpoint.load_generator(weights)
    with torch.no_grad():
        images = G(model.noise(ch, n, generator=torch.Generator().manual_seed(seed)))
    vutils.save_image(images, out, nrow=math.ceil(math.sqrt(n)), normalize=True,
                      value_range=registry.plan(ch).output_range)


@pytest.mark.parametrize("channels, output", [(3, "tanh"), (1, "tanh"), (3, "sigmoid")])
def test_the_batched_grid_is_save_images_byte_for_byte(tmp_path, channels, output):
    import dataclasses

    ch = v2.dcgan(16, channels)
    ch = dataclasses.replace(ch, g_out=dataclasses.replace(ch.g_out, activation=output))
    G, D = model.build(ch)
    weights = tmp_path / "w.pt"
    torch.save({"chromosome": ch.to_json(), "generator": G.state_dict(), "discriminator": D.state_dict()}, weights)
    for n in (1, 2, 5, 9, 64, report.SAMPLE_BATCH + 1):
        for suffix in (".png", ".jpg"):
            save_image_of_all(weights, n, 7, tmp_path / f"all{suffix}")
            report.sample(weights, n, 7, tmp_path / f"batched{suffix}")
            assert (tmp_path / f"all{suffix}").read_bytes() == (tmp_path / f"batched{suffix}").read_bytes(), (n, suffix)


@pytest.mark.slow
def test_a_run_where_no_chromosome_trains_says_so(tmp_path):
    """Every chromosome beyond train.max_loss: no best is named (no fitness 0, no missing samples path), exit 1."""
    p = neuroevo("run", "demo", "--quiet", "--set", f"out_dir={tmp_path}", "--set", "run_id=r", "--set",
                 "evolve.population=2", "--set", "evolve.generations=1", "--set", "train.epochs=1", "--set",
                 "train.steps_per_epoch=1", "--set", "train.sample_grid=4", "--set", "resources.num_cpus=1",
                 "--set", "train.max_loss=0.001")
    assert p.returncode == 1, p.stderr
    assert "no chromosome trained (2 diverged)" in p.stderr
    assert "best chromosome" not in p.stdout and "\nsamples:" not in p.stdout
    assert "Traceback" not in p.stderr
