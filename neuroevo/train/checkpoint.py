"""A trained chromosome's weights file: written once by its training task, read by everything that samples from it
(`neuroevo sample`, the report, quality, a child that continues). torch.save of {"chromosome", "generator",
"discriminator"}, and "raw_generator" where the chromosome averages G's weights (the g_ema gene): then "generator" is
the average, which everything samples from, and "raw_generator" the G that trained, which a continuation trains on.
Read back with weights_only, so a file that holds anything but tensors and plain data is refused.
"""

from __future__ import annotations

import io
import math
import pickle
import warnings
from pathlib import Path

import torch

from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.train.model import build_generator, load_state, noise


def load_weights(G: torch.nn.Module, D: torch.nn.Module, weights: bytes) -> None:
    """Continue from the weights file (weights()) of an earlier training (evolve.keep_weights): G as it trained (an
    average of its weights starts afresh from it)."""
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    load_state(G, state.get("raw_generator", state["generator"]))
    load_state(D, state["discriminator"])


def weights(ch: Chromosome, G: torch.nn.Module, D: torch.nn.Module, G_ema: torch.nn.Module | None = None) -> bytes:
    """The weights file of a trained chromosome: torch.save of {"chromosome", "generator", "discriminator"}, what
    load_generator, load_weights and `neuroevo sample` read. With G_ema (the average of G's weights), "generator"
    is G_ema's and "raw_generator" G's."""
    def cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v.cpu() for k, v in module.state_dict().items()}

    state = {"chromosome": ch.to_json(), "generator": cpu(G if G_ema is None else G_ema), "discriminator": cpu(D)}
    if G_ema is not None:
        state["raw_generator"] = cpu(G)
    out = io.BytesIO()
    torch.save(state, out)
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
                      normalize=True, value_range=registry.plan(ch).output_range)
    return png.getvalue()


class WeightsError(ValueError):
    """A weights file torch.load refuses, or one that holds no neuroevo generator; its message is one line that
    names the file."""


def load_generator(path: str | Path | io.BytesIO, device: str = "cpu") -> tuple[Chromosome, torch.nn.Module]:
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
        ch = registry.from_json(state["chromosome"])
        G = build_generator(ch)
        load_state(G, state["generator"])
    except (TypeError, KeyError, IndexError, ValueError, AttributeError, RuntimeError) as e:
        raise WeightsError(f"{name}: not the weights of a neuroevo generator ({type(e).__name__}: "
                           f"{_sentence(str(e))}); {expected}") from None
    return ch, G.to(device).eval()


def _sentence(text: str) -> str:
    """An exception's first sentence, on one line."""
    return " ".join(text.split(". ")[0].split())[:300].rstrip(".")
