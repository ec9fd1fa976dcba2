"""`neuroevo run [CONFIG_OR_PRESET] [--set key=value ...] [--address ADDR]`, and
`neuroevo prepare [CONFIG_OR_PRESET] [--set key=value ...]`, which only prepares the data cache.

Everything that can be wrong with the input is found before Ray starts: the config, the data, and whether the
search space yields chromosomes under max_params. Such errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from neuroevo import config, data, genome, logs
from neuroevo.state import STATE_FILE, RunState, StateError
from neuroevo.state import load as load_state

EXIT_BAD_INPUT = 2


class InputError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuroevo", description="Evolve GAN architectures by neuroevolution on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an evolution experiment")
    run.add_argument("config", nargs="?", default=None,
                     help=f"a YAML config file or a preset: {', '.join(config.PRESETS)} (default: demo, or the "
                          "run's own config with --resume)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set evolve.population=4 (repeatable)")
    run.add_argument("--address", default=None,
                     help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    run.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with a local cluster (127.0.0.1)")
    run.add_argument("--resume", metavar="RUN_DIR", default=None,
                     help="continue a stopped run from its last logged generation; re-train damaged generations")
    prepare = sub.add_parser("prepare", help="decode and resize a config's images into the data cache, e.g. on each node")
    prepare.add_argument("config", nargs="?", default="demo", help="a YAML config file or a preset (default: demo)")
    prepare.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config key, e.g. --set data.root=imagenet/train (repeatable)")
    return p


@dataclass(frozen=True)
class Prepared:
    cfg: config.RunConfig
    run_id: str
    run_dir: Path
    images: data.Images
    state: RunState | None  # None: a new run
    redo: tuple[int, ...]  # logged generations to train again (damaged files)


def _load_config(args: argparse.Namespace) -> config.RunConfig:
    if not args.resume:
        return config.load(args.config, args.overrides)
    saved_path = Path(args.resume) / "config.yaml"
    if not saved_path.is_file():
        raise InputError(f"--resume: {saved_path} not found; is {args.resume} a neuroevo run directory?")
    saved = config.load(str(saved_path))
    requested = config.load(args.config or str(saved_path), args.overrides)
    diffs = config.experiment_differences(saved, requested)
    if diffs:
        raise InputError(f"--resume: the config would change the experiment: {'; '.join(diffs)}")
    return requested


def _resume_plan(run_dir: Path) -> tuple[RunState | None, tuple[int, ...]]:
    """The saved state, and the logged generations whose files are damaged and must be trained again.

    A run stopped before its first state was saved has trained nothing: it starts again from generation 0.
    """
    if not (run_dir / STATE_FILE).exists() and not (run_dir / "generations").exists():
        return None, ()
    try:
        state = load_state(run_dir)
    except StateError as e:
        raise InputError(str(e)) from None
    redo = []
    for g in range(state.completed):
        problem = logs.check_generation(run_dir, g, len(state.population(g)))
        if problem:
            print(f"resume: {problem}; generation {g} will be trained again", file=sys.stderr)
            redo.append(g)
    return state, tuple(redo)


def _set_aside(run_dir: Path, generations: tuple[int, ...]) -> None:
    """Move damaged generation directories out of the dataset, into run_dir/discarded/, for inspection."""
    for g in generations:
        damaged = logs.generation_dir(run_dir, g)
        if damaged.exists():
            aside = run_dir / "discarded" / f"{damaged.name}-{datetime.now():%Y%m%d-%H%M%S}"
            aside.parent.mkdir(exist_ok=True)
            damaged.rename(aside)


def _prepare(args: argparse.Namespace) -> Prepared:
    """All checks that need no Ray: config, run directory, search space, data."""
    try:
        cfg = _load_config(args)
    except config.ConfigError as e:
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
    state, redo = _resume_plan(run_dir) if args.resume else (None, ())
    return Prepared(cfg, run_id, run_dir, _load_data(cfg), state, redo)


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


def _init_ray(address: str | None, dashboard: bool) -> None:
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:  # a private local cluster, reachable from this machine only
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=dashboard, dashboard_host="127.0.0.1")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (e.g. `ray job stop`) stops a run the way Ctrl-C does


def cmd_run(args: argparse.Namespace) -> int:
    p = _prepare(args)
    cfg, run_dir = p.cfg, p.run_dir
    if p.state is not None and p.state.completed >= cfg.evolve.generations and not p.redo:
        print(f"{run_dir}: all {cfg.evolve.generations} generations are already logged")
        return 0
    verb = f"resuming at generation {p.state.completed if p.state else 0}" if args.resume else "run"
    print(f"neuroevo {verb} {p.run_id} (seed {cfg.seed})")
    print(config.to_yaml(cfg), end="")
    shared = data.for_tasks(p.images, cfg.data)
    _print_data(p.images, shared)
    run_dir.mkdir(parents=True, exist_ok=bool(args.resume))
    (run_dir / "config.yaml").write_text(config.to_yaml(cfg))
    (run_dir / "data.json").write_text(json.dumps(data.record(p.images, shared), indent=1) + "\n")
    _set_aside(run_dir, p.redo)

    from neuroevo import evolve  # Ray and torch load only once the input is known to be good

    signal.signal(signal.SIGTERM, _interrupt)
    _init_ray(args.address, args.dashboard)
    try:
        evolve.evolve(cfg, p.run_id, run_dir, shared, p.state, p.redo)
    except KeyboardInterrupt:
        completed = load_state(run_dir).completed if (run_dir / STATE_FILE).exists() else 0
        logged = f"generations 0-{completed - 1} are logged" if completed else "no generation is logged yet"
        print(f"\ninterrupted: {logged} in {run_dir}; the running one was cancelled."
              f"\ncontinue with: neuroevo run --resume {run_dir}", file=sys.stderr)
        return 130

    history = logs.read_generations(run_dir)
    best = history.sort_values(["fitness", "generation"], ascending=[False, True]).iloc[0]
    print(f"\nbest chromosome {best.chromosome_id} (generation {best.generation}): fitness {best.fitness:.4f}, "
          f"d_loss {best.d_loss:.4f}, g_loss {best.g_loss:.4f}, params {best.params_g + best.params_d:,}")
    print(f"  {best.chromosome}")
    print(f"logs:    {run_dir / 'generations'}  (pandas.read_parquet)")
    print(f"samples: {run_dir / 'best' / f'generation={best.generation:04d}' / 'samples.png'}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config, args.overrides)
    except config.ConfigError as e:
        raise InputError(str(e)) from None
    _print_data(_load_data(cfg))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return cmd_prepare(args) if args.command == "prepare" else cmd_run(args)
    except InputError as e:
        print(f"neuroevo: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
