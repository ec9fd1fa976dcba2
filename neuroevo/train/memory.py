"""A chromosome's GPU memory while it trains, estimated from its layer plan, and the share of one GPU that fits it.

Pure functions of the plan (no torch), so the driver can size every task before it asks Ray for one.
"""

from __future__ import annotations

from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.layer_plan import Layer

FLOAT_BYTES = 4  # float32 weights, gradients, momenta and activations
CUDA_CONTEXT_BYTES = 512 * 2**20  # every task is its own process, with its own CUDA context and kernels
HEADROOM = 1.5  # allocator rounding, cuDNN workspaces, gradients alive during the backward pass
SHARES = (0.125, 0.25, 0.5, 1.0)  # halves tile a GPU exactly, so mixed shares leave no unusable remainder

# Activations whose backward reads their input; the others (relu, sigmoid, tanh) read their output.
SAVE_INPUT = ("leaky_relu", "prelu", "swish", "softplus")


def saved_by(layer: Layer) -> int:
    """Floats per image that autograd keeps for one layer's backward, besides the layer's input (which the layer
    before, or the network's input, accounts for as its output).

    The convolution's output is kept by a norm, or by an activation that reads its input; the norm's output by
    such an activation; the activation's output by relu, sigmoid and tanh, and by whatever comes next (counted
    there) when it is the layer's output. InstanceNorm keeps its mean, inverse deviation and scale per channel of
    each image. A skip adds its input, resized, when the 1x1 convolution reads that; a pooling keeps its input, and
    max pooling its indices (int64: two floats each)."""
    full = layer.c_out * layer.side_out**2  # one tensor at the convolution's output side
    reads_input = layer.activation in SAVE_INPUT
    n = full if layer.norm != "none" or reads_input else 0  # the convolution's output
    n += full if layer.norm != "none" and reads_input else 0  # the norm's output
    n += 3 * layer.c_out if layer.norm == "instance" else 0
    if layer.skip:  # the activation's output is summed with the input, and the sum is what goes on
        n += full if layer.activation not in SAVE_INPUT + ("none",) else 0
        n += layer.c_in * layer.side_out**2 if layer.projects_skip and layer.side_in != layer.side_out else 0
    if layer.pool != "none":
        n += full  # the pooling's input: the sum, or the activation's output
        n += 2 * layer.outputs if layer.pool == "max" else 0
    return n + layer.outputs  # what the layer outputs, kept by the layer after it (or by a final sigmoid or tanh)


def batch_norm_state(layer: Layer, calls: int) -> int:
    """Floats BatchNorm keeps whatever the batch: its running mean and variance, and per call the batch's mean and
    inverse deviation."""
    return (2 + 2 * calls) * layer.c_out if layer.norm == "batch" else 0


def activation_elements(ch: Chromosome) -> int:
    """Floats that autograd keeps for the backward pass at the peak of one DCGAN step: G's graph (kept for G's
    update) plus D's graphs on a real and a fake batch (both alive during D's backward). The fake batch D reads is
    G's output, already counted in G's graph."""
    plan = registry.plan(ch)
    image = _elements(plan.image)
    g = _elements(plan.noise) + sum(saved_by(layer) for layer in plan.g)
    d = image + sum(saved_by(layer) for layer in plan.d)
    state = sum(batch_norm_state(layer, 1) for layer in plan.g) + sum(batch_norm_state(layer, 2) for layer in plan.d)
    return ch.batch_size * (g + 2 * d - image) + state


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def training_bytes(ch: Chromosome) -> int:
    """GPU memory one training task needs: CUDA context, then weights, gradients and optimiser state of G and D,
    then saved activations, with headroom."""
    params = sum(registry.param_counts(ch))
    return CUDA_CONTEXT_BYTES + round(HEADROOM * FLOAT_BYTES * (3 * params + activation_elements(ch)))


def gpu_share(ch: Chromosome, gpu_memory_gb: float) -> float:
    """The smallest of SHARES of one GPU with gpu_memory_gb GiB that holds the chromosome's training; a whole
    GPU when even that is too small."""
    need = training_bytes(ch) / (gpu_memory_gb * 2**30)
    return min((s for s in SHARES if s >= need), default=1.0)
