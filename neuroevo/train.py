"""Train one chromosome's GAN. Knows nothing of evolution or Ray: chromosome + images + seed in, losses out."""

from __future__ import annotations

import io
import math
import pickle
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from neuroevo import architecture, fastpath, losses
from neuroevo.config import TrainConfig
from neuroevo.genome import Genome, Optimiser, from_json, param_counts
from neuroevo.model import build, build_generator, count_params, load_state, noise
from neuroevo.results import TrainResult


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


def load_weights(G: torch.nn.Module, D: torch.nn.Module, weights: bytes) -> None:
    """Continue from the weights file (weights()) of an earlier training (evolve.keep_weights)."""
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    load_state(G, state["generator"])
    load_state(D, state["discriminator"])


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


def train(ch: Genome, images: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu", flip: bool = False,
          init_weights: bytes | None = None) -> tuple[TrainResult, torch.nn.Module, torch.nn.Module]:
    """The DCGAN step for cfg.epochs epochs: D on real and fake images, then G to make D say real, each with the
    chromosome's loss and practices (losses.py; seed-v1: BCE, a real and a fake batch).

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
    G, D = build(ch)
    if init_weights is not None:
        load_weights(G, D, init_weights)
    G, D = fastpath.place(G, dev, fp), fastpath.place(D, dev, fp)
    objective = losses.objective(ch)
    # every call of G and of D, the losses' included (feature matching, gradient penalty), takes the fast path
    g_forward = fastpath.forward(G, fp)
    d_forward = fastpath.forward(D, fp, compile=fp.compile and not objective.double_backward)
    batches = Batches(images, dev, fp)
    (opt_g, sched_g), (opt_d, sched_d) = (optimiser(genes, net) for genes, net in zip(ch.optimisers, (G, D)))

    bs = ch.batch_size
    steps = len(images) // bs  # drop the last partial batch: BatchNorm needs a full one
    if cfg.steps_per_epoch is not None:
        steps = min(steps, cfg.steps_per_epoch)
    if steps == 0:
        raise ValueError(f"{len(images)} training images is fewer than one batch of {bs}")

    d_losses: list[float] = []
    g_losses: list[float] = []
    status, error = "ok", ""
    images_seen = 0
    compile_seconds = None
    start = time.perf_counter()
    deadline = start + cfg.timeout_s if cfg.timeout_s is not None else math.inf
    for epoch in range(cfg.epochs):
        real_batches = batches.epoch(torch.randperm(len(images), generator=shuffle), bs)
        d_sum = torch.zeros((), device=dev)
        g_sum = torch.zeros((), device=dev)
        done = 0
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

            # (2) G: maximise log D(G(z))
            opt_g.zero_grad(set_to_none=True)
            loss_g = objective.g_loss(d_forward, real, fake)
            loss_g.backward()
            opt_g.step()

            d_sum += loss_d.detach()
            g_sum += loss_g.detach()
            done += 1
            images_seen += bs
            if fp.compile and compile_seconds is None:  # the first step compiled G's and D's graphs
                torch.cuda.synchronize(dev)
                compile_seconds = time.perf_counter() - start
                print(f"torch.compile: first step of {ch.id} took {compile_seconds:.1f}s", flush=True)
        for schedule in sched_g + sched_d:
            schedule.step()
        if done:  # one host sync per epoch, not per step
            d_losses.append(d_sum.item() / done)
            g_losses.append(g_sum.item() / done)
        if status == "ok" and not (math.isfinite(d_losses[-1]) and math.isfinite(g_losses[-1])):
            status, error = "diverged", f"non-finite loss in epoch {epoch}: d={d_losses[-1]} g={g_losses[-1]}"
        elif status == "ok" and cfg.max_loss is not None and max(abs(d_losses[-1]), abs(g_losses[-1])) > cfg.max_loss:
            status, error = "diverged", (f"loss beyond train.max_loss={cfg.max_loss:g} in epoch {epoch}: "
                                         f"d={d_losses[-1]:.4g} g={g_losses[-1]:.4g}")
        if status != "ok":
            break
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
        images_per_second=images_seen / seconds if seconds > 0 else 0.0,
        device=_describe(dev, gpu, fp, compile_seconds),
    )
    return result, G, D


def _describe(dev: torch.device, gpu: fastpath.Device, fp: fastpath.FastPath,
              compile_seconds: float | None) -> str:
    if dev.type == "cpu":
        return "cpu"
    used = fp.describe() + (f" {compile_seconds:.1f}s" if compile_seconds is not None else "")
    return f"{dev} ({gpu.name}; {used or 'float32'})"


def run(ch: Genome, images: np.ndarray, cfg: TrainConfig, seed: int, device: str = "cpu", flip: bool = False,
        init_weights: bytes | None = None) -> tuple[TrainResult, bytes | None]:
    """train(), then the weights (weights()) of a chromosome that trained to the end.

    Running out of GPU memory is a property of the chromosome, not a crash: it becomes status "oom" and the
    GPU is left clean for the next task. Any other exception propagates to the caller.
    """
    try:
        result, G, D = train(ch, images, cfg, seed, device, flip, init_weights)
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        params_g, params_d = param_counts(ch)
        return TrainResult("oom", " ".join(str(e).split())[:500], math.nan, math.nan, (), (), params_g, params_d,
                           0.0, 0.0, device), None
    if result.status != "ok":
        return result, None
    return result, weights(ch, G, D)


def weights(ch: Genome, G: torch.nn.Module, D: torch.nn.Module) -> bytes:
    """The weights file of a trained chromosome: torch.save of {"chromosome", "generator", "discriminator"}, what
    load_generator, load_weights and `neuroevo sample` read."""
    out = io.BytesIO()
    torch.save({
        "chromosome": ch.to_json(),
        "generator": {k: v.cpu() for k, v in G.state_dict().items()},
        "discriminator": {k: v.cpu() for k, v in D.state_dict().items()},
    }, out)
    return out.getvalue()


@torch.no_grad()
def sample_grid(weights: bytes, n_samples: int, seed: int, device: str = "cpu") -> bytes:
    """A PNG grid of n_samples images from the generator in a weights file (weights()), in eval mode, from noise
    seeded by `seed` and drawn on the CPU: rows of ceil(sqrt(n)), 2 px padding, G's output range to pixels."""
    import torchvision.utils as vutils  # here, not at the top: torchvision adds 2 s to every training worker's start

    ch, G = load_generator(io.BytesIO(weights), device)
    z = noise(ch, n_samples, generator=torch.Generator().manual_seed(seed))
    images = G(z.to(device)).cpu()
    png = io.BytesIO()
    vutils.save_image(images, png, format="png", nrow=int(math.ceil(math.sqrt(n_samples))),
                      normalize=True, value_range=architecture.plan(ch).output_range)
    return png.getvalue()


