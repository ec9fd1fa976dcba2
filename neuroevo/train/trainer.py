"""Train one chromosome's GAN. Knows nothing of evolution or Ray: chromosome + images + seed in, losses out."""

from __future__ import annotations

import copy
import math
import time
from typing import Iterator

import numpy as np
import torch

from neuroevo.config import TrainConfig
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.genes import Optimiser, Recipe
from neuroevo.space.registry import param_counts
from neuroevo.train import continuation, ema, fastpath, flops, losses
from neuroevo.train.augment import DiffAugment
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

    def __init__(self, images: np.ndarray, dev: torch.device, fp: fastpath.FastPathSwitches):
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
    """The whole training (train_leg, run to its end): the result, G, D and the average of G's weights (ema.py)
    where the chromosome has one, else None."""
    result, G, D, G_ema, _ = train_leg(ch, images, cfg, seed, device, flip, init_weights)
    return result, G, D, G_ema


def train_leg(ch: Chromosome, images: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu",
              flip: bool = False, init_weights: bytes | None = None, until: int | None = None,
              resume: bytes | None = None
              ) -> tuple[TrainResult, Generator, Discriminator, Generator | None, bytes | None]:
    """The DCGAN step for cfg.epochs epochs: D on real and fake images, then G to make D say real, each with the
    chromosome's loss and practices (losses.py; seed-v1: BCE, a real and a fake batch).

    An epoch is one pass of D over the images (at most cfg.steps_per_epoch batches): a D step per batch, and a G step
    after every n_critic D steps (the recipe's n_critic; 1 without it), on the fake batch of the D step before it.
    The steps are counted as they are taken, and their FLOPs (flops.train_flops) reported with them.

    images: uint8, N x C x H x W, matching the chromosome's image shape; in memory or a read-only memory map,
    read one sorted batch of rows at a time. flip: mirror a random half of every real batch.
    init_weights: start from these weights (a weights file, weights()) instead of fresh ones.
    Same seed on CPU -> same losses. On a GPU, cfg's fast-path switches apply (see fastpath.py); on the
    CPU they change nothing.

    until: pause once this many D steps (of the whole training, counted from its start) are done; None: run to the
    end. resume: the continuation (continuation.py) of an earlier leg with the same chromosome, images, cfg and
    seed, to continue from; init_weights is then ignored. Returns the result so far (the losses of the epochs
    done, then, paused within an epoch after a G step of it, the mean of its steps so far), G, D, the average of
    G's weights (ema.py; None where the chromosome has none; its BatchNorm statistics measured afresh) and the
    continuation at the pause (None: it ran to the end, or stopped).
    On the CPU, legs of r and then s more steps give the losses and weights of one training of r + s steps.
    """
    torch.manual_seed(seed)
    shuffle = torch.Generator().manual_seed(seed)
    flips = torch.Generator().manual_seed(seed + 1)  # its own stream: flipping leaves the batch order alone
    augment_seed = seed + 2  # augmentation draws its own stream too
    dev = torch.device(device)
    gpu = fastpath.probe(device)
    fp = fastpath.switches(cfg, gpu, images.nbytes)
    recipe = ch.recipe or Recipe()
    G, D = build(ch)
    state = continuation.from_bytes(resume) if resume is not None else None
    if state is not None:
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
    elif init_weights is not None:
        load_weights(G, D, init_weights)
    G, D = fastpath.place(G, dev, fp), fastpath.place(D, dev, fp)
    average = EMA(G, recipe.g_ema) if recipe.g_ema else None
    if average is not None and state is not None:
        average.G.load_state_dict(state["ema"])
        average.steps = state["ema_steps"]
    objective = losses.objective(ch, augment_seed=augment_seed)
    # every call of G and of D, the losses' included (feature matching, penalties), takes the fast path
    g_forward = fastpath.forward(G, fp)
    d_forward = fastpath.forward(D, fp, compile=fp.compile and not objective.double_backward)
    batches = Batches(images, dev, fp)
    (opt_g, sched_g), (opt_d, sched_d) = (optimiser(genes, net) for genes, net in zip(ch.optimisers, (G, D)))
    first_epoch, first_step, order = 0, 0, None
    if state is not None:
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        for schedule, saved in zip(sched_g + sched_d, state["schedules"]):
            continuation.load_schedule(schedule, saved)
        torch.set_rng_state(state["torch_rng"])
        if dev.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], dev)
        shuffle.set_state(state["shuffle"])
        flips.set_state(state["flips"])
        if state["augment_rng"] is not None:
            objective.augment.generator.set_state(state["augment_rng"])
        first_epoch, first_step, order = state["epoch"], state["step"], state["order"]

    bs = ch.batch_size
    steps = batches_per_epoch(len(images), bs, cfg.steps_per_epoch)  # D steps
    if steps < recipe.n_critic:
        raise ValueError(f"{steps} batches an epoch is fewer than the {recipe.n_critic} D steps of a G step (n_critic)")

    d_losses: list[float] = list(state["d_losses"]) if state else []
    g_losses: list[float] = list(state["g_losses"]) if state else []
    status, error = "ok", ""
    d_steps = state["d_steps"] if state else 0
    g_steps = state["g_steps"] if state else 0
    recalibrated = state["recalibrated"] if state else 0  # batches of samples that measured the average's statistics
    steps_before, seconds_before = d_steps, state["seconds"] if state else 0.0
    paused = False
    compile_seconds = None
    start = time.perf_counter()
    deadline = start + cfg.timeout_s if cfg.timeout_s is not None else math.inf
    for epoch in range(first_epoch, cfg.epochs):
        resumed = state is not None and epoch == first_epoch
        if not resumed:
            order = torch.randperm(len(images), generator=shuffle)
        # a resumed epoch reads the batches of its order that are left
        real_batches = batches.epoch(order[first_step * bs:] if resumed else order, bs)
        d_sum = state["d_sum"].to(dev) if resumed else torch.zeros((), device=dev)
        g_sum = state["g_sum"].to(dev) if resumed else torch.zeros((), device=dev)
        d_done = state["done"] if resumed else 0
        g_done = state["g_done"] if resumed else 0
        for step in range(first_step if resumed else 0, steps):
            if until is not None and d_steps >= until:
                paused = True
                break
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
        if paused:
            break
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
    pause = None
    G_ema = average.G if average is not None else None
    if paused and status == "ok":
        pause = continuation.to_bytes({
            "steps": d_steps, "d_steps": d_steps, "g_steps": g_steps, "recalibrated": recalibrated,
            "seconds": seconds_before + time.perf_counter() - start,
            "epoch": epoch, "step": step, "order": order, "done": d_done, "g_done": g_done,
            "d_sum": d_sum.cpu(), "g_sum": g_sum.cpu(),
            "d_losses": list(d_losses), "g_losses": list(g_losses),
            "generator": {k: v.cpu() for k, v in G.state_dict().items()},
            "discriminator": {k: v.cpu() for k, v in D.state_dict().items()},
            "ema": {k: v.cpu() for k, v in average.G.state_dict().items()} if average is not None else None,
            "ema_steps": average.steps if average is not None else 0,
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "schedules": [continuation.schedule_state(s) for s in sched_g + sched_d],
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
            "shuffle": shuffle.get_state(), "flips": flips.get_state(),
            "augment_rng": objective.augment.generator.get_state() if isinstance(objective.augment, DiffAugment)
            else None})
        if d_done and g_done:  # the epoch so far, as the losses to judge the training by
            d_losses.append(d_sum.item() / d_done)
            g_losses.append(g_sum.item() / g_done)
            if not (math.isfinite(d_losses[-1]) and math.isfinite(g_losses[-1])):
                status, error = "diverged", f"non-finite loss in epoch {epoch}: d={d_losses[-1]} g={g_losses[-1]}"
        if G_ema is not None:  # the continuation keeps the average as it trains; its samples need their statistics
            G_ema = copy.deepcopy(G_ema)
    if G_ema is not None and status == "ok":
        # after the continuation took torch's random state: a later leg draws what one whole training would
        recalibrated += ema.recalibrate(G_ema, lambda: fp.layout(noise(ch, bs, device=dev)), STATISTICS_BATCHES)
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
        train_seconds=seconds_before + seconds,
        images_per_second=(d_steps - steps_before) * bs / seconds if seconds > 0 else 0.0,
        device=_describe(dev, gpu, fp, compile_seconds),
        steps=d_steps,
        g_steps=g_steps,
        d_steps=d_steps,
        train_flops=flops.train_flops(ch, d_steps, g_steps, g_images=recalibrated * bs),
    )
    return result, G, D, G_ema, pause


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


