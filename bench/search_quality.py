"""Does evolution find better GANs than DCGAN at the same compute? Five arms, one budget, FID on held-out images.

    python bench/search_quality.py [--root ../shared/data/cifar10-subset/train] [--size 16] [--steps 300]
                                   [--population 4] [--generations 3] [--samples 100] [--final-samples 500] [--quick]

The real CIFAR-10 images under --root are split once, with a fixed seed, into a held-out part (--held-out per class,
never trained on: the reference of the final FID and KID) and a training part. Every arm gets the same training
budget, population x generations x --steps G/D steps:

  a. dcgan      the DCGAN chromosome (spaces/v2.py: dcgan) trained alone for the whole budget;
  b. reference  the reference algorithm: search space seed-v1 (the cifar10 preset's, at --size), fitness reference;
  c. quality    search space v2, mutation of the elites, fitness.kind quality (FID against the training images);
  d. pareto     the same with fitness.kind pareto (NSGA-II on FID and parameters);
  e. random     random search in v2: population x generations random chromosomes in one generation, the lowest FID.

Every chromosome's sample quality is measured in its training task (--samples images against the training
images' statistics), so the Spearman correlation between the reference fitness and FID is taken over every
chromosome trained. Each arm's best generator by its own rule (the fittest; for random search and pareto, the lowest
in-loop FID) is then scored on the held-out images with --final-samples images (`neuroevo score --against`), and
uniform noise is scored the same way for the floor. Saves bench/results/search_quality.csv and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import common
import numpy as np
import pandas as pd

from neuroevo import config
from neuroevo.evolve import fitness, ranking
from neuroevo.store import logs, rundir
from neuroevo.train import quality

SHARED = Path(os.environ.get("NEUROEVO_SHARED", common.REPO.parent / "shared"))
DEFAULT_ROOT = SHARED / "data" / "cifar10-subset" / "train"


def split(root: Path, out: Path, held_out: int, seed: int = 0) -> tuple[Path, Path]:
    """Two ImageFolder trees of links: `held_out` images per class for the reference, the rest for training."""
    train, test = out / "train", out / "held_out"
    rng = np.random.default_rng(seed)
    for folder in sorted(d for d in root.iterdir() if d.is_dir()):
        files = sorted(folder.iterdir())
        pick = set(rng.choice(len(files), held_out, replace=False).tolist())
        for part, chosen in ((test, True), (train, False)):
            (part / folder.name).mkdir(parents=True, exist_ok=True)
            for i, f in enumerate(files):
                if (i in pick) == chosen and not (part / folder.name / f.name).exists():
                    (part / folder.name / f.name).symlink_to(f.resolve())
    return train, test


def neuroevo(*args: str) -> str:
    p = subprocess.run([sys.executable, "-m", "neuroevo", *args], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"neuroevo {' '.join(args[:2])} failed:\n{p.stderr[-3000:]}")
    return p.stdout


def arm_overrides(args: argparse.Namespace, train_dir: Path, cache: Path) -> list[str]:
    """What every run shares: the data, the budget per chromosome, sample quality in every task."""
    epochs = 3
    return ["data.source=folder", f"data.root={train_dir}", f"data.image_size={args.size}", f"data.cache_dir={cache}",
            f"train.epochs={epochs}", f"train.steps_per_epoch={args.steps // epochs}", "train.sample_grid=36",
            f"train.timeout_s={args.timeout}", "quality.evaluate=all", f"quality.samples={args.samples}",
            f"quality.kid_subset_size={min(100, args.samples // 2)}", "quality.kid_subsets=50",
            f"quality.reference_images={args.reference_images}", "quality.batch_size=100",
            "train.keep=all", "resources.num_cpus=1", f"seed={args.seed}"]


V2_SPACE = ["space.channels=[16,64]", "space.fc_units=[32,128]", "space.decay_epoch=[1,2]", "space.max_params=2000000"]


def arms(args: argparse.Namespace) -> dict[str, list[str]]:
    n, g = args.population, args.generations
    evolve = [f"evolve.population={n}", f"evolve.generations={g}", "evolve.elite_fraction=0.25"]
    return {
        "reference": ["cifar10", *evolve, "space.g_blocks=[1,5]", "space.d_blocks=[1,3]", "space.channels=[5,64]",
                      "space.d_hidden=[30,256]"],
        "quality": ["v2", *evolve, *V2_SPACE, "evolve.strategy=mutation", "fitness.kind=quality"],
        "pareto": ["v2", *evolve, *V2_SPACE, "evolve.strategy=mutation", "fitness.kind=pareto"],
        "random": ["v2", f"evolve.population={n * g}", "evolve.generations=1", "evolve.elite_fraction=0.25", *V2_SPACE],
    }


def finished(run_dir: Path) -> bool:
    """An arm's run from an earlier invocation that logged every generation: reused, not run again."""
    if not rundir.config_file(run_dir).is_file() or not rundir.generations_dir(run_dir).is_dir():
        return False
    cfg = config.load(str(rundir.config_file(run_dir)))
    return logs.read_generations(run_dir, columns=["generation"]).generation.nunique() == cfg.evolve.generations


