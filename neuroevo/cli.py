"""`neuroevo run | prepare | query | ls | best | report | sample | score`

Everything that can be wrong with the input is found before Ray starts: the config, the data, and whether the
search space yields chromosomes under max_params. Such errors, and a missing run directory or a query DuckDB
cannot run, print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import signal
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from neuroevo import __version__, config, data, genome, logs, ranking, rundir, tracking
from neuroevo.state import RunState, StateError, load_checked
from neuroevo.state import load as load_state
from neuroevo.state import save as save_state

EXIT_BAD_INPUT = 2
RUN_DIR = "OUT_DIR/RUN_ID (e.g. runs/20261202-143000-seed0)"  # what a RUN_DIR argument names
QUERY_COLUMNS = ("run_id, generation, chromosome_id, is_elite, params_g + params_d AS params, d_loss, g_loss, fitness, "
                 "status")


class InputError(Exception):
    pass


# A file-system error that the machine, not neuroevo, causes: a full disk, a read-only mount, a path in the way.
FILE_SYSTEM_FAULTS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "is in the way: a file where a folder should be",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EFBIG: "the file is too large for the file system",
}


def _file_system_fault(e: OSError) -> str | None:
    """`PATH: what is wrong` for an environment's file-system fault; None for any other OSError (a bug: traceback)."""
    if e.errno not in FILE_SYSTEM_FAULTS or not e.filename:
        return None
    return f"{e.filename}: {FILE_SYSTEM_FAULTS[e.errno]}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuroevo", description="Evolve GAN architectures by neuroevolution on Ray.",
                                epilog="start with: neuroevo run (the demo, about a minute); neuroevo COMMAND --help")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an evolution experiment", epilog=config.keys_help(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("config", nargs="?", default=None,
                     help=f"a YAML config file or a preset: {', '.join(config.PRESETS)} (default: demo, or the "
                          "run's own config with --resume)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set evolve.population=4 (repeatable)")
    run.add_argument("--address", default=None,
                     help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    run.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with a local cluster (127.0.0.1)")
    run.add_argument("--connect-timeout", type=_seconds, default=30.0, metavar="SECONDS",
                     help="give up joining the --address cluster after about this long (default: 30)")
    run.add_argument("--verbose", action="store_true",
                     help="show Ray's own log lines and the workers' output (default: in RUN_DIR/ray.log)")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help=f"continue a stopped run, {RUN_DIR}, from its last logged generation; re-train damaged "
                          "generations")
    run.add_argument("--quiet", action="store_true",
                     help="print one line per generation (no progress bar, no line per chromosome)")

    prepare = sub.add_parser("prepare", help="decode and resize a config's images into the data cache, e.g. on each node")
    prepare.add_argument("config", nargs="?", default="demo", help="a YAML config file or a preset (default: demo)")
    prepare.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config key, e.g. --set data.root=imagenet/train (repeatable)")

    q = sub.add_parser("query", help="select rows from one or more runs' logs (DuckDB SQL)")
    q.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help=f"one or more runs' directories, each {RUN_DIR}; read as one table")
    q.add_argument("--where", help="a SQL boolean expression, e.g. \"generation >= 2 AND status = 'ok'\"")
    q.add_argument("--columns", default=QUERY_COLUMNS,
                   help=f"a SQL select list; '*' for every column (default: {QUERY_COLUMNS})")
    q.add_argument("--sort",
                   help="a SQL ORDER BY list, e.g. 'fitness DESC' (default: run_dir, generation, chromosome_id)")
    q.add_argument("--limit", type=_count, help="at most N rows")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--sql", help="a whole query over the table `logs` instead of --where/--columns/--sort, "
                                 "e.g. 'SELECT generation, max(fitness) FROM logs GROUP BY ALL ORDER BY 1'")

    ls = sub.add_parser("ls", help="the runs in a folder: status, generations done, best fitness and FID, start")
    ls.add_argument("out_dir", nargs="?", default=config.RunConfig.out_dir, metavar="OUT_DIR",
                    help=f"the folder of run directories (default: {config.RunConfig.out_dir})")
    ls.add_argument("--format", choices=("table", "csv", "json"), default="table")

    b = sub.add_parser("best", help="the best chromosome of a run: genes, scores, samples")
    b.add_argument("run_dir", metavar="RUN_DIR", help=f"a run's directory, {RUN_DIR}")

    r = sub.add_parser("report", help="plots and a self-contained HTML page for a run")
    r.add_argument("run_dir", metavar="RUN_DIR", help=f"a run's directory, {RUN_DIR}")
    r.add_argument("--out", help="output folder (default: RUN_DIR/report)")
    r.add_argument("--top", type=_count, default=10, help="chromosomes in the top table (default: 10)")
    r.add_argument("--max-grids", type=_count, default=20,
                   help="sample grids at most, from evenly spread generations (default: 20)")

    s = sub.add_parser("sample", help="draw images from a saved generator into one grid image")
    s.add_argument("run_dir", metavar="RUN_DIR", help=f"a run's directory, {RUN_DIR}")
    s.add_argument("--generation", type=int, help="whose best generator (default: the run's best chromosome's)")
    s.add_argument("--n", type=_count, default=64, help="images (default: 64)")
    s.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    s.add_argument("--out", required=True, help="image file to write, e.g. grid.png")

    sc = sub.add_parser("score", help="FID and KID of a saved generator against the run's images or a folder")
    sc.add_argument("run_dir", metavar="RUN_DIR", help=f"a run's directory, {RUN_DIR}")
    sc.add_argument("--generation", type=int, help="whose generator (default: the run's best chromosome's)")
    sc.add_argument("--chromosome", metavar="ID",
                    help="a chromosome of that generation other than its best (needs train.keep: all)")
    sc.add_argument("--samples", type=_count, help="generated images (default: the run's quality.samples)")
    sc.add_argument("--against", metavar="FOLDER",
                    help="real images to compare with, root/<class>/<image> (default: the run's training images)")
    sc.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    return p


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number of seconds of at least 1, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class Prepared:
    cfg: config.RunConfig
    run_id: str
    run_dir: Path
    images: data.Images
    state: RunState | None  # None: a new run
    redo: tuple[int, ...]  # logged generations to train again (damaged files)
    reference: object | None  # quality.Reference of the images, with quality.evaluate on


