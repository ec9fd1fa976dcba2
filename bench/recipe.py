"""The modern GAN recipe, one practice at a time: the DCGAN chromosome at 32 px on the CIFAR-10 subset, every arm
trained for the same G steps, each scored by FID and KID on held-out images.

    python bench/recipe.py [--root ../shared/data/cifar10-subset/train] [--steps 2000] [--samples 500]
                           [--r1-gamma 0.1] [--n-critic 2] [--threads 2] [--arms plain,sn,...] [--quick]

The images under --root are split as bench/search_quality.py splits them (--held-out per class, a fixed seed): the
held-out part is the reference of the FID and KID, the rest is trained on. Arms, all of space/v2.py's dcgan at 32 px
(Adam 2e-4 beta1 0.5, BCE, BatchNorm) with:

  plain      nothing more;
  sn         spectral norm on D's layers;             ema        samples from an EMA of G's weights (0.999);
  augment    DiffAugment color,translation,cutout;    r1         the R1 penalty (--r1-gamma);
  n_critic   --n-critic D steps per G step;           hinge      the hinge loss with Adam beta1 0 (SNGAN's);
  dcgan_sn   the baseline seed dcgan_sn: hinge, beta1 0, spectral norm in D, EMA 0.999, DiffAugment;
  all        dcgan_sn with R1 and n_critic too.

Every arm trains --steps G steps (an n_critic arm n_critic times as many D steps) from the same seed, through
trainer.train as a run's task does, and is measured as the task measures it (quality.measure_generator on its
weights file: the EMA generator where there is one) with --samples images. The steps and FLOPs are those the
training counted. Saves bench/results/recipe.csv and .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import common
import pandas as pd
from search_quality import DEFAULT_ROOT, split

from neuroevo import config
from neuroevo.space.genes import Optimiser
from neuroevo.space.registry import v2
from neuroevo.train import checkpoint, data, quality, trainer

SIZE = 32
BATCH = 64


def arms(r1_gamma: float, n_critic: int) -> dict[str, v2.V2Chromosome]:
    plain = v2.dcgan(SIZE, 3, BATCH)
    sngan = Optimiser("adam", 2e-4, 0.0)
    sn = v2.dcgan_sn(SIZE, 3, BATCH)
    return {
        "plain": plain,
        "sn": dataclasses.replace(plain, spectral_norm="d"),
        "ema": dataclasses.replace(plain, g_ema=0.999),
        "augment": dataclasses.replace(plain, augment="color,translation,cutout"),
        "r1": dataclasses.replace(plain, r1_gamma=r1_gamma),
        "n_critic": dataclasses.replace(plain, n_critic=n_critic),
        "hinge": dataclasses.replace(plain, loss="hinge", g_opt=sngan, d_opt=sngan),
        "dcgan_sn": sn,
        "all": dataclasses.replace(sn, r1_gamma=r1_gamma, n_critic=n_critic),
    }


def epochs_of(d_steps: int, batches: int) -> tuple[int, int]:
    """(epochs, steps per epoch) that make exactly d_steps D steps with at most one pass over the data an epoch."""
    per_epoch = max(k for k in range(1, min(batches, d_steps) + 1) if d_steps % k == 0)
    return d_steps // per_epoch, per_epoch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--steps", type=int, default=2000, help="G steps per arm")
    p.add_argument("--samples", type=int, default=500, help="generated images per FID and KID")
    p.add_argument("--held-out", type=int, default=100, help="held-out images per class")
    p.add_argument("--reference-images", type=int, default=None, help="held-out images in the reference (all)")
    p.add_argument("--r1-gamma", type=float, default=0.1)
    p.add_argument("--n-critic", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--arms", default=None, help="comma-separated, default all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("/tmp/neuroevo-recipe"))
    p.add_argument("--quick", action="store_true", help="20 steps, 100 samples, 200 reference images: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.steps, args.samples, args.reference_images = 20, 100, 200

    import torch

    torch.set_num_threads(args.threads)
    info = common.machine()
    train_dir, held_out = split(args.root, args.out / "split", args.held_out)
    cache = args.out / "cache"
    images = data.load(config.DataConfig(source="folder", root=str(train_dir), image_size=SIZE, cache_dir=str(cache)),
                       args.seed).array
    q_cfg = config.QualityConfig(samples=args.samples, kid_subsets=100, kid_subset_size=min(100, args.samples // 2),
                                 batch_size=100)
    held = data.load(config.DataConfig(source="folder", root=str(held_out), image_size=SIZE, cache_dir=str(cache)))
    ref = quality.reference(held, max_images=args.reference_images, batch_size=q_cfg.batch_size, directory=cache)

    chosen = arms(args.r1_gamma, args.n_critic)
    names = args.arms.split(",") if args.arms else list(chosen)
    rows = []
    for name in names:
        ch = chosen[name]
        epochs, per_epoch = epochs_of(args.steps * ch.n_critic, len(images) // ch.batch_size)
        cfg = config.TrainConfig(epochs=epochs, steps_per_epoch=per_epoch)
        start = time.perf_counter()
        result, G, D, G_ema = trainer.train(ch, images, cfg, args.seed)
        q = quality.measure_generator(checkpoint.weights(ch, G, D, G_ema), q_cfg, ref, "cpu", args.seed)
        rows.append({"arm": name, "status": result.status, "g_steps": result.g_steps, "d_steps": result.d_steps,
                     "train_flops": result.train_flops, "train_seconds": result.train_seconds,
                     "held_out_fid": q.fid, "held_out_kid": q.kid, "held_out_kid_std": q.kid_std,
                     "quality_flops": q.flops, "quality_seconds": q.seconds,
                     "wall_seconds": time.perf_counter() - start, "chromosome": ch.to_json()})
        print(f"{name:9s} {result.status} G {result.g_steps} D {result.d_steps} steps {result.train_flops:.3g} FLOPs "
              f"{result.train_seconds:.0f} s: FID {q.fid:.1f} KID {q.kid:.4f}", flush=True)
    every = pd.DataFrame(rows)
    summary = every.drop(columns=["chromosome"])
    notes = [f"DCGAN at {SIZE} px (space/v2.py dcgan, batch {BATCH}), {args.steps} G steps an arm, seed {args.seed}, "
             f"{len(images)} training images; FID and KID of {args.samples} samples against {ref.count} held-out "
             f"images ({args.held_out} a class); r1 gamma {args.r1_gamma}, n_critic {args.n_critic}; "
             f"{args.threads} torch threads",
             "one seed per arm: differences of a few FID points are within seed-to-seed noise at this budget"]
    common.report("recipe", summary, every, info, notes)


if __name__ == "__main__":
    main()
