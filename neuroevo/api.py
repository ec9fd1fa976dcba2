"""neuroevo from Python: `run` an experiment (or resume one) and get its Result; `open` a run directory's Result.

A Result reads only what the run wrote (its Parquet logs, config.yaml, best/generation=NNNN/), so it works on a
finished run and on one still training. Bad input raises errors.InputError, with the one-line message that
`neuroevo run` prints (it names the key, and the CLI's option where one is meant: `--set`, `--resume`, `--n`).
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from neuroevo import config, errors
from neuroevo.errors import FileSystemFault, InputError, Interrupted  # noqa: F401 - neuroevo.Interrupted etc.
from neuroevo.execution import experiment
from neuroevo.store import logs, rundir

if TYPE_CHECKING:
    import torch

    from neuroevo.space.chromosome import Chromosome


class NothingTrained(InputError):
    """The run's logs hold no chromosome that trained: there is no best to show or sample."""


def run(config_or_preset: str | os.PathLike | None = None,
        overrides: Mapping[str, Any] | Iterable[str] | None = None, *, out_dir: str | os.PathLike | None = None,
        run_id: str | None = None, resume: str | os.PathLike | None = None, address: str | None = None,
        dashboard: bool = False, connect_timeout: float = 30.0, verbose: bool = False) -> Result:
    """Run an experiment to its end, as `neuroevo run` does, and return its Result.

    config_or_preset: a YAML file or a preset (default demo; with `resume`, the run's own config). overrides: a dict
    {"evolve.population": 4} or "key=value" strings, as `--set`; out_dir and run_id are two of them. resume: a run
    directory to continue. address: a Ray cluster to join (else $RAY_ADDRESS, else a private local one, stopped at
    the end). verbose: print what `neuroevo run` prints (the config, a line per chromosome, a table per
    generation); by default only a line per generation. Ray's own output goes to RUN_DIR/ray.log either way.

    Raises InputError (bad input, before Ray starts); errors.Interrupted, a KeyboardInterrupt, on Ctrl-C (a
    notebook's interrupt too) or SIGTERM, once Ray is stopped (every logged generation is kept; resume= continues);
    errors.FileSystemFault. The signal handlers in force before the call are restored after it.
    """
    overrides = [overrides] if isinstance(overrides, str) else overrides or []
    items = _items(overrides) if isinstance(overrides, Mapping) else list(overrides)
    items += _items({k: v for k, v in (("out_dir", out_dir), ("run_id", run_id)) if v is not None})
    request = experiment.Request(None if config_or_preset is None else os.fspath(config_or_preset), tuple(items),
                                 None if resume is None else os.fspath(resume), address, dashboard, connect_timeout,
                                 verbose=False, quiet=not verbose)
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        raise InputError("ray: this process has called ray.init already; call ray.shutdown() first (neuroevo.run "
                         "starts or joins Ray itself, and stops it at the end)")
    main = threading.current_thread() is threading.main_thread()
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] if main else []
    try:
        outcome = experiment.execute(request, say=print if verbose else _silent)
    finally:
        for s, handler in zip((signal.SIGINT, signal.SIGTERM), handlers):
            signal.signal(s, handler)
    return Result(outcome.run_dir)


def open(run_dir: str | os.PathLike) -> Result:  # noqa: A001 - neuroevo.open(run_dir), as in the README
    """The Result of a run directory, finished or still training."""
    return Result.from_dir(run_dir)


def _items(overrides: Mapping[str, Any]) -> list[str]:
    """{"space.channels": [5, 64]} as ["space.channels=[5, 64]"]: each value written as the YAML that --set reads."""
    return [f"{key}={_yaml(value)}" for key, value in overrides.items()]


def _yaml(value: Any) -> str:
    value = os.fspath(value) if isinstance(value, os.PathLike) else value
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf).removesuffix("...\n").strip()


def _silent(line: str) -> None:
    pass


def best_of(run_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.Series]:
    """The run's logs (query.load_runs) and their fittest row that trained (report.best); NothingTrained where no
    chromosome did, InputError where run_dir is no run directory or holds a damaged log."""
    from neuroevo.analysis import query, report

    try:
        df = query.load_runs([run_dir])
    except query.QueryError as e:
        raise InputError(str(e)) from None
    row = report.best(df)
    if row is None:
        raise NothingTrained(f"{run_dir}: none of its {len(df)} chromosomes has trained successfully yet")
    return df, row


@dataclass(frozen=True)
class Result:
    """A run directory, and what its files say: `logs`, `config`, `best()`, `sample()`."""
    run_dir: Path

    @classmethod
    def from_dir(cls, run_dir: str | os.PathLike) -> Result:
        """InputError where run_dir is no run directory or has logged nothing yet."""
        result = cls(Path(run_dir))
        result._generations()
        return result

    def _generations(self) -> Path:
        from neuroevo.analysis import query

        try:
            return query.logged_run(self.run_dir)
        except query.QueryError as e:
            raise InputError(str(e)) from None

    @property
    def logs(self) -> pd.DataFrame:
        """Every logged row, one per chromosome per generation (logs.read_generations), read again at each access."""
        self._generations()
        return logs.read_generations(self.run_dir)

    @property
    def config(self) -> config.RunConfig:
        """The run's config.yaml, read strictly (config.load_saved)."""
        try:
            return config.load_saved(rundir.config_file(self.run_dir))
        except errors.ConfigError as e:
            raise InputError(str(e)) from None

    def best(self) -> pd.Series:
        """The fittest row that trained, by the one ranking rule (ranking.py); its `chromosome` is the JSON that
        registry.from_json reads. NothingTrained where no chromosome trained."""
        return best_of(self.run_dir)[1]

    def sample(self, n: int = 64, seed: int = 0, out: str | os.PathLike | None = None,
               generation: int | None = None) -> torch.Tensor:
        """n images from the saved generator of the best chromosome (or of generation's best), n x C x H x W in the
        generator's output range ([-1, 1] for tanh); with `out`, also written as one grid image (as `neuroevo
        sample --out`). Loads torch."""
        return self.draw(n, seed, out, generation)[2]

    def draw(self, n: int, seed: int, out: str | os.PathLike | None,
             generation: int | None) -> tuple[Chromosome, int, torch.Tensor]:
        """sample's images, with the chromosome and the generation they come from."""
        from PIL import Image

        from neuroevo.analysis import report
        from neuroevo.train.checkpoint import WeightsError

        out = None if out is None else Path(out)
        if out is not None and n > report.MAX_SAMPLES:
            raise InputError(f"--n: {n:,} images is more than one grid holds (at most {report.MAX_SAMPLES:,})")
        if out is not None and out.suffix.lower() not in Image.registered_extensions():
            raise InputError(f"--out: {out} has no image file extension (e.g. .png, .jpg)")
        generation = int(self.best().generation) if generation is None else generation
        weights = rundir.best_weights(self.run_dir, generation)
        if not weights.is_file():
            saved = rundir.best_generations(self.run_dir)
            raise InputError(f"--generation: {weights} does not exist (saved: {', '.join(map(str, saved)) or 'none'})")
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)  # a missing folder is made; one that cannot be fails here
            if not os.access(out.parent, os.W_OK):  # before the images are drawn (also a read-only mount, for root)
                raise InputError(f"--out: {out.parent} is not writable (read-only file system or no permission)")
        try:
            ch, images = report.draw(weights, n, seed)
        except WeightsError as e:
            raise InputError(str(e)) from None
        if out is not None:
            report.save_grid(ch, images, out)
        return ch, generation, images
