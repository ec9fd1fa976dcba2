"""Resuming a run: what a resumed run may change of its config, and what of its logged generations it keeps."""

from __future__ import annotations

from neuroevo.config import RunConfig, flat

# Keys a resumed run may change: they do not change which chromosomes are drawn or how they are scored (the
# fast-path switches change a GPU's float rounding at most).
RESUMABLE_CHANGES = ("out_dir", "run_id", "evolve.generations", "evolve.dispatch", "evolve.mode", "resources.",
                     "train.bf16", "train.channels_last", "train.data_on_gpu", "train.cudnn_benchmark", "train.compile",
                     "quality.batch_size", "tracking.")


def experiment_differences(saved: RunConfig, requested: RunConfig) -> list[str]:
    """'key (saved -> requested)' for each key that would change the experiment if a run were resumed with it."""
    a, b = flat(saved), flat(requested)
    return [f"{k} ({a.get(k)!r} -> {b.get(k)!r})" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not k.startswith(RESUMABLE_CHANGES)]