def run_arm(name: str, preset_and_keys: list[str], shared: list[str], out: Path) -> tuple[Path, float]:
    preset, *keys = preset_and_keys
    if finished(out / name):
        return out / name, float("nan")
    start = time.perf_counter()
    neuroevo("run", preset, "--quiet", "--set", f"out_dir={out}", "--set", f"run_id={name}",
             *[a for k in [*shared, *keys] for a in ("--set", k)])
    return out / name, time.perf_counter() - start


def dcgan_arm(args: argparse.Namespace, train_dir: Path, cache: Path, out: Path) -> tuple[Path, float]:
    """The DCGAN chromosome alone for the whole budget: a one-generation run of the dcgan preset (population 2:
    the seed and a tiny random v2 chromosome beside it, not counted), whose seed row is the DCGAN trained for
    population x generations x steps."""
    budget = args.population * args.generations * args.steps
    if finished(out / "dcgan"):
        return out / "dcgan", float("nan")
    shared = arm_overrides(args, train_dir, cache)
    epochs = max(3, budget // 100)
    shared = [k for k in shared if not k.startswith(("train.epochs", "train.steps_per_epoch", "train.timeout_s"))]
    start = time.perf_counter()
    neuroevo("run", "dcgan", "--quiet", "--set", f"out_dir={out}", "--set", "run_id=dcgan",
             *[a for k in [*shared, f"train.epochs={epochs}", f"train.steps_per_epoch={budget // epochs}",
                           "evolve.population=2", "evolve.generations=1", "evolve.elite_fraction=0.5",
                           "space.channels=[16,16]", "space.fc_units=[32,32]", "space.g_blocks=[0,0]",
                           "space.d_blocks=[1,1]", "space.decay_epoch=[1,2]"] for a in ("--set", k)])
    return out / "dcgan", time.perf_counter() - start


def best_row(name: str, df: pd.DataFrame) -> pd.Series:
    ok = df[df.status == "ok"]
    if name == "dcgan":
        return ok[ok.operator == "seed"].iloc[0]
    if name in ("random", "pareto"):  # no fitness ranks these by quality alone
        return ok.loc[ok.fid.idxmin()]
    return ok.iloc[ranking.order(ok.fitness, ok.generation, ok.chromosome_id)[0]]


def score(run_dir: Path, row: pd.Series, held_out: Path, samples: int) -> dict:
    text = neuroevo("score", str(run_dir), "--generation", str(int(row.generation)), "--chromosome",
                    row.chromosome_id, "--against", str(held_out), "--samples", str(samples))
    fid = float(text.split("FID ")[1].split()[0])
    kid, kid_std = (float(x) for x in text.split("KID ")[1].split()[0:3:2])
    return {"held_out_fid": fid, "held_out_kid": kid, "held_out_kid_std": kid_std}


def noise_floor(held_out: Path, args: argparse.Namespace, cache: Path) -> dict:
    from neuroevo.train import data

    cfg = config.load("demo", ["data.source=folder", f"data.root={held_out}", f"data.image_size={args.size}",
                               f"data.cache_dir={cache}", "data.subset=null"])  # the held-out cache `score` made
    ref = quality.reference(data.load(cfg.data), max_images=args.reference_images, batch_size=100, directory=cache)
    rng = np.random.default_rng(0)
    import torch

    q = quality.measure(lambda k: torch.from_numpy(rng.random((k, 3, args.size, args.size), dtype=np.float32)),
                        args.final_samples, ref, quality.inception(), 100, "cpu", 50, 100, 0)
    return {"held_out_fid": q.fid, "held_out_kid": q.kid, "held_out_kid_std": q.kid_std}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--steps", type=int, default=300, help="G/D steps per chromosome")
    p.add_argument("--population", type=int, default=4)
    p.add_argument("--generations", type=int, default=3)
    p.add_argument("--samples", type=int, default=100, help="generated images per in-loop measurement")
    p.add_argument("--final-samples", type=int, default=500, help="generated images per held-out measurement")
    p.add_argument("--held-out", type=int, default=100, help="held-out images per class")
    p.add_argument("--reference-images", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=240.0, help="train.timeout_s per chromosome")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("/tmp/neuroevo-search-quality"))
    p.add_argument("--quick", action="store_true", help="2 x 2 x 60 steps, 50 samples: a smoke run")
    args = p.parse_args()
    if args.quick:
        args.population, args.generations, args.steps, args.samples, args.final_samples = 2, 2, 60, 50, 100
        args.reference_images = 200
    info = common.machine()
    train_dir, held_out = split(args.root, args.out / "split", args.held_out)
    cache = args.out / "cache"
    shared = arm_overrides(args, train_dir, cache)
    rows, every = [], []
    results = common.RESULTS / "search_quality.partial.json"
    for name in ("dcgan", "reference", "quality", "pareto", "random"):
        run_dir, seconds = (dcgan_arm(args, train_dir, cache, args.out / "runs") if name == "dcgan" else
                            run_arm(name, arms(args)[name], shared, args.out / "runs"))
        df = logs.read_generations(run_dir)
        cfg = config.load(str(rundir.config_file(run_dir)))
        ref_cfg = config.load("cifar10").fitness  # the reference formula, for every arm's chromosomes
        ok = df[df.status == "ok"].copy()
        ok["reference_fitness"] = [fitness.fitness(r.d_loss, r.g_loss, r.params_g, r.params_d, ref_cfg, r.loss)
                                   for r in ok.itertuples()]
        ok["arm"] = name
        every.append(ok[["arm", "generation", "chromosome_id", "reference_fitness", "fid", "kid", "params_g",
                         "params_d", "train_seconds"]])
        best = best_row(name, df)
        trained_steps = int(cfg.train.epochs * cfg.train.steps_per_epoch * (len(df) if name != "dcgan" else 1))
        rows.append({"arm": name, "best": best.chromosome_id, "params": int(best.params_g + best.params_d),
                     "in_loop_fid": best.fid, "trained": len(df), "failed": int((df.status != "ok").sum()),
                     "steps_of_best": int(cfg.train.epochs * cfg.train.steps_per_epoch),
                     "arm_steps": trained_steps, "wall_seconds": round(seconds, 1),
                     **score(run_dir, best, held_out, args.final_samples)})
        results.write_text(json.dumps({"machine": info, "rows": rows}, indent=1, default=str))
        print(rows[-1], flush=True)
    rows.append({"arm": "uniform noise", **noise_floor(held_out, args, cache)})
    summary = pd.DataFrame(rows)
    trained = pd.concat(every)
    searched = trained[trained.arm != "dcgan"]
    rho = searched["reference_fitness"].corr(searched["fid"], method="spearman")
    notes = [f"{args.size}px CIFAR-10 subset, {args.held_out} held-out images per class as the reference; budget "
             f"{args.population} x {args.generations} x {args.steps} G/D steps per arm; in-loop FID on {args.samples} "
             f"samples against {args.reference_images} training images, held-out FID/KID on {args.final_samples} "
             f"samples",
             f"Spearman correlation of the reference fitness with in-loop FID over all {len(searched)} chromosomes of "
             f"the search arms: {rho:+.2f} (negative: fitter = lower FID)"]
    common.report("search_quality", summary, trained, info, notes)
    results.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
