"""Train one chromosome's GAN. Knows nothing of evolution or Ray: chromosome + images + seed in, losses out."""

from __future__ import annotations

import math
import time
from typing import Iterator

import numpy as np
import torch

from neuroevo.config import TrainConfig
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.genes import Optimiser, Recipe
from neuroevo.space.registry import param_counts
from neuroevo.train import ema, fastpath, flops, losses
from neuroevo.train.checkpoint import load_weights, weights
from neuroevo.train.ema import EMA
from neuroevo.train.model import Discriminator, Generator, build, count_params, noise
from neuroevo.train.results import TrainResult

STATISTICS_BATCHES = 16  # batches of samples that measure the BatchNorm statistics of G's average (ema.recalibrate)


def to_unit_range(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 images -> float in [-1, 1], the range of G's tanh output."""
    return torch.from_numpy(batch).to(device).float().div_(127.5).sub_(1.0)


def random_hflip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of a N x C x H x W batch left-right, where it lies (one draw per image)."""
    mirror = torch.rand(len(batch), generator=generator) < 0.5  # N, drawn on the CPU: same on every device
    return torch.where(mirror.to(batch.device)[:, None, None, None], batch.flip(3), batch)


def optimiser(genes: Optimiser, module: torch.nn.Module) -> tuple[torch.optim.Optimizer, list]:
    """The optimiser a network's genes name, and its learning-rate schedule (empty: a constant rate)."""
    if genes.name == "adam":
        opt = torch.optim.Adam(module.parameters(), lr=genes.lr, betas=(genes.momentum, 0.999))
    else:
        opt = torch.optim.SGD(module.parameters(), lr=genes.lr, momentum=genes.momentum)
    if not genes.decay_epoch:
        return opt, []
    return opt, [torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[genes.decay_epoch], gamma=genes.decay_factor)]


