"""`neuroevo run [CONFIG_OR_PRESET] [--set key=value ...] [--address ADDR]`, and
`neuroevo prepare [CONFIG_OR_PRESET] [--set key=value ...]`, which only prepares the data cache.

Everything that can be wrong with the input is found before Ray starts: the config, the data, and whether the
search space yields chromosomes under max_params. Such errors print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

import numpy as np

from neuroevo import config, data, genome

EXIT_BAD_INPUT = 2


class InputError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuroevo", description="Evolve GAN architectures by neuroevolution on Ray.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an evolution experiment")
    run.add_argument("config", nargs="?", default="demo",
                     help=f"a YAML config file or a preset: {', '.join(config.PRESETS)} (default: demo)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key, e.g. --set evolve.population=4 (repeatable)")
    run.add_argument("--address", default=None,
                     help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)")
    run.add_argument("--dashboard", action="store_true", help="start Ray's dashboard with a local cluster (127.0.0.1)")
    prepare = sub.add_parser("prepare", help="decode and resize a config's images into the data cache, e.g. on each node")
    prepare.add_argument("config", nargs="?", default="demo", help="a YAML config file or a preset (default: demo)")
    prepare.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config key, e.g. --set data.root=imagenet/train (repeatable)")
    return p


def _prepare(args: argparse.Namespace) -> tuple[config.RunConfig, str, Path, data.Images]:
    """All checks that need no Ray: config, run directory, search space, data."""
    try:
        cfg = config.load(args.config, args.overrides)
    except config.ConfigError as e:
        raise InputError(str(e)) from None
    run_id = cfg.run_id or f"{datetime.now():%Y%m%d-%H%M%S}-seed{cfg.seed}"
    run_dir = Path(cfg.out_dir) / run_id
    if run_dir.exists():
        raise InputError(f"run_id: {run_dir} already exists; choose another run_id or out_dir")
    try:
        genome.sample(cfg.space, cfg.data.image_size, cfg.data.channels, np.random.default_rng(cfg.seed))
    except genome.SpaceTooTight as e:
        raise InputError(str(e)) from None
    return cfg, run_id, run_dir, _load_data(cfg)


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


def cmd_run(args: argparse.Namespace) -> int:
    cfg, run_id, run_dir, images = _prepare(args)
    print(f"neuroevo run {run_id} (seed {cfg.seed})")
    print(config.to_yaml(cfg), end="")
    shared = data.for_tasks(images, cfg.data)
    _print_data(images, shared)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(config.to_yaml(cfg))
    (run_dir / "data.json").write_text(json.dumps(data.record(images, shared), indent=1) + "\n")

    from neuroevo import evolve, logs  # Ray and torch load only once the input is known to be good

    _init_ray(args.address, args.dashboard)
    evolve.evolve(cfg, run_id, run_dir, shared)

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
