"""The run directory: the path of every file a run writes, and the one way they are written (atomically).

    RUN_DIR/
      config.yaml                                  the resolved config
      data.json                                    the data cache's manifest and how tasks read it
      state.json                                   the next generation's population and progress, and each logged
                                                   generation's fingerprint (sha256), for --resume and `check`
      generations/NNNN/part-0.parquet              one row per chromosome (runs begun before logs' schema 4:
                                                   generations/generation=NNNN/, see `partitioned`, until
                                                   `neuroevo migrate`)
      best/generation=NNNN/                        weights.pt, samples.png, chromosome.json of the fittest
      weights/generation=NNNN/<chromosome_id>.pt   evolve.keep_weights: what the elites start NNNN from
      generators/generation=NNNN/<chromosome_id>.pt  train.keep all: every chromosome's trained G and D
      report/                                      neuroevo report's plots and page
      tensorboard/                                 tracking.tensorboard: event files for `tensorboard --logdir`
      tracking.json                                the last generation each tracker was sent; the MLflow run
      discarded/                                   damaged generation folders set aside by --resume
      .lock, .lock.json                            held by the one driver that trains the run: who, since when
      ray.log                                      Ray's own log lines, from every start and resume

Every file goes through `write`, so a run killed at any moment leaves each file whole: the old content or the
new. A killed write can leave a hidden temporary file (a leading dot, which pyarrow's dataset discovery
ignores); the next write of the same file replaces it.

One driver at a time trains a run: `claim` locks the folder for the driver's lifetime (readers such as
`neuroevo report` need no lock: every file they read is whole).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import filelock

CONFIG = "config.yaml"
DATA = "data.json"
STATE = "state.json"
LOCK = ".lock"
HOLDER = ".lock.json"


class ClaimError(Exception):
    """The run directory cannot be had: another run made it first, or another driver is training it."""


def config_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / CONFIG


def data_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / DATA


def state_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / STATE


def generations_dir(run_dir: str | Path) -> Path:
    """The Parquet dataset: a folder NNNN per generation, whose file holds `generation` as a column."""
    return Path(run_dir) / "generations"


HIVE = "generation="  # the folders' prefix in runs begun before logs' schema_version 4


def partitioned(run_dir: str | Path) -> bool:
    """Whether the run names its generation folders generation=NNNN, as runs begun before logs' schema_version 4 do:
    `generation` is then in the folder's name only, and such a run keeps that layout, on resume too, so that no
    dataset mixes the two (a reader's hive partition would clash with the files' column). The first generation
    folder found tells, so the check costs the same at generation 500 as at 5."""
    try:
        with os.scandir(generations_dir(run_dir)) as entries:
            return next((e.name.startswith(HIVE) for e in entries if generation_of(e.name) is not None), False)
    except (FileNotFoundError, NotADirectoryError):
        return False


def generation_dir(run_dir: str | Path, generation: int) -> Path:
    """The generation's folder under whichever name it has (a run that `neuroevo migrate` stopped half-way holds
    both kinds); a generation not logged yet is named as the run's others are (`partitioned`)."""
    plain = generations_dir(run_dir) / f"{generation:04d}"
    older = plain.with_name(HIVE + plain.name)
    for folder in (plain, older):
        if folder.is_dir():
            return folder
    return older if partitioned(run_dir) else plain


def hive(folder: str | Path) -> bool:
    """Whether a generation's folder is named generation=NNNN: then its file holds no `generation` column."""
    return Path(folder).name.startswith(HIVE)


def generation_file(run_dir: str | Path, generation: int) -> Path:
    return generation_dir(run_dir, generation) / "part-0.parquet"


def generation_of(folder: str | Path) -> int | None:
    """The generation a folder of the dataset is for (NNNN, or generation=NNNN), None for any other folder."""
    name = Path(folder).name.removeprefix(HIVE)
    return int(name) if name.isdigit() and name.isascii() else None


def logged_generations(run_dir: str | Path) -> list[int]:
    """The generations that have a folder in the dataset, whatever it holds."""
    folders = generations_dir(run_dir).glob("*")
    return sorted(g for g in map(generation_of, folders) if g is not None)


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


def tensorboard_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "tensorboard"


def tracking_file(run_dir: str | Path) -> Path:
    return Path(run_dir) / "tracking.json"


def discarded_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "discarded"


def has_logged(path: str | Path) -> bool:
    """Whether `path` holds a run that has saved a state or logs: what a resume may repair, so locks first."""
    return state_file(path).exists() or generations_dir(path).is_dir()


@contextmanager
def claim(run_dir: str | Path, new: bool) -> Iterator[Path]:
    """Hold the run directory for the lifetime of the one driver that trains it; ClaimError if another has it.

    new: make the folder, which must not exist (os.mkdir is atomic: of two runs started at the same instant with
    one run_id, exactly one gets it). The lock is the kernel's (flock), so it dies with its process: a driver
    killed with SIGKILL leaves nothing to clean up. A new run whose start fails on a file-system error before its
    first state.json is removed again: it has trained nothing, and a half-written folder would block its run_id.
    """
    run_dir = Path(run_dir)
    if new:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
        except FileExistsError:
            raise ClaimError(f"run_id: {run_dir} already exists; choose another run_id or out_dir, or --resume it") \
                from None
    lock = filelock.FileLock(run_dir / LOCK, timeout=0)
    try:
        try:
            lock.acquire()
        except filelock.Timeout:
            raise ClaimError(f"{run_dir}: another neuroevo driver is training this run ({holder(run_dir)}); "
                             f"wait for it to end, or stop it first") from None
        write(run_dir / HOLDER, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                            "started": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"}) + "\n")
        yield run_dir
    except OSError:
        if new and not state_file(run_dir).exists():
            _release(run_dir, lock)
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        _release(run_dir, lock)


def holder(run_dir: str | Path) -> str:
    """Who holds the run's lock, as `claim` recorded it: e.g. 'pid 4242 on node-1 since 2026-01-02 10:11:12 UTC'."""
    try:
        h = json.loads((Path(run_dir) / HOLDER).read_text())
        return f"pid {h['pid']} on {h['host']} since {h['started']}"
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or by a driver that died writing it
        return "its pid is not recorded yet"


def claimed(run_dir: str | Path) -> bool:
    """Whether a driver holds the run (`claim`), tested without writing anything and without keeping the lock: a
    shared, non-blocking flock on a read-only descriptor fails exactly while claim's exclusive one is held (filelock
    locks with flock), and goes with the descriptor. A .lock.json that a killed driver left says nothing here."""
    import fcntl  # Unix, as the lock is; imported here so that the rest of this module imports anywhere

    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except OSError:  # no driver has claimed it yet
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def _release(run_dir: Path, lock: filelock.FileLock) -> None:
    if lock.is_locked:
        try:
            (run_dir / HOLDER).unlink(missing_ok=True)
        except OSError:  # e.g. the file system turned read-only; the next holder overwrites it
            pass
        lock.release()


def move(folder: str | Path, target: str | Path) -> Path:
    """Rename a folder within the run directory, atomically: a reader finds it under one name or the other."""
    target = Path(target)
    if target.exists():  # os.rename would replace an empty folder
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
    os.rename(folder, target)
    _fsync_dir(target.parent)
    return target


def ray_log(run_dir: str | Path) -> Path:
    return Path(run_dir) / "ray.log"


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
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, str(tmp)):
            e.filename, e.filename2 = str(path), None  # a full disk's error names the file the user knows
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
