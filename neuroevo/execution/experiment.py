"""One experiment from start to end: the checks that need no Ray, the run on Ray, and Ray stopped whatever happens.

Everything that can be wrong with the input is found before Ray starts: the config, the run directory, the data, and
whether the search space yields chromosomes under max_params; each raises InputError, whose message is the one line
that `neuroevo run` prints. `neuroevo run` (cli.py) and `neuroevo.run` (api.py) both run through `execute`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from neuroevo import config, errors
from neuroevo.errors import FileSystemFault, InputError, Interrupted, file_system_fault
from neuroevo.execution import cluster
from neuroevo.space import registry
from neuroevo.store import rundir, state, tracking
from neuroevo.store.state import RunState
from neuroevo.train import data


def _say(line: str) -> None:
    print(line, flush=True)  # each line as it happens, also into a pipe or a job's log


@dataclass(frozen=True)
class Request:
    """What to run, and where: `neuroevo run`'s arguments."""
    config: str | None = None  # a YAML file or a preset; None: demo, or with resume the run's own config
    overrides: tuple[str, ...] = ()  # "key=value", the value read as YAML
    resume: str | None = None  # a run directory to continue
    address: str | None = None  # a Ray cluster to join (else $RAY_ADDRESS, else a private local one)
    dashboard: bool = False
    connect_timeout: float = 30.0
    verbose: bool = False  # Ray's own output on the terminal, not in RUN_DIR/ray.log
    quiet: bool = False  # one line per generation (progress.py)


@dataclass(frozen=True)
class Outcome:
    run_dir: Path
    trained: bool  # False: every generation was logged already (a finished run resumed), nothing ran


@dataclass(frozen=True)
class Prepared:
    cfg: config.RunConfig
    run_id: str
    run_dir: Path
    images: data.Images
    state: RunState | None  # None: a new run
    redo: tuple[int, ...]  # logged generations to train again (damaged files)
    reference: object | None  # quality.Reference of the images, with quality.evaluate on


def execute(request: Request, say: Callable[[str], None] = _say) -> Outcome:
    """Check the input, then train every generation not yet logged, on the cluster joined or a private one.

    `say` takes the lines printed at start (the run, its resolved config, its data). Raises InputError (before Ray
    starts), Interrupted (Ctrl-C or SIGTERM, from the start on; Ray stopped first), FileSystemFault, or
    rundir.ClaimError's message as InputError. On return or raise, SIGINT and SIGTERM are ignored (a second Ctrl-C
    must not cut the stopping short): a caller that goes on restores its own handlers.
    """
    _received.clear()
    cluster.on_signals(_interrupt)
    # A resumed run is locked before anything is written to it (a config.yaml restored from its logs, a repaired
    # state.json): a second driver started on a live run is refused having changed nothing.
    resumed = Path(request.resume) if request.resume else None
    held = resumed is not None and rundir.has_logged(resumed)
    try:
        with rundir.claim(resumed, new=False) if held else contextlib.nullcontext():
            return _run(request, say, held)
    except rundir.ClaimError as e:
        raise InputError(str(e)) from None


def _run(request: Request, say: Callable[[str], None], held: bool) -> Outcome:
    """execute, with the run's lock already `held` or taken once Ray is up."""
    try:
        p = _prepare(request, say)
    except KeyboardInterrupt as e:
        raise _interrupted(None, e) from None
    cfg, run_dir = p.cfg, p.run_dir
    if p.state is not None and p.state.completed >= cfg.evolve.generations and not p.redo:
        say(f"{run_dir}: all {cfg.evolve.generations} generations are already logged")
        return Outcome(run_dir, trained=False)
    if not request.verbose:
        cluster.capture_log()
    interrupted, fault, claim = None, None, None
    try:
        verb = f"resuming at generation {p.state.completed if p.state else 0}" if request.resume else "run"
        say(f"neuroevo {verb} {p.run_id} (seed {cfg.seed})")
        say(config.to_yaml(cfg).removesuffix("\n") if request.verbose else summary(request, cfg, run_dir))
        shared = data.for_tasks(p.images, cfg.data)
        print_data(p.images, shared, say)
        _init_ray(request)
        from neuroevo.execution import (  # Ray loads only once the input is known to be good
            capacity,
            loop,
            progress,
            task,
        )

        cap = capacity.read()  # the start-up's: the request line and the estimate
        say(task.describe_request(cfg, cap))

        with contextlib.nullcontext() if held else rundir.claim(run_dir, new=not request.resume):
            cluster.keep_log(rundir.ray_log(run_dir))
            _write_run_files(p, shared, bool(request.resume))
            with progress.quiet(request.quiet):
                loop.evolve(cfg, p.run_id, run_dir, shared, p.state, p.redo, p.reference, cap)
    except KeyboardInterrupt as e:
        interrupted = e
    except rundir.ClaimError as e:
        claim = e
    except OSError as e:
        if file_system_fault(e) is None:
            raise
        fault = e
    finally:
        cluster.stop()
        cluster.release_log()
    if interrupted is not None:
        raise _interrupted(run_dir, interrupted) from None
    if claim is not None:
        raise InputError(str(claim)) from None
    if fault is not None:
        logged = state.completed(run_dir) or 0
        raise FileSystemFault(file_system_fault(fault), run_dir if run_dir.is_dir() else None, logged) from fault
    return Outcome(run_dir, trained=True)


