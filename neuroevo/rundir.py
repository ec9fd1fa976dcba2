"""The run directory: the path of every file a run writes, and the one way they are written (atomically).

    RUN_DIR/
      config.yaml                                  the resolved config
      data.json                                    the data cache's manifest and how tasks read it
      state.json                                   every generation's population, for --resume
      generations/generation=NNNN/part-0.parquet   one row per chromosome
      best/generation=NNNN/                        weights.pt, samples.png, chromosome.json of the fittest
      weights/generation=NNNN/<chromosome_id>.pt   evolve.keep_weights: what the elites start NNNN from
      generators/generation=NNNN/<chromosome_id>.pt  train.keep all: every chromosome's trained G and D
      report/                                      neuroevo report's plots and page
      discarded/                                   damaged generation folders set aside by --resume

Every file goes through `write`, so a run killed at any moment leaves each file whole: the old content or the
new. A killed write can leave a hidden temporary file (a leading dot, which pyarrow's dataset discovery
ignores); the next write of the same file replaces it.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG = "config.yaml"
DATA = "data.json"
STATE = "state.json"


def config_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONFIG


def data_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / DATA


def state_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / STATE


def generations_dir(run_dir: str | Path) -> Path:
    """The Parquet dataset: hive partitions generation=NNNN."""
    return Path(run_dir) / "generations"


def generation_dir(run_dir: str | Path, generation: int) -> Path:
    return generations_dir(run_dir) / f"generation={generation:04d}"


def generation_file(run_dir: str | Path, generation: int) -> Path:
    return generation_dir(run_dir, generation) / "part-0.parquet"


def logged_generations(run_dir: str | Path) -> list[int]:
    """The generations that have a folder in the dataset, whatever it holds."""
    return sorted(int(p.name.split("=")[1]) for p in generations_dir(run_dir).glob("generation=*")
                  if p.name.split("=")[1].isdigit())


def best_dir(run_dir: str | Path, generation: int) -> Path:
    return Path(run_dir) / "best" / f"generation={generation:04d}"


def best_weights(run_dir: str | Path, generation: int) -> Path:
    return best_dir(run_dir, generation) / "weights.pt"


def best_samples(run_dir: str | Path, generation: int) -> Path:
    return best_dir(run_dir, generation) / "samples.png"


def best_chromosome(run_dir: str | Path, generation: int) -> Path:
    return best_dir(run_dir, generation) / "chromosome.json"


def best_generations(run_dir: str | Path) -> list[int]:
    """The generations whose best weights are saved."""
    return sorted(int(p.parent.name.split("=")[1]) for p in Path(run_dir).glob("best/generation=*/weights.pt"))


def weights_file(run_dir: str | Path, generation: int, chromosome_id: str) -> Path:
    """evolve.keep_weights: the weights an elite starts `generation` from."""
    return Path(run_dir) / "weights" / f"generation={generation:04d}" / f"{chromosome_id}.pt"


def generator_file(run_dir: str | Path, generation: int, chromosome_id: str) -> Path:
    """train.keep all: the weights of every chromosome that trained in `generation`."""
    return Path(run_dir) / "generators" / f"generation={generation:04d}" / f"{chromosome_id}.pt"


def report_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "report"


def discarded_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "discarded"


def write(path: str | Path, content: bytes | str) -> Path:
    """Write a whole file atomically: a temporary file beside it, fsync, rename over it, fsync the folder.

    A reader sees the old file or the new one, never part of one; after a crash the old one is still there.
    Creates the folders it needs. str content is written as UTF-8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # same folder: os.replace cannot cross filesystems
    try:
        with open(tmp, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # makes the rename itself survive a power cut
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:  # filesystems that cannot sync a folder
        pass
    finally:
        os.close(fd)
