"""A chromosome's GPU memory while it trains, estimated from its genes, and the share of one GPU that fits it.

Pure functions of the chromosome (no torch), so the driver can size every task before it asks Ray for one.
"""

from __future__ import annotations

from neuroevo.genome import Chromosome, param_counts

FLOAT_BYTES = 4  # float32 weights, gradients, momenta and activations
CUDA_CONTEXT_BYTES = 512 * 2**20  # every task is its own process, with its own CUDA context and kernels
HEADROOM = 1.5  # allocator rounding, cuDNN workspaces, gradients alive during the backward pass
SHARES = (0.125, 0.25, 0.5, 1.0)  # halves tile a GPU exactly, so mixed shares leave no unusable remainder


def activation_elements(ch: Chromosome) -> int:
    """Floats that autograd keeps for the backward pass at the peak of one DCGAN step: G's graph (kept for G's
    update) plus D's graphs on a real and a fake batch (both alive during D's backward)."""
    g = ch.noise_channels * ch.noise_side**2  # z
    side = ch.noise_side
    for b in ch.g_blocks:
        side += b.kernel - 1
        g += 3 * b.channels * side**2  # ConvTranspose, BatchNorm and PReLU outputs
    g += 2 * ch.image_channels * ch.image_size**2  # the output ConvTranspose and tanh

    d = ch.image_channels * ch.image_size**2  # D's input batch
    side = ch.image_size
    for b in ch.d_blocks:
        side -= b.kernel - 1
        d += 3 * b.channels * side**2  # Conv, BatchNorm and PReLU outputs
    d += 3 * ch.d_hidden + 2  # FC hidden, its PReLU, the FC to 1 and the sigmoid
    return ch.batch_size * (g + 2 * d)


def training_bytes(ch: Chromosome) -> int:
    """GPU memory one training task needs: CUDA context, then weights, gradients and SGD momenta of G and D,
    then saved activations, with headroom."""
    params = sum(param_counts(ch))
    return CUDA_CONTEXT_BYTES + round(HEADROOM * FLOAT_BYTES * (3 * params + activation_elements(ch)))


def gpu_share(ch: Chromosome, gpu_memory_gb: float) -> float:
    """The smallest of SHARES of one GPU with gpu_memory_gb GiB that holds the chromosome's training; a whole
    GPU when even that is too small."""
    need = training_bytes(ch) / (gpu_memory_gb * 2**30)
    return min((s for s in SHARES if s >= need), default=1.0)