def _load_config(args: argparse.Namespace) -> config.RunConfig:
    if not args.resume:
        return config.load(args.config, args.overrides)
    saved = _saved_config(Path(args.resume), restore=True)
    # the run's own config, not its file through load's defaults: a key added since keeps the value the run had
    requested = config.load(args.config, args.overrides) if args.config else config.override(saved, args.overrides)
    diffs = config.experiment_differences(saved, requested)
    if diffs:
        raise InputError(f"--resume: the config would change the experiment: {'; '.join(diffs)}")
    return requested


def _saved_config(run_dir: Path, restore: bool) -> config.RunConfig:
    """A run's config.yaml, read strictly and checked against the copy in its newest generation file.

    A damaged config.yaml (missing, cut, empty, a key missing or unknown) is never completed from defaults: it is
    replaced by the copy (restore: rewritten from it; else only used), or refused where the logs keep none. An
    intact one that differs from the copy in a key that changes the experiment was edited by hand: refused.
    """
    path, who = rundir.config_file(run_dir), "--resume: " if restore else ""
    copy = logs.saved_config(run_dir)
    if not path.exists() and copy is None:
        raise InputError(f"{who}{path} not found; is {run_dir} a neuroevo run directory?")
    try:
        saved = config.load_saved(path)
    except config.ConfigError as e:
        damage = e
    else:
        if copy is not None:
            diffs = config.experiment_differences(_copy_config(copy, who), saved)
            if diffs:
                raise InputError(f"{who}{path} differs from the run's own copy in {copy[0]}: {'; '.join(diffs)}; "
                                 f"undo the edit, or delete {path.name} to restore it from the copy")
        return saved
    if copy is None:
        if not rundir.state_file(run_dir).exists() and not any(rundir.generations_dir(run_dir).glob("*/*.parquet")):
            raise InputError(f"{who}{damage}; no generation is logged yet, so nothing was trained: start a new run "
                             f"(delete {run_dir} to use its run_id again)")
        raise InputError(f"{who}{damage}; the run's logs keep no copy of its config (written by an older "
                         f"neuroevo): repair {path.name} by hand with the values the run used")
    cfg = _copy_config(copy, who)
    if restore:
        try:
            rundir.write(path, copy[1])
        except OSError as e:
            raise InputError(f"{who}{path}: cannot be restored ({e.strerror or type(e).__name__})") from None
    print(f"{'resume' if restore else 'score'}: {damage}; {'restored it from' if restore else 'using'} the copy kept in "
          f"{copy[0]}", file=sys.stderr)
    return cfg


