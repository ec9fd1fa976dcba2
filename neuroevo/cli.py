"""`neuroevo run | prepare | query | ls | best | report | sample | score`: the arguments, what they print, exit codes.

Bad input (errors.InputError: a config, data, search space or run directory that is wrong, found before Ray
starts), a query DuckDB cannot run and a file-system fault print one line and exit with code 2; Ctrl-C exits with
130, SIGTERM with 143; a run in which no chromosome trained exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from neuroevo import __version__, config, errors
from neuroevo.errors import InputError, file_system_fault
from neuroevo.evolve import ranking
from neuroevo.execution import experiment
from neuroevo.space import registry
from neuroevo.store import rundir, tracking
from neuroevo.train import data

EXIT_BAD_INPUT = 2
QUERY_COLUMNS = ("run_id, generation, chromosome_id, is_elite, params_g + params_d AS params, d_loss, g_loss, fitness, "
                 "status")
RUN_DIR = "OUT_DIR/RUN_ID (e.g. runs/20261202-143000-seed0)"  # what a RUN_DIR argument names


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


def _interrupted(e: errors.Interrupted) -> int:
    """The interrupt's message; 130 for Ctrl-C, 143 for SIGTERM (128 + the signal, as shells report them)."""
    if e.logged is None:
        left = f" (remove the empty {e.run_dir} first)" if e.run_dir is not None and e.run_dir.exists() else ""
        print(f"\n{e}; run the same command again{left}", file=sys.stderr, flush=True)
    else:
        print(f"\n{e}.\ncontinue with: neuroevo run --resume {e.run_dir}", file=sys.stderr, flush=True)
    return 128 + e.signum


def _stopped_by(e: errors.FileSystemFault) -> int:
    """A file-system fault stopped the run: what and where, and how to go on. A new run that had trained nothing
    is gone (rundir.claim removed it): nothing to resume."""
    print(f"neuroevo: error: {e}", file=sys.stderr)
    if e.run_dir is not None:
        print(f"stopped: {errors.logged_text(e.logged)} in {e.run_dir}; once the file system is fixed, "
              f"continue with: neuroevo run --resume {e.run_dir}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _print_summary(run_dir: Path) -> int:
    """The best chromosome that trained, and where its files are; exit code 1 where none did."""
    from neuroevo.store import logs

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
    request = experiment.Request(args.config, tuple(args.overrides), args.resume, args.address, args.dashboard,
                                 args.connect_timeout, args.verbose, args.quiet)
    try:
        outcome = experiment.run(request)
    except errors.Interrupted as e:
        return _interrupted(e)
    except errors.FileSystemFault as e:
        return _stopped_by(e)
    return _print_summary(outcome.run_dir) if outcome.trained else 0


def cmd_prepare(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config, args.overrides)
    except errors.ConfigError as e:
        raise InputError(str(e)) from None
    images = experiment.load_data(cfg)
    experiment.print_data(images)
    if cfg.quality.evaluate != "off":
        experiment.reference(cfg, images)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from neuroevo.analysis import query

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


def cmd_best(args: argparse.Namespace) -> int:
    from neuroevo import api
    from neuroevo.analysis import report

    df, row = api.best_of(args.run_dir)
    print(report.describe(args.run_dir, df, row))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from neuroevo.analysis import report

    out = Path(args.out) if args.out else rundir.report_dir(args.run_dir)
    for path in report.write_report(args.run_dir, out, args.top, args.max_grids):
        print(path)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from neuroevo import api

    ch, generation, _ = api.Result(Path(args.run_dir)).draw(args.n, args.seed, args.out, args.generation)
    print(f"{Path(args.out)}: {args.n} samples of {ch.image_channels}x{ch.image_size}x{ch.image_size} from chromosome "
          f"{ch.id} (generation {generation}, seed {args.seed})")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """FID and KID of a saved generator; no Ray, on this machine's GPU if it has one."""
    import dataclasses

    from neuroevo import api
    from neuroevo.train import quality
    from neuroevo.train.checkpoint import WeightsError, load_generator

    saved = rundir.config_file(args.run_dir)
    if not saved.is_file() and not rundir.generations_dir(args.run_dir).is_dir():
        raise InputError(f"{saved}: not found; is {args.run_dir} a neuroevo run directory?")
    cfg = experiment.saved_config(Path(args.run_dir), restore=False)
    generation = args.generation if args.generation is not None else int(api.best_of(args.run_dir)[1].generation)
    if args.chromosome:
        weights = rundir.generator_file(args.run_dir, generation, args.chromosome)
        if not weights.is_file() and rundir.best_chromosome(args.run_dir, generation).is_file() and \
                registry.from_json(rundir.best_chromosome(args.run_dir, generation).read_text()).id == args.chromosome:
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
    ref = experiment.reference(dataclasses.replace(cfg, data=data_cfg, quality=q_cfg), images)
    try:
        q = quality.measure_generator(weights.read_bytes(), q_cfg, ref, quality.local_device(), args.seed)
    except (quality.QualityError, WeightsError) as e:
        raise InputError(str(e)) from None
    ch = registry.from_json(rundir.best_chromosome(args.run_dir, generation).read_text()) if not args.chromosome else None
    who = args.chromosome or (ch.id if ch else "?")
    print(f"chromosome {who} (generation {generation}): FID {q.fid:.2f}  KID {q.kid:.4f} ± {q.kid_std:.4f}  "
          f"({q.samples:,} samples against {ref.count:,} real images of {args.against or 'the run'}, "
          f"{q.seconds:.1f} s)")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    from neuroevo.analysis import runs

    try:
        print(runs.render(runs.find(args.out_dir), args.format))
    except runs.RunsError as e:
        raise InputError(str(e)) from None
    return 0


def _bad_input() -> tuple[type[Exception], ...]:
    """What the commands raise for bad input. query.QueryError only where the command loaded neuroevo.analysis.query: it
    loads DuckDB and pandas, which the other commands do without (evaluated once a command has raised)."""
    query = sys.modules.get("neuroevo.analysis.query")
    return (InputError, rundir.ClaimError, tracking.TrackingError, *((query.QueryError,) if query else ()))


COMMANDS = {"run": cmd_run, "prepare": cmd_prepare, "query": cmd_query, "best": cmd_best, "report": cmd_report,
            "sample": cmd_sample, "score": cmd_score, "ls": cmd_ls}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    if not (sys.argv[1:] if argv is None else argv):  # a bare `neuroevo` asks what it can do: the help, exit 0
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except _bad_input() as e:
        print(f"neuroevo: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # e.g. `neuroevo query ... | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a full disk, a read-only folder, a file in the way of an output folder
        if file_system_fault(e) is None:
            raise
        print(f"neuroevo: error: {file_system_fault(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
