"""A saved generator as files anyone can load without neuroevo: a TorchScript module, its weights as safetensors, and
a small JSON of what it takes and makes.

    G = torch.jit.load("out/generator.pt")
    z = torch.randn(16, *json.load(open("out/generator.json"))["noise_shape"])
    images = G(z)  # 16 x C x H x W, in output_range
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from neuroevo.space import registry
from neuroevo.store import rundir
from neuroevo.train.checkpoint import load_generator


def export(weights: Path, out: Path) -> list[Path]:
    """Write generator.pt (TorchScript), generator.safetensors and generator.json for the generator in `weights`
    (a weights file, checkpoint.weights); returns the paths written, each atomically."""
    ch, G = load_generator(weights)  # in eval mode: BatchNorm uses its running statistics, as `sample` does
    plan = registry.plan(ch)
    with warnings.catch_warnings():  # TorchScript is what torch.jit.load reads anywhere, deprecated or not
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(G)
    module = io.BytesIO()
    torch.jit.save(scripted, module)
    genes = {"chromosome_id": ch.id, "space": ch.space, "noise_shape": list(ch.noise_shape),
             "image_shape": list(plan.image), "output_range": list(plan.output_range),
             "chromosome": json.loads(ch.to_json())}
    state = {k: v.contiguous() for k, v in G.state_dict().items()}
    return [rundir.write(out / "generator.pt", module.getvalue()),
            rundir.write(out / "generator.safetensors", safetensors_bytes(state)),
            rundir.write(out / "generator.json", json.dumps(genes, indent=1) + "\n")]