def _copy_config(copy: tuple[Path, str], who: str) -> config.RunConfig:
    try:
        return config.loads_saved(copy[1], f"the config copy in {copy[0]}")
    except config.ConfigError as e:
        raise InputError(f"{who}{e}") from None


def _resume_plan(run_dir: Path, cfg: config.RunConfig) -> tuple[RunState | None, tuple[int, ...]]:
    """The saved state, checked against the config and the logs, and the logged generations to train again: those
    whose data file is damaged or does not hold their population, or whose best's files or elites' weights are
    missing (training is deterministic, so the same rows and files come out again).

    A run stopped before its first state was saved has trained nothing: it starts again from generation 0. A state
    that the logs repair (state.load_checked) replaces state.json at once, the old one kept in discarded/.
    """
    if not rundir.state_file(run_dir).exists() and not rundir.generations_dir(run_dir).exists():
        return None, ()
    try:
        state, repairs = load_checked(run_dir, cfg.evolve.population)
    except StateError as e:
        raise InputError(str(e)) from None
    for repair in repairs:
        print(f"resume: {repair}", file=sys.stderr)
    if repairs:
        saved = rundir.state_file(run_dir)
        rundir.write(rundir.discarded_dir(run_dir) / f"{saved.name}-{datetime.now():%Y%m%d-%H%M%S}", saved.read_bytes())
        save_state(run_dir, state, cfg.seed)
    redo = []
    for g in range(state.completed):
        kept = [m.chromosome.id for m in state.population(g + 1) if m.born_generation <= g]
        problem = logs.check_generation(run_dir, g, state.population(g)) or \
            logs.check_saved(run_dir, g, kept if cfg.evolve.keep_weights else ())
        if problem:
            print(f"resume: {problem}; generation {g} will be trained again", file=sys.stderr)
            redo.append(g)
    return state, tuple(redo)


def _set_aside(run_dir: Path, generations: tuple[int, ...]) -> None:
    """Move what is damaged out of the dataset, into run_dir/discarded/, for inspection: the folder of each logged
    generation to train again whose data is damaged (else its best's folder, when wrong), and the folder of a
    generation still to train that holds more than its data file."""
    if not rundir.state_file(run_dir).exists():
        return
    state = load_state(run_dir)
    damaged = []
    for g in generations:
        if logs.check_generation(run_dir, g, state.population(g)):
            damaged.append((rundir.generation_dir(run_dir, g), rundir.generation_dir(run_dir, g).name))
        elif rundir.best_dir(run_dir, g).exists() and logs.check_saved(run_dir, g):
            damaged.append((rundir.best_dir(run_dir, g), f"best-{rundir.best_dir(run_dir, g).name}"))
    later = range(state.completed, max([state.completed, *rundir.logged_generations(run_dir)]) + 1)
    damaged += [(rundir.generation_dir(run_dir, g), rundir.generation_dir(run_dir, g).name) for g in later
                if logs.extra_files(run_dir, g)]
    for folder, name in damaged:
        aside = rundir.discarded_dir(run_dir) / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
        aside.parent.mkdir(exist_ok=True)
        folder.rename(aside)