def _describe(dev: torch.device, gpu: fastpath.Device, fp: fastpath.FastPathSwitches,
              compile_seconds: float | None) -> str:
    if dev.type == "cpu":
        return "cpu"
    used = fp.describe() + (f" {compile_seconds:.1f}s" if compile_seconds is not None else "")
    return f"{dev} ({gpu.name}; {used or 'float32'})"


def train_and_save(ch: Chromosome, images: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu",
                   flip: bool = False, init_weights: bytes | None = None) -> tuple[TrainResult, bytes | None]:
    """train(), then the weights file (checkpoint.weights) of a chromosome that trained to the end
    (train_and_pause, run to the end)."""
    result, weights_file, _ = train_and_pause(ch, images, cfg, seed, device, flip, init_weights)
    return result, weights_file


def train_and_pause(ch: Chromosome, images: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu",
                    flip: bool = False, init_weights: bytes | None = None, until: int | None = None,
                    resume: bytes | None = None) -> tuple[TrainResult, bytes | None, bytes | None]:
    """train_leg(), then the weights file (checkpoint.weights, with the average of G's weights where the chromosome
    has one) of a chromosome whose training is ok so far, and its continuation where it paused.

    Running out of GPU memory is a property of the chromosome, not a crash: it becomes status "oom" and the
    GPU is left clean for the next task. Any other exception propagates to the caller.
    """
    try:
        result, G, D, G_ema, pause = train_leg(ch, images, cfg, seed, device, flip, init_weights, until, resume)
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        params_g, params_d = param_counts(ch)
        return TrainResult("oom", " ".join(str(e).split())[:500], math.nan, math.nan, (), (), params_g, params_d,
                           0.0, 0.0, device), None, None
    if result.status != "ok":
        return result, None, None
    return result, weights(ch, G, D, G_ema), pause
