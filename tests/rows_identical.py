"""Every preset's log rows, fingerprinted: a change that must not change behaviour leaves them byte-identical.

Each preset runs two generations at a tiny size (the same overrides for every preset: 16 px, 128 images, two
training steps, a population of 4), on the real CIFAR-10 subset where it is beside the checkout (the CIFAR and
ImageNet presets read it as an image folder), else on the demo's generated pictures. The fingerprint of a run is
the sha256 of its rows' deterministic columns (everything but times, hosts and devices), as canonical JSON, in the
columns of the log schema the fingerprints were recorded with (their `schema_version`): a column added since is no
change of behaviour, and is compared once the fingerprints are recorded again.

    python tests/rows_identical.py            # compare with tests/fixtures/rows.json; exit 1 on any difference
    python tests/rows_identical.py --write    # record the fingerprints (only where behaviour is meant to change)

tests/test_rows_identical.py runs the comparison as part of the suite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPECTED = REPO / "tests" / "fixtures" / "rows.json"
SUBSET = Path(os.environ.get("NEUROEVO_SHARED", REPO.parent / "shared")) / "data" / "cifar10-subset" / "train"
PRESETS = ("demo", "cifar10", "cifar100", "imagenet", "v2", "dcgan")
# columns that say when, where and how fast a row was trained, not what
VOLATILE = {"run_id", "train_seconds", "images_per_second", "device", "node", "gpu_ids", "started_at", "finished_at",
            "quality_seconds"}
TINY = ["data.image_size=16", "data.subset=128", "train.epochs=1", "train.steps_per_epoch=2", "train.sample_grid=4",
        "evolve.population=4", "evolve.generations=2", "evolve.elite_fraction=0.5", "resources.num_cpus=1",
        "resources.num_gpus=0", "tracking.tensorboard=false"]
SPACE = {"seed-v1": ["space.channels=[5,12]", "space.g_blocks=[1,3]", "space.d_blocks=[1,2]", "space.d_hidden=[30,40]",
                     "space.batch_size=32", "space.max_params=200000"],
         "v2": ["space.channels=[8,16]", "space.fc_units=[16,32]", "space.g_blocks=[0,2]", "space.d_blocks=[1,2]",
                "space.batch_size=32", "space.max_params=400000", "space.schedules=[none]"]}


def overrides(preset: str) -> list[str]:
    space = "v2" if preset in ("v2", "dcgan") else "seed-v1"
    data = (["data.source=folder", f"data.root={SUBSET}"] if SUBSET.is_dir() and preset != "demo"
            else ["data.source=demo"])
    return TINY + SPACE[space] + data


def fingerprint(run_dir: Path, version: int) -> str:
    """The rows as log schema `version` holds them."""
    import pandas as pd

    from neuroevo.store import logs

    frames = [pd.read_parquet(f) for f in sorted((run_dir / "generations").rglob("*.parquet"))]
    rows = pd.concat(frames).drop(columns=[c for c in VOLATILE if c in frames[0].columns])
    rows = rows[[c for c in rows.columns if c in logs.schema_of(version).names]].assign(schema_version=version)
    rows = rows.sort_values(["generation", "chromosome_id"]).reset_index(drop=True)
    text = rows.to_json(orient="records", double_precision=15, date_format="iso")
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprints(presets: tuple[str, ...] = PRESETS, version: int | None = None) -> dict:
    """Every preset's fingerprint in the columns of log schema `version` (None: the current one)."""
    import neuroevo
    from neuroevo.store import logs

    version = version or logs.SCHEMA_VERSION
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("NEUROEVO_CACHE", str(Path(tmp) / "cache"))
        for preset in presets:
            result = neuroevo.run(preset, overrides(preset), out_dir=str(Path(tmp) / "runs"), run_id=preset)
            out[preset] = fingerprint(result.run_dir, version)
    return {"data": data_name(), "rows": out, "schema_version": version}


def data_name() -> str:
    """What the fingerprints are recorded under: the data they are taken on."""
    return "cifar10-subset" if SUBSET.is_dir() else "demo"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"record the fingerprints in {EXPECTED}")
    args = parser.parse_args()
    if args.write:
        got = fingerprints()
        EXPECTED.parent.mkdir(exist_ok=True)
        recorded = json.loads(EXPECTED.read_text()) if EXPECTED.is_file() else {}
        recorded[got["data"]] = {**got["rows"], "schema_version": got["schema_version"]}
        EXPECTED.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
        print(f"wrote {EXPECTED}")
        return 0
    expected = json.loads(EXPECTED.read_text())[data_name()]
    got = fingerprints(version=expected.get("schema_version", 4))  # recorded before the version was: schema 4
    changed = [p for p in PRESETS if got["rows"][p] != expected.get(p)]
    for p in PRESETS:
        print(f"{p:10s} {'changed' if p in changed else 'identical'}")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
