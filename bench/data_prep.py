"""Preparation time, reuse time and per-task attach time of the data cache.

    python bench/data_prep.py [--root ../shared/data/cifar10-subset/train] [--size 64] [--tasks 1 2 4 8 16]

Prepares the folder into a fresh cache (cold, several times), loads it again (reuse: fingerprint, manifest,
map), then runs K Ray tasks for each K and times, inside each task, how long it takes to get the images
(attach: object store or memory map) and then one random batch of 64. Tasks run one per core, as training
tasks do (num_cpus=1), and, to load the node, all K at once (num_cpus=0). For scale, it also times one full
copy of the array. Last, it prepares synthetic ImageNet-sized JPEGs (500 x 375) at 200 px, the ImageNet preset's
size, to estimate how long ImageNet's 1,281,167 training images take. Prints a table and writes
bench/results/data_prep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import ray
from PIL import Image

from neuroevo.config import DataConfig
from neuroevo.train import data

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path(os.environ.get("NEUROEVO_SHARED", REPO.parent / "shared")) / "data" / "cifar10-subset" / "train"
OUT = REPO / "bench" / "results" / "data_prep.json"


@ray.remote
def attach_task(images: list, seed: int) -> dict:
    start = time.perf_counter()
    array = data.attach(images[0] if isinstance(images[0], data.Cache) else ray.get(images[0]))
    attached = time.perf_counter()
    rows = np.sort(np.random.default_rng(seed).choice(len(array), 64, replace=False))
    batch = array[rows]  # 64 x C x H x W, the copy a training step makes
    done = time.perf_counter()
    return {"attach_ms": 1e3 * (attached - start), "batch_ms": 1e3 * (done - attached),
            "zero_copy": not array.flags.writeable and not array.flags.owndata, "checksum": int(batch.sum())}


def synthetic_jpegs(root: Path, n: int) -> None:
    """n photo-like JPEGs, 500 x 375 (ImageNet's typical size): smooth colour fields with grain."""
    rng = np.random.default_rng(0)
    for i in range(n):
        coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((500, 375), Image.BICUBIC)
        grain = rng.normal(0, 8, (375, 500, 3))
        pixels = np.clip(np.asarray(coarse, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
        path = root / f"class{i % 10}" / f"{i:05d}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(DEFAULT_ROOT))
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--rounds", type=int, default=3, help="rounds of K tasks per K")
    p.add_argument("--prepare-repeats", type=int, default=3)
    p.add_argument("--jpegs", type=int, default=1000, help="synthetic 500 x 375 JPEGs to prepare at 200 px")
    args = p.parse_args()
    if not Path(args.root).is_dir():
        raise SystemExit(f"{args.root}: not a directory (an ImageFolder tree is needed)")

    with tempfile.TemporaryDirectory() as tmp:
        cold = []
        for i in range(args.prepare_repeats):  # a fresh cache folder each time: a cold preparation
            cfg = DataConfig(source="folder", root=args.root, image_size=args.size, cache_dir=f"{tmp}/cold{i}")
            cold.append(timed(lambda: data.load(cfg, progress=False), 1)[0])
        images = data.load(cfg, progress=False)
        warm = timed(lambda: data.load(cfg, progress=False), 5)
        n, nbytes = len(images.array), images.array.nbytes

        ray.init(address="local", num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1", include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
        copy_ms = 1e3 * statistics.median(timed(lambda: np.array(images.array), 5))
        modes = {"object store": [ray.put(np.asarray(images.array))], "memory map": [images.cache]}
        rounds = []
        for mode, arg in modes.items():
            for running, cpus in (("one per core", 1), ("all at once", 0)):
                task = attach_task.options(num_cpus=cpus)
                ray.get([task.remote(arg, 0) for _ in range(max(args.tasks))])  # start the workers first
                for k in args.tasks:
                    results = [r for i in range(args.rounds)
                               for r in ray.get([task.remote(arg, 1000 * i + t) for t in range(k)])]
                    attach = [r["attach_ms"] for r in results]
                    rounds.append({"mode": mode, "running": running, "tasks": k, "samples": len(results),
                                   "attach_ms_median": round(statistics.median(attach), 3),
                                   "attach_ms_max": round(max(attach), 3),
                                   "batch_ms_median": round(statistics.median(r["batch_ms"] for r in results), 3),
                                   "zero_copy": all(r["zero_copy"] for r in results)})
        ray.shutdown()

        synthetic_jpegs(Path(tmp) / "jpegs", args.jpegs)
        jpeg_cfg = DataConfig(source="folder", root=f"{tmp}/jpegs", image_size=200, cache_dir=f"{tmp}/jpeg-cache")
        jpeg_seconds = timed(lambda: data.load(jpeg_cfg, progress=False), 1)[0]

    result = {
        "command": " ".join(["python", "bench/data_prep.py", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "root": args.root,
        "images": n,
        "image_size": args.size,
        "cache_mb": round(nbytes / 2**20, 1),
        "prepare_seconds": [round(s, 3) for s in cold],
        "prepare_images_per_second": round(n / statistics.median(cold)),
        "reuse_seconds_median": round(statistics.median(warm), 4),
        "full_copy_ms_median": round(copy_ms, 2),
        "attach": rounds,
        "jpeg_500x375_to_200px_images_per_second": round(args.jpegs / jpeg_seconds),
        "imagenet_prepare_hours_estimate": round(1_281_167 / (args.jpegs / jpeg_seconds) / 3600, 1),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1) + "\n")

    print(f"{n} images at {args.size}px, {result['cache_mb']} MB cache; {result['machine']}")
    print(f"prepare (cold): {', '.join(f'{s:.2f}' for s in cold)} s  ({result['prepare_images_per_second']} img/s)")
    print(f"load again (reuse): {1e3 * result['reuse_seconds_median']:.1f} ms; "
          f"one full copy of the array: {copy_ms:.1f} ms")
    print(f"{'mode':<13} {'running':<13} {'tasks':>5} {'attach ms (median)':>19} {'attach ms (max)':>16} "
          f"{'64-image batch ms':>18} {'zero-copy':>9}")
    for r in rounds:
        print(f"{r['mode']:<13} {r['running']:<13} {r['tasks']:>5} {r['attach_ms_median']:>19.3f} "
              f"{r['attach_ms_max']:>16.3f} {r['batch_ms_median']:>18.3f} {str(r['zero_copy']):>9}")
    print(f"synthetic 500x375 JPEGs -> 200px: {result['jpeg_500x375_to_200px_images_per_second']} img/s, so "
          f"ImageNet's 1,281,167 training images take about {result['imagenet_prepare_hours_estimate']} h here")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