def summary(request: Request, cfg: config.RunConfig, run_dir: Path) -> str:
    """The config in two lines: what runs, on what, scored how, and where its whole config is saved."""
    source = "the run's own config" if request.resume and not request.config else request.config or "demo"
    sets = f" with {len(request.overrides)} --set" if request.overrides else ""
    e, d = cfg.evolve, cfg.data
    return (f"config: {source}{sets}: space {cfg.space.name}, population {e.population} x {e.generations} generations "
            f"(strategy {e.strategy}), train.epochs {cfg.train.epochs}, fitness {cfg.fitness.kind}, data {d.source} at "
            f"{d.image_size} px\nconfig: saved whole in {rundir.config_file(run_dir)} (--verbose prints it here)")


def _prepare(request: Request, say: Callable[[str], None]) -> Prepared:
    """All checks that need no Ray: config, run directory, search space, data."""
    if request.resume:
        from neuroevo.store import resume  # pandas and pyarrow: only a resumed run reads its logs before Ray starts
    try:
        cfg = (resume.requested_config(Path(request.resume), request.config, request.overrides) if request.resume
               else config.load(request.config, request.overrides))
        tracking.check(cfg)
    except (errors.ConfigError, tracking.TrackingError) as e:
        raise InputError(str(e)) from None
    if request.resume:
        run_dir = Path(request.resume)
        run_id = run_dir.name
    else:
        run_id = cfg.run_id or f"{datetime.now():%Y%m%d-%H%M%S}-seed{cfg.seed}"
        run_dir = Path(cfg.out_dir) / run_id
        if run_dir.exists():
            raise InputError(f"run_id: {run_dir} already exists; choose another run_id or out_dir, or --resume it")
    cfg = dataclasses.replace(cfg, run_id=run_id)  # config.yaml says which run it is
    try:
        registry.sample(cfg.space, cfg.data.image_size, cfg.data.channels, np.random.default_rng(cfg.seed))
    except registry.SpaceTooTight as e:
        raise InputError(str(e)) from None
    saved, redo = resume.plan(run_dir, cfg) if request.resume else (None, ())
    images = load_data(cfg)
    ref = reference(cfg, images, say) if cfg.quality.evaluate != "off" else None
    return Prepared(cfg, run_id, run_dir, images, saved, redo, ref)


def reference(cfg: config.RunConfig, images: data.Images, say: Callable[[str], None] = _say,
              progress: bool | None = None) -> object:
    """The real images' reference statistics for FID and KID: from beside the data cache, or computed there first
    (once per cache; on this machine's GPU if it has one). Loads the Inception weights, so a missing or corrupt
    file stops the run here. progress: show their computation (default: on a terminal)."""
    from neuroevo.train import quality

    try:
        ref = quality.reference(images, max_images=cfg.quality.reference_images, batch_size=cfg.quality.batch_size,
                                device=quality.local_device(), weights=cfg.quality.extractor_weights,
                                directory=data.cache_dir(cfg.data),
                                progress=sys.stderr.isatty() if progress is None else progress)
    except quality.QualityError as e:
        raise InputError(str(e)) from None
    say(f"quality: reference statistics of {ref.count:,} real images ({ref.path or 'in memory'})")
    sys.stdout.flush()
    return ref


