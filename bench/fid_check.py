"""Does the FID network see what it should? A check on real CIFAR-10 images, and its cost per image.

    python bench/fid_check.py [--root ../shared/data/cifar10-subset/train] [--images 500] [--quick]

Takes the same number of images from every class folder (a fixed seed), extracts their Inception features
(timed: seconds per image on this machine), then prints:
- nearest-neighbour class accuracy, leave-one-out, by cosine similarity of the 2048-d features (chance: one over
  the number of classes), and of the raw pixels for scale;
- FID and KID between two disjoint halves of the real images (same classes in each), with the first half as the
  reference: KID should be about 0 (it is unbiased), FID is not 0 (it is biased upward at small counts);
- FID and KID of uniform noise images, generated and measured as a generator's output is (`quality.measure`),
  against the same reference.
--quick uses 100 images. Saves bench/results/fid_check.csv and .json.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import common  # noqa: F401 - puts this checkout first on sys.path
import numpy as np
import pandas as pd
import torch
from PIL import Image

from neuroevo.train import quality

SHARED = Path(os.environ.get("NEUROEVO_SHARED", common.REPO.parent / "shared"))
DEFAULT_ROOT = SHARED / "data" / "cifar10-subset" / "train"


def balanced(root: Path, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n images, n / classes from each class folder: uint8 N x 3 x H x W and their class numbers."""
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, folder in enumerate(classes):
        files = sorted(folder.glob("*.png"))
        for f in rng.choice(files, n // len(classes), replace=False):
            with Image.open(f) as img:
                images.append(np.asarray(img.convert("RGB")).transpose(2, 0, 1))  # H x W x 3 -> 3 x H x W
            labels.append(label)
    return np.stack(images), np.array(labels)


def nn_accuracy(x: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out nearest neighbour by cosine similarity."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return float((labels[sim.argmax(1)] == labels).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n = 100 if args.quick else args.images
    info = common.machine()

    images, labels = balanced(args.root, n)
    classes = len(set(labels))
    start = time.perf_counter()
    net = quality.inception()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    feats = quality.features(net, np.array_split(images, max(1, len(images) // 50)))  # n x 2048
    per_image = (time.perf_counter() - start) / len(images)

    a, b = np.arange(0, len(images), 2), np.arange(1, len(images), 2)  # alternate images: each half has every class
    ref = quality.from_features(feats[a], net.identity)
    half = len(a)
    kid_args = {"subsets": 100, "subset_size": half // 2}  # halves of each set: subsets that differ
    start = time.perf_counter()
    real_fid = quality.fid(ref, feats[b])
    fid_s = time.perf_counter() - start
    real_kid, real_kid_std = quality.kid(ref, feats[b], **kid_args)

    h, w = images.shape[2:]
    torch.manual_seed(0)
    noise = quality.measure(lambda k: torch.rand(k, 3, h, w), half, ref, net, batch_size=50, **kid_args)

    rows = [
        ("nearest-neighbour accuracy, Inception features", nn_accuracy(feats, labels), f"chance {1 / classes:.2f}"),
        ("nearest-neighbour accuracy, raw pixels", nn_accuracy(images.reshape(len(images), -1).astype(np.float64),
                                                               labels), f"chance {1 / classes:.2f}"),
        (f"FID, real {half} vs real {half}", real_fid, "disjoint halves"),
        (f"KID, real {half} vs real {half}", real_kid, f"std {real_kid_std:.4f} over 100 subsets of {half // 2}"),
        (f"FID, uniform noise {half} vs real {half}", noise.fid, "through quality.measure"),
        (f"KID, uniform noise {half} vs real {half}", noise.kid, f"std {noise.kid_std:.4f}"),
        ("Inception, seconds per image", per_image, f"batches of 50, {torch.get_num_threads()} threads"),
        ("Inception, seconds to load", load_s, "once per process"),
        ("FID, seconds for one (2048-d)", fid_s, "eigenvalues of a 2048 x 2048 product"),
        ("measure, seconds", noise.seconds, f"{half} noise images: features, FID and KID"),
    ]
    summary = pd.DataFrame(rows, columns=["figure", "value", "note"])
    notes = [f"{len(images)} images of {args.root}, {n // classes} per class; weights {net.path} ({net.identity})"]
    common.report("fid_check", summary, None, info, notes)


if __name__ == "__main__":
    main()