def _prepare(args: argparse.Namespace) -> Prepared:
    """All checks that need no Ray: config, run directory, search space, data."""
    try:
        cfg = _load_config(args)
        tracking.check(cfg)
    except (config.ConfigError, tracking.TrackingError) as e:
        raise InputError(str(e)) from None
    if args.resume:
        run_dir = Path(args.resume)
        run_id = run_dir.name
    else:
        run_id = cfg.run_id or f"{datetime.now():%Y%m%d-%H%M%S}-seed{cfg.seed}"
        run_dir = Path(cfg.out_dir) / run_id
        if run_dir.exists():
            raise InputError(f"run_id: {run_dir} already exists; choose another run_id or out_dir, or --resume it")
    try:
        genome.sample(cfg.space, cfg.data.image_size, cfg.data.channels, np.random.default_rng(cfg.seed))
    except genome.SpaceTooTight as e:
        raise InputError(str(e)) from None
    state, redo = _resume_plan(run_dir, cfg) if args.resume else (None, ())
    images = _load_data(cfg)
    reference = _reference(cfg, images) if cfg.quality.evaluate != "off" else None
    return Prepared(cfg, run_id, run_dir, images, state, redo, reference)


def _reference(cfg: config.RunConfig, images: data.Images) -> object:
    """The real images' reference statistics for FID and KID: from beside the data cache, or computed there first
    (once per cache; on this machine's GPU if it has one). Loads the Inception weights, so a missing or corrupt
    file stops the run here."""
    from neuroevo import quality

    try:
        ref = quality.reference(images, max_images=cfg.quality.reference_images, batch_size=cfg.quality.batch_size,
                                device=quality.local_device(), weights=cfg.quality.extractor_weights,
                                directory=data.cache_dir(cfg.data), progress=sys.stderr.isatty())
    except quality.QualityError as e:
        raise InputError(str(e)) from None
    print(f"quality: reference statistics of {ref.count:,} real images ({ref.path or 'in memory'})", flush=True)
    return ref


def _load_data(cfg: config.RunConfig) -> data.Images:
    """The images from the data cache, prepared first (with a progress bar) if missing or stale."""
    try:
        images = data.load(cfg.data, cfg.seed, progress=sys.stderr.isatty())
    except data.DataError as e:
        raise InputError(str(e)) from None
    if len(images.array) < cfg.space.batch_size:
        raise InputError(f"data: {len(images.array)} images is fewer than one batch (space.batch_size={cfg.space.batch_size})")
    return images


def _print_data(images: data.Images, shared: np.ndarray | data.Cache | None = None) -> None:
    print(f"data: {images.description}")
    for warning in images.warnings:
        print(f"data: warning: {warning}")
    if shared is not None:
        print(f"data: tasks read the images from {data.record(images, shared)['tasks_read']}", flush=True)


def _init_ray(args: argparse.Namespace) -> None:
    """Join the cluster at --address or $RAY_ADDRESS, else start a private one (cluster.py); Ctrl-C and SIGTERM
    stop the run from here on, as KeyboardInterrupt."""
    from neuroevo import cluster

    try:
        cluster.start(args.address, args.dashboard, args.connect_timeout, args.verbose)
    except cluster.ClusterError as e:
        raise InputError(str(e)) from None
    signal.signal(signal.SIGTERM, _interrupt)  # again: ray.init installs a handler of its own


def _interrupt(signum: int, frame: object) -> None:
    from neuroevo import cluster

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stopping short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _received.append(signum)  # out of ray.get/ray.wait, Ray may raise a KeyboardInterrupt of its own instead
    raise cluster.Interrupted(signum)  # SIGTERM (e.g. `ray job stop`) stops a run the way Ctrl-C does


_received: list[int] = []


def _write_run_files(p: Prepared, shared: np.ndarray | data.Cache | None, resume: bool) -> None:
    """config.yaml (written once; on resume again only where an allowed change changed it), data.json; damaged
    generations moved aside."""
    path, text = rundir.config_file(p.run_dir), config.to_yaml(p.cfg)
    if not (resume and path.is_file() and path.read_bytes() == text.encode("utf-8")):
        rundir.write(path, text)
    rundir.write(rundir.data_file(p.run_dir), json.dumps(data.record(p.images, shared), indent=1) + "\n")
    _set_aside(p.run_dir, p.redo)


