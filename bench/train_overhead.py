"""Benchmark 1: neuroevo's training task against a minimal hand-written PyTorch loop.

The same networks (model.build of one fixed chromosome), the same uint8 images, batches, steps and seed; the
minimal loop is the PyTorch DCGAN example's step with nn.BCELoss. Both run in this process, interleaved, and
each repetition times a whole call (build, optimisers, every step), in elapsed and in CPU time. The figure is
the ratio of the median times, neuroevo / minimal (target <= 1.05).

    python bench/train_overhead.py [--quick] [--steps N] [--reps N] [--threads N]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from functools import partial

import common  # first: puts this checkout's neuroevo on the path
import numpy as np
import pandas as pd
import torch
from torch import nn

from neuroevo import config
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.train import data, trainer
from neuroevo.train.model import build

SWITCHES = ("bf16", "channels_last", "data_on_gpu", "cudnn_benchmark", "compile")
# chromosomes: (preset, overrides, on the GPU only). A small one, where per-step overhead shows most, a larger
# one, and on a GPU one of the cifar10 preset's space at 64px (on demo images of that size)
SIZES = {
    "small 16px": ("demo", ["data.image_size=16", "space.channels=[4, 8]", "space.d_hidden=[30, 40]"], False),
    "medium 32px": ("demo", ["data.image_size=32", "space.channels=[8, 32]", "space.d_hidden=[64, 128]",
                             "space.g_blocks=[2, 12]"], False),
    "cifar10 64px": ("cifar10", ["data.source=demo"], True),
}
# on a GPU, switches set over the defaults (auto; compile off): every switch off, each alone, the defaults, and
# the defaults with compile
OFF = {k: "off" for k in SWITCHES}
GPU_VARIANTS = {"fast path off": OFF, **{f"only {k}": {**OFF, k: "on"} for k in SWITCHES},
                "fast path defaults": {}, "defaults + compile": {"compile": "on"}}


def setup(size: str, steps: int) -> tuple[Chromosome, np.ndarray, config.RunConfig]:
    """A chromosome of the size's space (always the same one) and demo images for `steps` batches."""
    preset, overrides, _ = SIZES[size]
    cfg = config.load(preset, [*overrides, "space.max_params=50000000", "train.epochs=1",
                               f"train.steps_per_epoch={steps}", f"data.subset={steps * 64}"])
    ch, _ = registry.sample(cfg.space, cfg.data.image_size, 3, np.random.default_rng(7))
    return ch, data.load(cfg.data, cfg.seed).array, cfg


def switched(cfg: config.RunConfig, variant: dict[str, str]) -> config.TrainConfig:
    return replace(cfg.train, **variant)


def minimal(ch: Chromosome, images: np.ndarray, steps: int, seed: int, device: str) -> float:
    """The DCGAN example's training step, written out plainly; returns the last G loss."""
    torch.manual_seed(seed)
    dev = torch.device(device)
    netG, netD = (m.to(dev) for m in build(ch))
    optG = torch.optim.SGD(netG.parameters(), lr=ch.g_lr, momentum=ch.g_momentum)
    optD = torch.optim.SGD(netD.parameters(), lr=ch.d_lr, momentum=ch.d_momentum)
    criterion = nn.BCELoss()
    bs = ch.batch_size
    label_real, label_fake = torch.ones(bs, device=dev), torch.zeros(bs, device=dev)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed)).numpy()
    for i in range(steps):
        real = torch.from_numpy(images[np.sort(order[i * bs:(i + 1) * bs])]).to(dev).float() / 127.5 - 1
        z = torch.randn(bs, ch.noise_channels, ch.noise_side, ch.noise_side, device=dev)
        netD.zero_grad()
        errD_real = criterion(netD(real)[1], label_real)
        errD_real.backward()
        fake = netG(z)
        errD_fake = criterion(netD(fake.detach())[1], label_fake)
        errD_fake.backward()
        optD.step()
        netG.zero_grad()
        errG = criterion(netD(fake)[1], label_real)
        errG.backward()
        optG.step()
    return errG.item()  # waits for the device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a short run: fewer steps and repetitions")
    p.add_argument("--steps", type=int, default=None, help="training steps per call (default 60, quick 15)")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 15, quick 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads, as in a Ray task with num_cpus=1")
    args = p.parse_args()
    steps = args.steps or (15 if args.quick else 60)
    reps = args.reps or (5 if args.quick else 15)
    torch.set_num_threads(args.threads)
    info = common.machine()
    calls, chromosomes = {}, {}
    for size, (_, _, gpu_only) in SIZES.items():
        if gpu_only and not torch.cuda.is_available():
            continue
        ch, images, cfg = setup(size, steps)
        chromosomes[size] = ch
        if not gpu_only:
            calls[size, "cpu", "neuroevo"] = partial(trainer.train, ch, images, cfg.train, 0, "cpu")
            calls[size, "cpu", "minimal loop"] = partial(minimal, ch, images, steps, 0, "cpu")
        if torch.cuda.is_available():
            for name, variant in GPU_VARIANTS.items():
                calls[size, "cuda:0", name] = partial(trainer.train, ch, images, switched(cfg, variant), 0, "cuda:0")
            calls[size, "cuda:0", "minimal loop"] = partial(minimal, ch, images, steps, 0, "cuda:0")
    for call in calls.values():  # warm-up: allocator, cuDNN autotuning
        call()
    runs = []
    for rep in range(reps):
        for key in (calls if rep % 2 == 0 else reversed(list(calls))):  # alternate who goes first
            wall, cpu = time.perf_counter(), time.process_time()
            calls[key]()
            runs.append({"chromosome": key[0], "device": key[1], "variant": key[2], "rep": rep,
                         "wall_per_step": (time.perf_counter() - wall) / steps,
                         "cpu_per_step": (time.process_time() - cpu) / steps})
    df = pd.DataFrame(runs)
    med = df.groupby(["chromosome", "device", "variant"], sort=False)[["wall_per_step", "cpu_per_step"]].median()
    summary = pd.DataFrame([
        {"chromosome": size, "device": dev, "variant": name,
         "wall_ms_per_step": 1000 * med.wall_per_step[size, dev, name],
         "wall_ratio": med.wall_per_step[size, dev, name] / med.wall_per_step[size, dev, "minimal loop"],
         "cpu_ms_per_step": 1000 * med.cpu_per_step[size, dev, name],
         "cpu_ratio": med.cpu_per_step[size, dev, name] / med.cpu_per_step[size, dev, "minimal loop"]}
        for size, dev, name in med.index])
    notes = [f"{size}: chromosome {ch.id}, {sum(registry.param_counts(ch)):,} parameters, batch {ch.batch_size}"
             for size, ch in chromosomes.items()]
    notes += [f"{steps} steps per call (build, optimisers and steps timed together), {reps} interleaved repetitions, "
              f"{args.threads} torch thread(s)",
              "*_ratio = median time per step / that of the minimal loop on the same chromosome and device "
              "(target <= 1.05); wall = elapsed time, cpu = this process's CPU time, which other processes "
              "disturb far less (on a GPU, read wall)",
              "compile: every training compiles its own networks, so its time per step includes the compilation"]
    common.report("train_overhead", summary, df, info, notes)


if __name__ == "__main__":
    main()
