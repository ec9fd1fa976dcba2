"""The GPU fast path: bf16 autocast, channels_last, images resident on the GPU, cuDNN benchmark, torch.compile.

Each is a switch in TrainConfig: auto, on or off. switches() turns the switches and what the device offers into
what one training uses. On the CPU every one is off whatever the switches say, so CPU training is the plain
float32 loop, bit for bit, and never calls into CUDA.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from neuroevo.config import TrainConfig

AUTO_DATA_SHARE = 0.25  # auto keeps the images on the GPU if they take at most this share of its free memory
ON_DATA_SHARE = 0.9  # on: if they fit at all, with room for the networks


@dataclass(frozen=True)
class Device:
    """What a device offers the fast path. probe() reads a real one; tests describe one."""

    kind: str  # cpu | cuda
    name: str
    bf16: bool  # native bfloat16 (compute capability 8.0 and up)
    bf16_emulated: bool  # bfloat16 runs at all, natively or emulated
    free_bytes: int
    triton: bool  # torch.compile's GPU backend is installed


CPU = Device("cpu", "cpu", False, False, 0, False)


def probe(device: str) -> Device:
    """The device's capabilities; touches CUDA only for a CUDA device."""
    if not device.startswith("cuda"):
        return CPU
    free, _ = torch.cuda.mem_get_info(device)
    native = torch.cuda.get_device_capability(device) >= (8, 0)
    return Device("cuda", torch.cuda.get_device_name(device), native, native or torch.cuda.is_bf16_supported(), free,
                  importlib.util.find_spec("triton") is not None)


@dataclass(frozen=True)
class FastPathSwitches:
    """What one training uses. All off: the plain float32 loop."""

    bf16: bool = False
    channels_last: bool = False
    data_on_gpu: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """A 4-d input in the memory layout the networks use."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def describe(self) -> str:
        return " ".join(k for k, v in vars(self).items() if v)


def switches(cfg: TrainConfig, dev: Device, data_bytes: int) -> FastPathSwitches:
    """The switches as this device can honour them: an `on` the device cannot do falls back to off."""
    if dev.kind != "cuda":
        return FastPathSwitches()
    share = {"auto": AUTO_DATA_SHARE, "on": ON_DATA_SHARE, "off": 0.0}[cfg.data_on_gpu]
    return FastPathSwitches(
        bf16=dev.bf16 if cfg.bf16 == "auto" else cfg.bf16 == "on" and dev.bf16_emulated,
        channels_last=cfg.channels_last != "off",
        data_on_gpu=0 < data_bytes <= share * dev.free_bytes,
        cudnn_benchmark=cfg.cudnn_benchmark != "off",
        compile=cfg.compile != "off" and dev.triton,
    )


def place(module: nn.Module, dev: torch.device, fp: FastPathSwitches) -> nn.Module:
    """The module on the device, in the planned memory layout; sets cuDNN's benchmark mode for a CUDA device."""
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = fp.cudnn_benchmark  # a worker's next task sets it again
    return module.to(dev, memory_format=torch.channels_last) if fp.channels_last else module.to(dev)


def forward(module: nn.Module, fp: FastPathSwitches, compile: bool | None = None) -> Callable:
    """The module as the training step calls it, every call: compiled and in bf16 autocast as planned, with float32
    outputs (a tensor, or a tuple of them such as D's features and score), so that the losses are computed in
    float32. Without either, the module itself. `compile` overrides the plan (off for a D whose loss needs a
    double backward, which compiled graphs do not support)."""
    fn = torch.compile(module) if (fp.compile if compile is None else compile) else module
    if not fp.bf16:
        return fn

    def autocast_forward(x: torch.Tensor):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = fn(x)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()

    return autocast_forward