class Batches:
    """The training images where the step reads them: host memory, or resident on the GPU as uint8."""

    def __init__(self, images: np.ndarray, dev: torch.device, fp: fastpath.FastPath):
        self.images, self.dev, self.fp = images, dev, fp
        self.resident = torch.tensor(images, device=dev) if fp.data_on_gpu else None  # a copy: images is read-only

    def epoch(self, order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        """Whole batches in `order`, each sorted for memory locality, as float in [-1, 1] on the device.
        shape: batch_size x C x H x W"""
        stops = range(batch_size, len(order) + 1, batch_size)
        if self.resident is None:
            host = order.numpy()
            for stop in stops:
                yield self.fp.layout(to_unit_range(self.images[np.sort(host[stop - batch_size:stop])], self.dev))
        else:
            on_gpu = order.to(self.dev)  # one copy per epoch; no host sync per step
            for stop in stops:
                idx = on_gpu[stop - batch_size:stop].sort().values
                yield self.fp.layout(self.resident[idx].float().div_(127.5).sub_(1.0))



def pick_device(assigned_gpus: int) -> str:
    """Ray sets CUDA_VISIBLE_DEVICES to the task's GPUs, so its first GPU is always cuda:0; else the CPU."""
    return "cuda:0" if assigned_gpus > 0 and torch.cuda.is_available() else "cpu"


def train(ch: Chromosome, images: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu", flip: bool = False,
          init_weights: bytes | None = None) -> tuple[TrainResult, Generator, Discriminator, Generator | None]:
    """The DCGAN step for cfg.epochs epochs: D on real and fake images, then G to make D say real, each with the
    chromosome's loss and practices (losses.py; seed-v1: BCE, a real and a fake batch). Returns the result, G, D and
    the average of G's weights (ema.py) where the chromosome has one, else None.

    An epoch is one pass of D over the images (at most cfg.steps_per_epoch batches): a D step per batch, and a G step
    after every n_critic D steps (the recipe's n_critic; 1 without it), on the fake batch of the D step before it.
    The steps are counted as they are taken, and their FLOPs (flops.train_flops) reported with them.

    images: uint8, N x C x H x W, matching the chromosome's image shape; in memory or a read-only memory map,
    read one sorted batch of rows at a time. flip: mirror a random half of every real batch.
    init_weights: start from these weights (a weights file, weights()) instead of fresh ones.
    Same seed on CPU -> same losses. On a GPU, cfg's fast-path switches apply (see fastpath.py); on the
    CPU they change nothing.
    """
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    flips = torch.Generator().manual_seed(seed + 1)  # its own stream: flipping leaves the batch order alone
    dev = torch.device(device)
    gpu = fastpath.probe(device)
    fp = fastpath.plan(cfg, gpu, images.nbytes)
    recipe = ch.recipe or Recipe()
    G, D = build(ch)
    if init_weights is not None:
        load_weights(G, D, init_weights)
    G, D = fastpath.place(G, dev, fp), fastpath.place(D, dev, fp)
    average = EMA(G, recipe.g_ema) if recipe.g_ema else None
    objective = losses.objective(ch, augment_seed=seed + 2)  # augmentation draws its own stream too
    # every call of G and of D, the losses' included (feature matching, penalties), takes the fast path
    g_forward = fastpath.forward(G, fp)
    d_forward = fastpath.forward(D, fp, compile=fp.compile and not objective.double_backward)
    batches = Batches(images, dev, fp)
    (opt_g, sched_g), (opt_d, sched_d) = (optimiser(genes, net) for genes, net in zip(ch.optimisers, (G, D)))

    bs = ch.batch_size
    steps = batches_per_epoch(len(images), bs, cfg.steps_per_epoch)  # D steps
    if steps < recipe.n_critic:
        raise ValueError(f"{steps} batches an epoch is fewer than the {recipe.n_critic} D steps of a G step (n_critic)")

    d_losses: list[float] = []
    g_losses: list[float] = []
    status, error = "ok", ""
    d_steps = g_steps = 0
    compile_seconds = None
    start = time.perf_counter()
    deadline = start + cfg.timeout_s if cfg.timeout_s is not None else math.inf
    for epoch in range(cfg.epochs):
        real_batches = batches.epoch(torch.randperm(len(images), generator=shuffle), bs)
        d_sum = torch.zeros((), device=dev)
        g_sum = torch.zeros((), device=dev)
        d_done = g_done = 0
        for step in range(steps):
            if time.perf_counter() > deadline:
                status, error = "timeout", f"stopped after {cfg.timeout_s}s (train.timeout_s), in epoch {epoch}"
                break
            real = next(real_batches)
            if flip:
                real = fp.layout(random_hflip(real, flips))
            z = fp.layout(noise(ch, bs, device=dev))

            # (1) D: maximise log D(x) + log(1 - D(G(z))) (bce; losses.py has the others)
            opt_d.zero_grad(set_to_none=True)
            fake = g_forward(z)
            loss_d = objective.d_loss(d_forward, real, fake.detach())
            loss_d.backward()
            opt_d.step()
            d_steps += 1
            d_done += 1
            d_sum += loss_d.detach()

            if d_steps % recipe.n_critic == 0:
                # (2) G: maximise log D(G(z))
                opt_g.zero_grad(set_to_none=True)
                loss_g = objective.g_loss(d_forward, real, fake)
                loss_g.backward()
                opt_g.step()
                g_steps += 1
                g_done += 1
                g_sum += loss_g.detach()
                if average is not None:
                    average.update(G)

            if fp.compile and compile_seconds is None:  # the first step compiled G's and D's graphs
                torch.cuda.synchronize(dev)
                compile_seconds = time.perf_counter() - start
                print(f"torch.compile: first step of {ch.id} took {compile_seconds:.1f}s", flush=True)
        for schedule in sched_g + sched_d:
            schedule.step()
        if d_done:  # one host sync per epoch, not per step
            d_losses.append(d_sum.item() / d_done)
            g_losses.append(g_sum.item() / g_done if g_done else math.nan)
        if status == "ok" and not (math.isfinite(d_losses[-1]) and math.isfinite(g_losses[-1])):
            status, error = "diverged", f"non-finite loss in epoch {epoch}: d={d_losses[-1]} g={g_losses[-1]}"
        elif status == "ok" and cfg.max_loss is not None and max(abs(d_losses[-1]), abs(g_losses[-1])) > cfg.max_loss:
            status, error = "diverged", (f"loss beyond train.max_loss={cfg.max_loss:g} in epoch {epoch}: "
                                         f"d={d_losses[-1]:.4g} g={g_losses[-1]:.4g}")
        if status != "ok":
            break
    recalibrated = 0  # batches of samples that measure the average's own BatchNorm statistics
    if average is not None and status == "ok":
        recalibrated = ema.recalibrate(average.G, lambda: fp.layout(noise(ch, bs, device=dev)), STATISTICS_BATCHES)
    seconds = time.perf_counter() - start

    result = TrainResult(
        status=status,
        error=error,
        d_loss=d_losses[-1] if d_losses else math.nan,
        g_loss=g_losses[-1] if g_losses else math.nan,
        d_losses=tuple(d_losses),
        g_losses=tuple(g_losses),
        params_g=count_params(G),
        params_d=count_params(D),
        train_seconds=seconds,
        images_per_second=d_steps * bs / seconds if seconds > 0 else 0.0,
        device=_describe(dev, gpu, fp, compile_seconds),
        g_steps=g_steps,
        d_steps=d_steps,
        train_flops=flops.train_flops(ch, d_steps, g_steps, g_images=recalibrated * bs),
    )
    return result, G, D, average.G if average is not None else None


def batches_per_epoch(n_images: int, batch_size: int, steps_per_epoch: int | None) -> int:
    """D steps an epoch: one pass over the images in whole batches (BatchNorm needs a full one), or
    train.steps_per_epoch of them, which may not ask for more than one pass."""
    batches = n_images // batch_size  # the last partial batch is dropped
    if batches == 0:
        raise ValueError(f"{n_images} training images is fewer than one batch of {batch_size}")
    if steps_per_epoch is not None and steps_per_epoch > batches:
        raise ValueError(f"train.steps_per_epoch: {steps_per_epoch} is more than one pass over the data, "
                         f"{batches} batches of {batch_size} ({n_images} images)")
    return steps_per_epoch or batches


def _describe(dev: torch.device, gpu: fastpath.Device, fp: fastpath.FastPath,
              compile_seconds: float | None) -> str:
    if dev.type == "cpu":
        return "cpu"
    used = fp.describe() + (f" {compile_seconds:.1f}s" if compile_seconds is not None else "")
    return f"{dev} ({gpu.name}; {used or 'float32'})"


def run(ch: Chromosome, images: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu", flip: bool = False,
        init_weights: bytes | None = None) -> tuple[TrainResult, bytes | None]:
    """train(), then the weights (weights()) of a chromosome that trained to the end.

    Running out of GPU memory is a property of the chromosome, not a crash: it becomes status "oom" and the
    GPU is left clean for the next task. Any other exception propagates to the caller.
    """
    try:
        result, G, D, G_ema = train(ch, images, cfg, seed, device, flip, init_weights)
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        params_g, params_d = param_counts(ch)
        return TrainResult("oom", " ".join(str(e).split())[:500], math.nan, math.nan, (), (), params_g, params_d,
                           0.0, 0.0, device), None
    if result.status != "ok":
        return result, None
    return result, weights(ch, G, D, G_ema)
