"""Datasets: image folders and CIFAR prepared once into the on-disk cache, and shared zero-copy by training tasks."""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
import torch
import yaml
from PIL import Image

from neuroevo import config
from neuroevo.config import DataConfig
from neuroevo.errors import ConfigError
from neuroevo.train import data, trainer
from tests.conftest import CIFAR_SUBSET, needs_cifar_subset, neuroevo, tiny_dict

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this module

CIFAR_ROOT = os.environ.get("NEUROEVO_CIFAR_ROOT")  # a torchvision CIFAR root: cifar-10-batches-py/, cifar-100-python/


def folder_cfg(root, cache, **kw) -> DataConfig:
    return DataConfig(**{"source": "folder", "root": str(root), "image_size": 8, "cache_dir": str(cache), **kw})


def grey_folder(root: Path, n_per_class=20, corrupt=()) -> Path:
    """Two classes of solid grey PNGs whose value is their index (0, 3, 6, ...): rows are easy to name."""
    for i in range(2 * n_per_class):
        path = root / ("a" if i < n_per_class else "b") / f"{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        if i in corrupt:
            path.write_bytes(b"not a png")
        else:
            Image.new("L", (8, 8), i * 3).save(path)
    return root


def values(images: data.Images) -> list[int]:
    return [int(v) // 3 for v in images.array[:, 0, 0, 0]]


# ---- the real CIFAR-10 images as an image folder -----------------------------------------------------------


@needs_cifar_subset
@pytest.mark.parametrize("size", [32, 64])
def test_cifar_subset_as_an_image_folder(tmp_path, size):
    images = data.load(folder_cfg(CIFAR_SUBSET, tmp_path, image_size=size), progress=False)
    assert images.array.shape == (4660, 3, size, size) and images.array.dtype == np.uint8
    assert images.classes == tuple(sorted(p.name for p in CIFAR_SUBSET.iterdir())) and len(images.classes) == 10
    assert images.skipped == 0 and not images.warnings
    assert not images.array.flags.writeable  # a read-only map of the cache
    real = trainer.to_unit_range(images.array[np.arange(256)], torch.device("cpu"))
    assert real.min() >= -1 and real.max() <= 1 and real.min() < -0.9 and real.max() > 0.9
    first = sorted((CIFAR_SUBSET / images.classes[0]).iterdir())[0]
    assert np.array_equal(images.array[0], data.to_array(Image.open(first), size, 3))
    assert images.cache.path.startswith(str(tmp_path)) and f"{size}px" in images.cache.path


@needs_cifar_subset
def test_cache_is_reused_then_prepared_again_when_a_file_changes(tmp_path):
    root = tmp_path / "train"
    shutil.copytree(CIFAR_SUBSET, root)
    cfg = folder_cfg(root, tmp_path / "cache", image_size=32)
    first = data.load(cfg, progress=False)
    again = data.load(cfg, progress=False)
    assert not first.manifest["reused"] and again.manifest["reused"]
    assert again.cache == first.cache and again.manifest["prepared_at"] == first.manifest["prepared_at"]
    assert "(reused)" in again.description

    # one airplane becomes a copy of a truck: the cache is prepared again and holds the new pixels
    airplane, truck = sorted((root / "airplane").iterdir())[0], sorted((root / "truck").iterdir())[0]
    shutil.copyfile(truck, airplane)
    changed = data.load(cfg, progress=False)
    assert not changed.manifest["reused"] and changed.cache.path != first.cache.path
    assert np.array_equal(changed.array[0], changed.array[-len(list((root / "truck").iterdir()))])
    assert not Path(first.cache.path).exists()  # the stale cache is gone
    assert np.array_equal(first.array[1:], changed.array[1:])  # an open map of it still reads

    Image.new("RGB", (32, 32), "red").save(root / "truck" / "new.png")
    assert len(data.load(cfg, progress=False).array) == 4661


@pytest.mark.slow
@needs_cifar_subset
def test_a_killed_preparation_is_never_trusted(tmp_path):
    """SIGKILL in the middle of `neuroevo prepare`: no manifest, and the next load prepares it whole."""
    cache = tmp_path / "cache"
    cfg = tmp_path / "big.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"source": "folder", "root": str(CIFAR_SUBSET), "image_size": 128,
                                            "cache_dir": str(cache)}}))
    p = subprocess.Popen([sys.executable, "-m", "neuroevo", "prepare", str(cfg)], cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(cache.glob(".*.tmp")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.005)
    assert p.poll() is None, "preparation ended before it could be interrupted"
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert list(cache.glob(".*.tmp")) and not list(cache.glob("*.json")) and not list(cache.glob("*.npy"))

    images = data.load(config.load(str(cfg)).data, progress=False)
    assert not images.manifest["reused"] and images.array.shape == (4660, 3, 128, 128)
    assert not list(cache.glob(".*.tmp"))  # the killed run's leftovers are cleared


@pytest.mark.slow
def test_runs_that_need_the_same_cache_prepare_it_once(tmp_path):
    """Two `neuroevo prepare` wait on the cache's lock (held here); once it is free, one prepares, one reuses."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"source": "folder", "root": str(grey_folder(tmp_path / "grey", 40)),
                                            "image_size": 32, "cache_dir": str(tmp_path / "cache")}}))
    key = data.cache_key(config.load(str(cfg)).data, tmp_path / "grey", seed=0)
    (tmp_path / "cache").mkdir()
    with open(tmp_path / "cache" / f"{key}.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        runs = [subprocess.Popen([sys.executable, "-m", "neuroevo", "prepare", str(cfg)], cwd=tmp_path, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
        for p in runs:
            assert f"waiting for another process to prepare {key}" in p.stderr.readline()
        fcntl.flock(held, fcntl.LOCK_UN)
    out = [p.communicate(timeout=120)[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0]
    assert sorted("(reused)" in stdout for stdout in out) == [False, True]
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1


# ---- generated folders: modes, shapes, corrupt files, bad roots --------------------------------------------


def test_modes_and_shapes_become_the_configured_channels(tmp_path):
    root = tmp_path / "mixed"
    (root / "a").mkdir(parents=True)
    (root / "b" / "nested").mkdir(parents=True)
    (root / "empty").mkdir()
    wide = Image.new("RGB", (32, 16), "green")
    wide.paste((255, 0, 0), (0, 0, 8, 16))
    wide.paste((0, 0, 255), (24, 0, 32, 16))
    wide.save(root / "a" / "wide.png")  # red | green | blue: the centre square is all green
    Image.new("L", (20, 20), 200).save(root / "a" / "grey.png")
    Image.new("RGBA", (10, 10), (10, 20, 30, 0)).save(root / "a" / "alpha.png")
    Image.new("P", (12, 12), 3).save(root / "b" / "palette.gif", transparency=3)
    Image.new("RGB", (40, 30), (90, 60, 30)).save(root / "b" / "nested" / "photo.jpg", quality=95)
    (root / "b" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthen nothing")
    jpeg = root / "b" / "truncated.jpg"
    Image.new("RGB", (64, 64), "blue").save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    (root / "b" / "notes.txt").write_text("not an image")

    rgb = data.load(folder_cfg(root, tmp_path / "cache"), progress=False)
    assert rgb.array.shape == (5, 3, 8, 8) and rgb.classes == ("a", "b")
    assert rgb.skipped == 2 and rgb.manifest["skipped"] == 2
    assert any(f.startswith("b/corrupt.png: ") for f in rgb.manifest["skipped_files"])
    assert [w.split(" ")[0] for w in rgb.warnings] == ["2", "1", "1"]  # skipped, empty class, not images
    assert "could not be decoded and were skipped" in rgb.warnings[0] and "hold no images" in rgb.warnings[1]
    by_name = dict(zip(["alpha", "grey", "wide", "palette", "photo"], rgb.array))
    assert (by_name["wide"][1] > 100).all() and (by_name["wide"][[0, 2]] < 30).all()  # green: aspect kept
    assert (by_name["grey"] == 200).all()
    assert tuple(by_name["alpha"][:, 0, 0]) == (10, 20, 30)
    assert np.abs(by_name["photo"][:, 4, 4].astype(int) - [90, 60, 30]).max() <= 3

    grey = data.load(folder_cfg(root, tmp_path / "cache", channels=1), progress=False)
    assert grey.array.shape == (5, 1, 8, 8) and (grey.array[1] == 200).all()
    assert grey.cache.path != rgb.cache.path


def test_bad_roots_are_one_line_errors(tmp_path):
    cache = tmp_path / "cache"
    (tmp_path / "files").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "files" / "x.png")
    (tmp_path / "no_images" / "cls").mkdir(parents=True)
    grey_folder(tmp_path / "all_corrupt", n_per_class=2, corrupt=range(4))
    for root, message in [
        (tmp_path / "missing", f"data.root: {tmp_path / 'missing'} is not a directory"),
        (tmp_path / "files", "has no class sub-folders (expected root/<class>/<image>)"),
        (tmp_path / "no_images", "has no image files (.png"),
        (tmp_path / "all_corrupt", "data.root: none of the 4 files under"),
    ]:
        with pytest.raises(data.DataError) as e:
            data.load(folder_cfg(root, cache), progress=False)
        assert message in str(e.value) and "\n" not in str(e.value)
    assert not list(cache.glob("*.json")) and not list(cache.glob("*.npy")) and not list(cache.glob(".*"))


def test_subsets_first_and_random(tmp_path):
    root = grey_folder(tmp_path / "grey", corrupt=[3])
    cache = tmp_path / "cache"
    first = data.load(folder_cfg(root, cache, channels=1, subset=8), progress=False)
    assert values(first) == [0, 1, 2, 4, 5, 6, 7, 8]  # the corrupt file is replaced by the next one
    assert first.skipped == 1

    draw = [data.load(folder_cfg(root, cache, channels=1, subset=8, subset_pick="random"), seed, progress=False)
            for seed in (0, 0, 1)]
    assert values(draw[0]) == values(draw[1]) != values(draw[2])
    assert draw[1].manifest["reused"] and draw[0].cache == draw[1].cache != draw[2].cache
    assert len(set(values(draw[0]))) == 8 and 3 not in values(draw[0]) + values(draw[2])
    assert set(values(draw[0])) != set(range(9)) - {3}  # not simply the first ones

    everything = data.load(folder_cfg(root, cache, channels=1), progress=False)
    assert len(everything.array) == 39 and len({first.cache, draw[0].cache, everything.cache}) == 3


# ---- CIFAR through torchvision ------------------------------------------------------------------------------


@pytest.mark.parametrize("source, folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_cifar_absent_names_the_path_and_the_fix(tmp_path, source, folder):
    with pytest.raises(data.DataError) as e:
        data.load(DataConfig(source=source, root=str(tmp_path), cache_dir=str(tmp_path)), progress=False)
    assert str(e.value) == (f"data.root: no {source} at {tmp_path / folder}; set data.download=true to fetch it "
                            f"there, or point data.root at a folder holding {folder}/")


@pytest.mark.skipif(not CIFAR_ROOT, reason="set NEUROEVO_CIFAR_ROOT to a torchvision CIFAR root to load real CIFAR")
@pytest.mark.parametrize("source, folder, classes", [("cifar10", "cifar-10-batches-py", 10),
                                                     ("cifar100", "cifar-100-python", 100)])
def test_real_cifar_from_a_torchvision_root(tmp_path, source, folder, classes):
    if not (Path(CIFAR_ROOT) / folder).is_dir():
        pytest.skip(f"no {folder} under NEUROEVO_CIFAR_ROOT={CIFAR_ROOT}")
    cfg = DataConfig(source=source, root=CIFAR_ROOT, image_size=16, subset=300, subset_pick="random",
                     cache_dir=str(tmp_path))
    images = data.load(cfg, seed=0, progress=False)
    assert images.array.shape == (300, 3, 16, 16) and len(images.classes) == classes and images.skipped == 0
    assert images.array.std() > 10  # real pictures, not a constant
    assert data.load(cfg, seed=0, progress=False).manifest["reused"]


# ---- how tasks read the images ----------------------------------------------------------------------------


@ray.remote(num_cpus=1)
def _read_in_task(images) -> dict:
    """Run as a Ray task: attach the images and say which memory mapping of this process holds them."""
    array = data.attach(images)
    time.sleep(1.0)  # both tasks hold the images at once, in two worker processes
    address = array.ctypes.data
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, perms, _, dev, inode, *path = line.split(maxsplit=5)
        lo, hi = (int(x, 16) for x in span.split("-"))
        if lo <= address < hi:
            return {"pid": os.getpid(), "writeable": array.flags.writeable, "sum": int(array.sum(dtype=np.int64)),
                    "perms": perms, "file": (dev, inode), "path": path[0] if path else ""}
    raise LookupError(hex(address))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
@pytest.mark.parametrize("in_memory", [True, False])
def test_two_tasks_share_one_copy(ray_local, tmp_path, in_memory):
    images = data.load(folder_cfg(grey_folder(tmp_path / "grey"), tmp_path / "cache", image_size=64), progress=False)
    shared = data.for_tasks(images, folder_cfg(tmp_path, tmp_path, in_memory=in_memory))
    assert isinstance(shared, data.Cache) != in_memory
    arg = ray.put(shared) if in_memory else shared  # what evolve() hands to its tasks
    a, b = ray.get([_read_in_task.remote(arg), _read_in_task.remote(arg)])
    assert a["pid"] != b["pid"]
    assert a["sum"] == b["sum"] == int(images.array.sum(dtype=np.int64))
    assert not a["writeable"] and not b["writeable"]
    # the array lies in a shared file mapping (not the task's own heap), the same file in both processes
    assert "s" in a["perms"] and "s" in b["perms"] and a["file"] == b["file"]
    if not in_memory:
        assert a["path"] == b["path"] == images.cache.path


def test_in_memory_auto_follows_the_size(tmp_path, monkeypatch):
    images = data.load(folder_cfg(grey_folder(tmp_path / "grey"), tmp_path), progress=False)
    assert isinstance(data.for_tasks(images, folder_cfg(tmp_path, tmp_path)), np.ndarray)  # tiny: object store
    monkeypatch.setattr(data, "IN_MEMORY_FRACTION", 0.0)
    assert isinstance(data.for_tasks(images, folder_cfg(tmp_path, tmp_path)), data.Cache)
    demo = data.load(DataConfig(source="demo", image_size=8, subset=40))
    assert isinstance(data.for_tasks(demo, DataConfig(source="demo", in_memory=False)), np.ndarray)  # generated
    with pytest.raises(data.DataError, match="is not on node .* run `neuroevo prepare`"):
        data.Cache(str(tmp_path / "gone.npy"), (1, 3, 8, 8)).open()


# ---- flip ---------------------------------------------------------------------------------------------------


def test_random_hflip_mirrors_about_half_and_is_seeded():
    batch = torch.arange(64 * 2 * 3 * 5, dtype=torch.float32).reshape(64, 2, 3, 5)
    out = trainer.random_hflip(batch, torch.Generator().manual_seed(0))
    mirrored = [bool(torch.equal(o, b.flip(2))) for o, b in zip(out, batch)]
    kept = [bool(torch.equal(o, b)) for o, b in zip(out, batch)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image is itself or its mirror
    assert 16 < sum(mirrored) < 48
    assert torch.equal(out, trainer.random_hflip(batch, torch.Generator().manual_seed(0)))


# ---- config and the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (["data.subset_pick=random", "data.subset=null"], "data.subset_pick: random needs data.subset"),
    (["data.in_memory=maybe"], "data.in_memory"),
    (["data.image_size=8"], "data.image_size 8px is too small for this search space (the smallest that fits is 13px)"),
])
def test_data_config_errors(overrides, message):
    with pytest.raises(ConfigError) as e:
        config.load("demo", overrides)
    assert message in str(e.value)


def test_data_config_values():
    cfg = config.load("demo", ["data.in_memory=false", "data.flip=true", "data.subset_pick=random"])
    assert cfg.data.in_memory is False and cfg.data.flip and cfg.data.subset_pick == "random"
    assert config.load("demo").data.in_memory == "auto"


@pytest.mark.parametrize("args, message", [
    (["--set", "data.root=missing"], "data.root: missing is not a directory"),
    (["--set", "data.root=empty"], "has no class sub-folders"),
    (["--set", "data.image_size=8"], "data.image_size 8px is too small for this search space"),
])
@pytest.mark.slow
def test_bad_data_stops_the_run_before_anything_is_written(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    p = neuroevo("run", "demo", "--set", "data.source=folder", *args, "--set", f"out_dir={tmp_path}/runs", cwd=tmp_path)
    assert p.returncode == 2 and message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_prepare_then_run_from_the_memory_map_with_skipped_files_logged(tmp_path):
    """Two tasks per generation train from a mapped cache, with flips; the skipped files reach data.json."""
    root = tmp_path / "pics"
    rng = np.random.default_rng(0)
    for i in range(70):
        path = root / f"class{i % 2}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(path)
    (root / "class0" / "bad.jpg").write_bytes(b"\xff\xd8 broken")
    (root / "class1" / "bad.png").write_bytes(b"")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_dict(
        data={"source": "folder", "root": str(root), "subset": None, "in_memory": False, "flip": True},
        evolve={"population": 2, "generations": 1, "elite_fraction": 0.5})))

    prep = neuroevo("prepare", str(cfg), cwd=tmp_path)
    assert prep.returncode == 0, prep.stderr
    assert "70 images in 2 classes at 12px (2 skipped)" in prep.stdout and "prepared in" in prep.stdout
    assert "data: warning: 2 files under" in prep.stdout

    p = neuroevo("run", str(cfg), "--set", f"out_dir={tmp_path}/runs", "--set", "run_id=mapped", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "(2 skipped)" in p.stdout and "(reused)" in p.stdout and "data: warning: 2 files under" in p.stdout
    assert "tasks read the images from memory map" in p.stdout
    run_dir = tmp_path / "runs" / "mapped"
    record = json.loads((run_dir / "data.json").read_text())
    assert record["skipped"] == 2 and record["images"] == 70 and record["tasks_read"] == "memory map"
    assert sorted(record["skipped_files"])[0].startswith(f"class0{os.sep}bad.jpg: ")
    df = pd.read_parquet(run_dir / "generations")
    assert len(df) == 2 and (df.status == "ok").all()
