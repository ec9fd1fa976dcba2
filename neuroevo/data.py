"""Training images as one uint8 array, N x C x H x W, decoded and resized once per run.

The driver puts the array in Ray's object store once; every training task maps it read-only, zero-copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from neuroevo.config import DataConfig

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
DEMO_IMAGES = 2048


class DataError(ValueError):
    """Unusable training data; its message is one line naming the path or key."""


@dataclass(frozen=True)
class Images:
    array: np.ndarray  # uint8, N x C x H x W
    classes: tuple[str, ...]
    skipped: int  # files that could not be decoded
    description: str


def load(cfg: DataConfig, seed: int = 0, progress: bool = True) -> Images:
    if cfg.source == "demo":
        return demo(cfg.subset or DEMO_IMAGES, cfg.image_size, cfg.channels, seed)
    if cfg.source in ("cifar10", "cifar100"):
        return cifar(cfg, progress)
    return folder(cfg, progress)


def demo(n: int, size: int, channels: int, seed: int) -> Images:
    """Synthetic pictures that need no download: a coloured disc on a two-colour gradient.

    Enough structure (edges, colour, position) for a GAN to learn something in a minute on a CPU.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)  # each size x size, in [0, 1]
    top, bottom, disc = (rng.uniform(0, 1, (n, 3, 1, 1)).astype(np.float32) for _ in range(3))
    img = top * (1 - yy) + bottom * yy  # n x 3 x size x size
    cx, cy = rng.uniform(0.2, 0.8, (2, n, 1, 1, 1)).astype(np.float32)
    radius = rng.uniform(0.15, 0.35, (n, 1, 1, 1)).astype(np.float32)
    inside = (xx - cx) ** 2 + (yy - cy) ** 2 < radius**2
    img = np.where(inside, disc, img)
    if channels == 1:
        img = img.mean(axis=1, keepdims=True)
    return Images((img * 255).round().astype(np.uint8), ("demo",), 0, f"demo: {n} synthetic {size}px images")


def _to_array(img: Image.Image, size: int, channels: int) -> np.ndarray:
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)  # H x W x C -> C x H x W


def folder(cfg: DataConfig, progress: bool) -> Images:
    """An ImageFolder tree: root/<class>/<image>. Files that do not decode are skipped and counted."""
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise DataError(f"data.root: {root} is not a directory")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"data.root: {root} has no class sub-folders (expected root/<class>/<image>)")
    files = [f for c in classes for f in sorted((root / c).iterdir()) if f.suffix.lower() in IMAGE_EXTENSIONS]
    if cfg.subset is not None:
        files = files[: cfg.subset]
    if not files:
        raise DataError(f"data.root: {root} has no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class folders")
    arrays, skipped = [], 0
    for f in tqdm(files, desc=f"decoding {root.name}", unit="img", disable=not progress, leave=False):
        try:
            with Image.open(f) as img:
                arrays.append(_to_array(img, cfg.image_size, cfg.channels))
        except (UnidentifiedImageError, OSError):
            skipped += 1
    if not arrays:
        raise DataError(f"data.root: none of the {len(files)} files under {root} could be decoded as images")
    return Images(np.stack(arrays), tuple(classes), skipped,
                  f"{root}: {len(arrays)} images in {len(classes)} classes at {cfg.image_size}px ({skipped} skipped)")


def cifar(cfg: DataConfig, progress: bool) -> Images:
    """CIFAR-10/100 training set through torchvision, resized to cfg.image_size."""
    from torchvision import datasets  # imported here: only the CIFAR sources need it

    root = Path(cfg.root or "data").expanduser()
    cls = datasets.CIFAR10 if cfg.source == "cifar10" else datasets.CIFAR100
    try:
        ds = cls(str(root), train=True, download=cfg.download)
    except RuntimeError:
        raise DataError(
            f"data.root: no {cfg.source} at {root / cls.base_folder}; set data.download=true to fetch it "
            f"there, or point data.root at a folder holding {cls.base_folder}/") from None
    raw = ds.data[: cfg.subset] if cfg.subset else ds.data  # N x 32 x 32 x 3
    arrays = [_to_array(Image.fromarray(a), cfg.image_size, cfg.channels)
              for a in tqdm(raw, desc=f"resizing {cfg.source}", unit="img", disable=not progress, leave=False)]
    return Images(np.stack(arrays), tuple(ds.classes), 0,
                  f"{cfg.source}: {len(arrays)} images at {cfg.image_size}px from {root}")