def _interrupted(run_dir: Path | None, e: KeyboardInterrupt) -> int:
    """The interrupt's message; 130 for Ctrl-C, 143 for SIGTERM (128 + the signal, as shells report them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if run_dir is None or not rundir.config_file(run_dir).is_file():
        left = f" (remove the empty {run_dir} first)" if run_dir is not None and run_dir.exists() else ""
        print(f"\ninterrupted before the run started: nothing of it is logged; run the same command again{left}",
              file=sys.stderr, flush=True)
    else:
        print(f"\ninterrupted: {_logged(run_dir)} in {run_dir}; the running one was stopped."
              f"\ncontinue with: neuroevo run --resume {run_dir}", file=sys.stderr, flush=True)
    return 128 + (_received[0] if _received else getattr(e, "signum", signal.SIGINT))


def _logged(run_dir: Path) -> str:
    """What of a stopped run is logged: 'no generation is logged yet', 'generation 0 is logged', 'generations 0-3
    are logged'."""
    completed = load_state(run_dir).completed if rundir.state_file(run_dir).exists() else 0
    return ("no generation is logged yet" if not completed else "generation 0 is logged" if completed == 1
            else f"generations 0-{completed - 1} are logged")


def _stopped_by(run_dir: Path, error: OSError) -> int:
    """A file-system fault stopped the run: what and where, and how to go on. A new run that had trained nothing
    is gone (rundir.claim removed it): nothing to resume."""
    print(f"neuroevo: error: {_file_system_fault(error)}", file=sys.stderr)
    if run_dir.is_dir():
        print(f"stopped: {_logged(run_dir)} in {run_dir}; once the file system is fixed, continue with: "
              f"neuroevo run --resume {run_dir}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _print_summary(run_dir: Path) -> int:
    """The best chromosome that trained, and where its files are; exit code 1 where none did."""
    history = logs.read_generations(run_dir)
    trained = history[history["status"] == "ok"]
    if trained.empty:
        counts = ", ".join(f"{n} {status}" for status, n in history["status"].value_counts().items())
        print(f"\nno chromosome trained ({counts}): see the `error` column, e.g. neuroevo query {run_dir} "
              f"--columns generation,chromosome_id,status,error", file=sys.stderr)
        return 1
    best = trained.iloc[ranking.order(trained["fitness"], trained["generation"], trained["chromosome_id"])[0]]
    print(f"\nbest chromosome {best.chromosome_id} (generation {best.generation}): fitness {best.fitness:.4f}, "
          f"d_loss {best.d_loss:.4f}, g_loss {best.g_loss:.4f}, params {best.params_g + best.params_d:,}")
    print(f"  {best.chromosome}")
    print(f"logs:    {rundir.generations_dir(run_dir)}  (pandas.read_parquet)")
    print(f"samples: {rundir.best_samples(run_dir, int(best.generation))}")
    d = shlex.quote(str(run_dir))
    commands = ((f"neuroevo best {d}", "its genes, layers and scores"), (f"neuroevo report {d}", "plots, one HTML page"),
                (f"neuroevo query {d} --sort 'fitness DESC' --limit 5", "the fittest rows"),
                (f"neuroevo sample {d} --out grid.png", "64 images from its generator"))
    width = max(len(c) for c, _ in commands)
    for i, (c, what) in enumerate(commands):
        print(f"{'next:' if i == 0 else '':<9}{c:<{width}}  # {what}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        p = _prepare(args)
    except KeyboardInterrupt as e:
        return _interrupted(None, e)
    cfg, run_dir = p.cfg, p.run_dir
    if p.state is not None and p.state.completed >= cfg.evolve.generations and not p.redo:
        print(f"{run_dir}: all {cfg.evolve.generations} generations are already logged")
        return 0
    from neuroevo import cluster

    if not args.verbose:
        cluster.capture_log()
    interrupted, fault = None, None
    try:
        verb = f"resuming at generation {p.state.completed if p.state else 0}" if args.resume else "run"
        print(f"neuroevo {verb} {p.run_id} (seed {cfg.seed})")
        print(config.to_yaml(cfg), end="")
        shared = data.for_tasks(p.images, cfg.data)
        _print_data(p.images, shared)
        _init_ray(args)
        from neuroevo import capacity, evolve, progress, task  # Ray loads only once the input is known to be good

        print(task.describe_request(cfg, capacity.read()), flush=True)
        with rundir.claim(run_dir, new=not args.resume):
            cluster.keep_log(rundir.ray_log(run_dir))
            _write_run_files(p, shared, bool(args.resume))
            progress.set_quiet(args.quiet)
            evolve.evolve(cfg, p.run_id, run_dir, shared, p.state, p.redo, p.reference)
    except KeyboardInterrupt as e:
        interrupted = e
    except OSError as e:
        if _file_system_fault(e) is None:
            raise
        fault = e
    finally:
        cluster.stop()
        cluster.release_log()
    if interrupted is not None:
        return _interrupted(run_dir, interrupted)
    if fault is not None:
        return _stopped_by(run_dir, fault)
    return _print_summary(run_dir)


def cmd_prepare(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config, args.overrides)
    except config.ConfigError as e:
        raise InputError(str(e)) from None
    images = _load_data(cfg)
    _print_data(images)
    if cfg.quality.evaluate != "off":
        _reference(cfg, images)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from neuroevo import query

    if args.sql is not None:
        if args.where or args.sort or args.columns != QUERY_COLUMNS:
            raise InputError("--sql: give the whole query there, without --where, --columns or --sort")
        df = query.sql(args.run_dirs, args.sql)
        df = df.head(args.limit) if args.limit else df
    else:
        df = query.load_runs(args.run_dirs, [args.columns], args.where, args.sort, args.limit)
    df = df.apply(lambda col: col.map(_plain) if col.dtype == object else col)
    if args.format == "json":  # json, not pandas: floats exactly, as Python writes them
        print(json.dumps(df.astype(object).where(df.notna(), None).to_dict("records"), default=_json_value))
    elif args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    elif df.empty:
        print(f"no rows ({', '.join(df.columns)})")
    else:
        print(df.to_string(index=False))
    return 0


def _plain(v: object) -> object:
    """List cells print as [3, 5], not numpy's [3 5]."""
    return v.tolist() if isinstance(v, np.ndarray) else v


def _json_value(v: object) -> object:
    if isinstance(v, np.generic):
        return v.item()
    if hasattr(v, "isoformat"):  # timestamps
        return v.isoformat()
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def cmd_ls(args: argparse.Namespace) -> int:
    from neuroevo import runs

    try:
        print(runs.render(runs.find(args.out_dir), args.format))
    except runs.RunsError as e:
        raise InputError(str(e)) from None
    return 0


def _best(run_dir: str) -> tuple[pd.DataFrame, pd.Series]:
    """The run's logs and its fittest row."""
    from neuroevo import query, report

    df = query.load_runs([run_dir])
    row = report.best(df)
    if row is None:
        raise InputError(f"{run_dir}: none of its {len(df)} chromosomes has trained successfully yet")
    return df, row


def cmd_best(args: argparse.Namespace) -> int:
    from neuroevo import report

    df, row = _best(args.run_dir)
    print(report.describe(args.run_dir, df, row))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from neuroevo import report

    out = Path(args.out) if args.out else rundir.report_dir(args.run_dir)
    for path in report.write_report(args.run_dir, out, args.top, args.max_grids):
        print(path)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from PIL import Image

    from neuroevo import report
    from neuroevo.train import WeightsError

    if args.n > report.MAX_SAMPLES:
        raise InputError(f"--n: {args.n:,} images is more than one grid holds (at most {report.MAX_SAMPLES:,})")
    out = Path(args.out)
    if out.suffix.lower() not in Image.registered_extensions():
        raise InputError(f"--out: {out} has no image file extension (e.g. .png, .jpg)")
    generation = args.generation if args.generation is not None else int(_best(args.run_dir)[1].generation)
    weights = rundir.best_weights(args.run_dir, generation)
    if not weights.is_file():
        saved = rundir.best_generations(args.run_dir)
        raise InputError(f"--generation: {weights} does not exist (saved: {', '.join(map(str, saved)) or 'none'})")
    out.parent.mkdir(parents=True, exist_ok=True)  # a missing folder is made; one that cannot be fails here
    if not os.access(out.parent, os.W_OK):  # before the images are drawn (also a read-only mount, for root)
        raise InputError(f"--out: {out.parent} is not writable (read-only file system or no permission)")
    try:
        ch = report.sample(weights, args.n, args.seed, out)
    except WeightsError as e:
        raise InputError(str(e)) from None
    print(f"{out}: {args.n} samples of {ch.image_channels}x{ch.image_size}x{ch.image_size} from chromosome {ch.id} "
          f"(generation {generation}, seed {args.seed})")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """FID and KID of a saved generator; no Ray, on this machine's GPU if it has one."""
    import dataclasses

    from neuroevo import quality
    from neuroevo.train import WeightsError, load_generator

    saved = rundir.config_file(args.run_dir)
    if not saved.is_file() and not rundir.generations_dir(args.run_dir).is_dir():
        raise InputError(f"{saved}: not found; is {args.run_dir} a neuroevo run directory?")
    cfg = _saved_config(Path(args.run_dir), restore=False)
    generation = args.generation if args.generation is not None else int(_best(args.run_dir)[1].generation)
    if args.chromosome:
        weights = rundir.generator_file(args.run_dir, generation, args.chromosome)
        if not weights.is_file() and rundir.best_chromosome(args.run_dir, generation).is_file() and \
                genome.from_json(rundir.best_chromosome(args.run_dir, generation).read_text()).id == args.chromosome:
            weights = rundir.best_weights(args.run_dir, generation)
        if not weights.is_file():
            raise InputError(f"--chromosome: {weights} does not exist; only each generation's best is saved unless "
                             f"the run had train.keep: all")
    else:
        weights = rundir.best_weights(args.run_dir, generation)
        if not weights.is_file():
            kept = rundir.best_generations(args.run_dir)
            raise InputError(f"--generation: {weights} does not exist (saved: {', '.join(map(str, kept)) or 'none'})")
    try:  # a file that is no generator's weights stops here, before the reference statistics
        load_generator(weights)
    except WeightsError as e:
        raise InputError(str(e)) from None
    data_cfg = cfg.data if not args.against else dataclasses.replace(
        cfg.data, source="folder", root=args.against, subset=None, subset_pick="first", flip=False)
    if args.against and not Path(args.against).is_dir():
        raise InputError(f"--against: {args.against} is not a directory (expected FOLDER/<class>/<image>)")
    try:
        images = data.load(data_cfg, cfg.seed, progress=sys.stderr.isatty())
    except data.DataError as e:
        raise InputError(str(e).replace("data.root", "--against", 1) if args.against else str(e)) from None
    q_cfg = cfg.quality if args.samples is None else dataclasses.replace(cfg.quality, samples=args.samples)
    if q_cfg.samples != "auto" and q_cfg.samples < q_cfg.kid_subset_size:
        raise InputError(f"--samples: {q_cfg.samples} is fewer than KID's subsets of quality.kid_subset_size="
                         f"{q_cfg.kid_subset_size}")
    ref = _reference(dataclasses.replace(cfg, data=data_cfg, quality=q_cfg), images)
    try:
        q = quality.measure_generator(weights.read_bytes(), q_cfg, ref, quality.local_device(), args.seed)
    except (quality.QualityError, WeightsError) as e:
        raise InputError(str(e)) from None
    ch = genome.from_json(rundir.best_chromosome(args.run_dir, generation).read_text()) if not args.chromosome else None
    who = args.chromosome or (ch.id if ch else "?")
    print(f"chromosome {who} (generation {generation}): FID {q.fid:.2f}  KID {q.kid:.4f} ± {q.kid_std:.4f}  "
          f"({q.samples:,} samples against {ref.count:,} real images of {args.against or 'the run'}, "
          f"{q.seconds:.1f} s)")
    return 0


COMMANDS = {"run": cmd_run, "prepare": cmd_prepare, "query": cmd_query, "best": cmd_best, "report": cmd_report,
            "sample": cmd_sample, "score": cmd_score, "ls": cmd_ls}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    if not (sys.argv[1:] if argv is None else argv):  # a bare `neuroevo` asks what it can do: the help, exit 0
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    from neuroevo.query import QueryError

    try:
        return COMMANDS[args.command](args)
    except (InputError, QueryError, rundir.ClaimError, tracking.TrackingError) as e:
        print(f"neuroevo: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `neuroevo query ... | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a full disk, a read-only folder, a file in the way of an output folder
        if _file_system_fault(e) is None:
            raise
        print(f"neuroevo: error: {_file_system_fault(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
