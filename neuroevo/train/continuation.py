"""A training paused after some steps, as bytes that a later call of trainer.train_leg continues from exactly.

It holds everything the rest of the training depends on: G's and D's weights, the average of G's weights (the g_ema
gene; ema.py) and its step count, both optimisers' and learning-rate schedules' state, the random states (torch's
global generator, and on a GPU its CUDA one; the trainer's shuffle and flip generators, and DiffAugment's), where in
the epoch the training stopped (the epoch's batch order and the step), the D and G steps taken (n_critic counts D
steps), and the losses so far (the epoch's D and G step counts and sums). torch.save of plain data and tensors, read back with weights_only like a weights file (checkpoint.py): bytes
that hold anything else are refused.

To the driver the bytes are opaque: it passes them from one rung's task to the next through the object store.
"""

from __future__ import annotations

import io
from collections import Counter
from typing import Any

import torch


def to_bytes(state: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    torch.save(state, out)
    return out.getvalue()


def from_bytes(blob: bytes) -> dict[str, Any]:
    return torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)


def schedule_state(schedule: torch.optim.lr_scheduler.LRScheduler) -> dict[str, Any]:
    """A schedule's state_dict in plain data: MultiStepLR keeps its milestones in a Counter, which weights_only
    refuses."""
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in schedule.state_dict().items()}


def load_schedule(schedule: torch.optim.lr_scheduler.LRScheduler, state: dict[str, Any]) -> None:
    schedule.load_state_dict({k: Counter(v) if k == "milestones" else v for k, v in state.items()})


def steps_done(blob: bytes) -> int:
    """The training steps behind a continuation."""
    return int(from_bytes(blob)["steps"])
