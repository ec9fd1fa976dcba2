"""The errors a user sees as one line: bad input, a stopped run, a file-system fault. A leaf: it imports nothing of
neuroevo, so that every stage can raise them and the CLI and the API can catch them."""

from __future__ import annotations

import errno
from pathlib import Path


class ConfigError(ValueError):
    """A bad configuration; its message is one line naming the key."""


class InputError(ValueError):
    """Bad input, found before anything is trained or written: its message is one line naming the key, file, run
    directory or cluster, and what was expected."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; raised once Ray is stopped. Every logged generation is kept.

    signum: which signal; run_dir: the run's directory (None: stopped before it was known); logged: how many
    generations are logged there (None: stopped before the run started, so nothing of it is)."""

    def __init__(self, signum: int, run_dir: Path | None, logged: int | None):
        super().__init__(signum)
        self.signum, self.run_dir, self.logged = signum, run_dir, logged

    def __str__(self) -> str:
        if self.logged is None:
            return "interrupted before the run started: nothing of it is logged"
        return f"interrupted: {logged_text(self.logged)} in {self.run_dir}; the running one was stopped"


def logged_text(completed: int) -> str:
    """What of a stopped run is logged: 'no generation is logged yet', 'generation 0 is logged', 'generations 0-3
    are logged'."""
    return ("no generation is logged yet" if not completed else "generation 0 is logged" if completed == 1
            else f"generations 0-{completed - 1} are logged")


class FileSystemFault(Exception):
    """A file-system fault of the machine (a full disk, a read-only mount, a path in the way) stopped the run; raised
    once Ray is stopped, from the OSError. Its message is `PATH: what is wrong`; run_dir is None where nothing of the
    run is left (a new run that had trained nothing is removed), else `logged` generations are logged there."""

    def __init__(self, message: str, run_dir: Path | None, logged: int):
        super().__init__(message)
        self.run_dir, self.logged = run_dir, logged


# A file-system error that the machine, not neuroevo, causes: a full disk, a read-only mount, a path in the way.
FILE_SYSTEM_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder, and it cannot be created there",  # e.g. a folder under /proc
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "is in the way: a file where a folder should be",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file is too large for the file system",
}


def file_system_fault(e: OSError) -> str | None:
    """`PATH: what is wrong` for an environment's file-system fault; None for any other OSError (a bug: traceback)."""
    if e.errno not in FILE_SYSTEM_FAULTS or not e.filename:
        return None
    return f"{e.filename}: {FILE_SYSTEM_FAULTS[e.errno]}"
