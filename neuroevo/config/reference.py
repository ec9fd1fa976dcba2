"""Where each config key is documented: `neuroevo run --help` prints it."""

from __future__ import annotations

import dataclasses
import textwrap

from neuroevo.config.schema import RunConfig

# The README.md section that documents each key: (section, keys); "data.*" is a whole section of the config, and
# "space.* of space.name X" the keys of space X. `neuroevo run --help` prints it; a test holds every key to it.
DOCUMENTED = (
    ("Running", ("seed", "out_dir", "run_id")),
    ("Data", ("data.*",)),
    ("The search space `seed-v1`", ("space.* of space.name seed-v1 (the default)",)),
    ("Search space v2", ("space.* of space.name v2", "evolve.seed_chromosomes")),
    ("Training and fitness", ("train.epochs", "train.steps_per_epoch", "train.sample_grid", "fitness.lam",
                              "fitness.gamma", "fitness.scale", "fitness.failed", "evolve.population",
                              "evolve.generations")),
    ("Selection strategies", ("evolve.elite_fraction", "evolve.strategy", "evolve.tournament_size",
                              "evolve.keep_weights", "evolve.inherit")),
    ("Sample quality (FID and KID)", ("quality.*", "fitness.kind", "fitness.quality_metric", "fitness.fid_scale",
                                      "fitness.kid_scale", "evolve.seeds_per_chromosome", "train.keep")),
    ("Failures, interrupts and resuming", ("train.timeout_s", "train.max_loss")),
    ("Querying and reporting", ("tracking.*",)),
    ("Clusters", ("resources.*",)),
    ("Performance", ("evolve.dispatch", "evolve.mode", "train.bf16", "train.channels_last", "train.data_on_gpu",
                     "train.cudnn_benchmark", "train.compile")),
)


def documented_in(key: str, space: str = "seed-v1") -> list[str]:
    """The README sections that DOCUMENTED names for `key` (of search space `space`, for space.* keys)."""
    found = []
    for section, patterns in DOCUMENTED:
        for pattern in patterns:
            glob, _, name = pattern.partition(" of space.name ")
            whole = glob.endswith(".*") and key.startswith(glob[:-1])
            if (key == glob or whole) and (not name or name.split()[0] == space):
                found.append(section)
    return found


def keys_help() -> str:
    """DOCUMENTED as `neuroevo run --help` shows it."""
    width = max(len(section) for section, _ in DOCUMENTED) + 4
    rows = [textwrap.fill(", ".join(keys), 110, initial_indent=f"  {section:<{width - 2}}",
                          subsequent_indent=" " * width) for section, keys in DOCUMENTED]
    sections = ", ".join(f.name for f in dataclasses.fields(RunConfig) if dataclasses.is_dataclass(f.default_factory))
    return (f"config: the keys seed, out_dir, run_id and the sections {sections}\n"
            "where README.md documents each key (--set KEY=VALUE):\n" + "\n".join(rows) +
            "\nevery key's default and a comment: neuroevo/config.py; the presets: neuroevo/presets/*.yaml")