class WeightsError(ValueError):
    """A weights file torch.load refuses, or one that holds no neuroevo generator; its message is one line that
    names the file."""


def load_generator(path: str | Path | io.BytesIO, device: str = "cpu") -> tuple[Genome, torch.nn.Module]:
    """A saved generator (a weights file, or its bytes), ready to sample from. weights_only: a file that holds
    anything but tensors and plain data (a pickled object that would run code) is refused, as WeightsError."""
    name = "weights" if isinstance(path, io.BytesIO) else str(path)
    expected = "expected a weights.pt that neuroevo wrote"
    try:
        with warnings.catch_warnings():  # e.g. torch's UserWarning on a pickle protocol it does not write
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only's refusal; torch's own reason is its next-to-last paragraph
        reasons = [p for p in str(e).split("\n\n") if p.strip()]
        why = _sentence(reasons[-2]) if len(reasons) >= 3 else "not a torch weights file"
        raise WeightsError(f"{name}: refused by torch.load(weights_only=True): {why}; {expected}") from None
    except (OSError, EOFError, RuntimeError, KeyError, ValueError) as e:  # truncated, empty, not a torch file
        raise WeightsError(f"{name}: not a torch weights file ({type(e).__name__}: {_sentence(str(e)) or 'empty'}); "
                           f"{expected}") from None
    try:
        ch = from_json(state["chromosome"])
        G = build_generator(ch)
        load_state(G, state["generator"])
    except (TypeError, KeyError, IndexError, ValueError, AttributeError, RuntimeError) as e:
        raise WeightsError(f"{name}: not the weights of a neuroevo generator ({type(e).__name__}: "
                           f"{_sentence(str(e))}); {expected}") from None
    return ch, G.to(device).eval()


def _sentence(text: str) -> str:
    """An exception's first sentence, on one line."""
    return " ".join(text.split(". ")[0].split())[:300].rstrip(".")