def load_data(cfg: config.RunConfig) -> data.Images:
    """The images from the data cache, prepared first (with a progress bar) if missing or stale."""
    try:
        images = data.load(cfg.data, cfg.seed, progress=sys.stderr.isatty())
    except data.DataError as e:
        raise InputError(str(e)) from None
    if len(images.array) < cfg.space.batch_size:
        raise InputError(f"data: {len(images.array)} images is fewer than one batch (space.batch_size={cfg.space.batch_size})")
    check_steps(cfg, len(images.array))
    return images


def check_steps(cfg: config.RunConfig, n_images: int) -> None:
    """An epoch is at most one pass over the data, and long enough for a G step after n_critic D steps."""
    bs, asked = cfg.space.batch_size, cfg.train.steps_per_epoch
    batches = n_images // bs
    if asked is not None and asked > batches:
        raise InputError(f"train.steps_per_epoch: {asked} is more than one pass over the data, which is {batches} "
                         f"batches ({n_images} images, space.batch_size={bs}); set at most {batches}, or null")
    steps = asked or batches
    n_critic = max([*getattr(cfg.space, "n_critics", (1,)),
                    *(registry.seed(name, cfg.data.image_size, cfg.data.channels, bs).recipe.n_critic
                      for name in cfg.evolve.seed_chromosomes)])
    if n_critic > steps:
        raise InputError(f"space.n_critics: {n_critic} D steps per G step do not fit an epoch of {steps} batches "
                         f"(train.steps_per_epoch, at most one pass over {n_images} images in batches of {bs})")


def print_data(images: data.Images, shared: np.ndarray | data.Cache | None = None,
               say: Callable[[str], None] = _say) -> None:
    say(f"data: {images.description}")
    for warning in images.warnings:
        say(f"data: warning: {warning}")
    if shared is not None:
        say(f"data: tasks read the images from {data.record(images, shared)['tasks_read']}")
        sys.stdout.flush()


def _init_ray(request: Request) -> None:
    """Join the cluster at --address or $RAY_ADDRESS, else start a private one (cluster.py); Ctrl-C and SIGTERM
    stop the run from here on, as KeyboardInterrupt."""
    try:
        cluster.start(request.address, request.dashboard, request.connect_timeout, request.verbose)
    except cluster.ClusterError as e:
        raise InputError(str(e)) from None
    cluster.on_signals(_interrupt, signal.SIGTERM)  # again: ray.init installs a handler of its own


def _interrupt(signum: int, frame: object) -> None:
    cluster.on_signals(signal.SIG_IGN)  # a second Ctrl-C must not cut the stopping short
    _received.append(signum)  # out of ray.get/ray.wait, Ray may raise a KeyboardInterrupt of its own instead
    raise cluster.Interrupted(signum)  # SIGTERM (e.g. `ray job stop`) stops a run the way Ctrl-C does


_received: list[int] = []


def _write_run_files(p: Prepared, shared: np.ndarray | data.Cache | None, resumed: bool) -> None:
    """config.yaml (written once; on resume again only where an allowed change changed it), data.json; damaged
    generations moved aside."""
    path, text = rundir.config_file(p.run_dir), config.to_yaml(p.cfg)
    if not (resumed and path.is_file() and path.read_bytes() == text.encode("utf-8")):
        rundir.write(path, text)
    rundir.write(rundir.data_file(p.run_dir), json.dumps(data.record(p.images, shared), indent=1) + "\n")
    if resumed:
        from neuroevo.store import resume

        resume.set_aside(p.run_dir, p.cfg, p.redo)


def _interrupted(run_dir: Path | None, e: KeyboardInterrupt) -> Interrupted:
    """What the interrupt stopped: the signal (Ctrl-C's SIGINT unless told otherwise), and what is logged."""
    cluster.on_signals(signal.SIG_IGN)
    signum = _received[0] if _received else getattr(e, "signum", signal.SIGINT)
    if run_dir is None or not rundir.config_file(run_dir).is_file():
        return Interrupted(signum, run_dir, None)
    return Interrupted(signum, run_dir, state.completed(run_dir) or 0)
