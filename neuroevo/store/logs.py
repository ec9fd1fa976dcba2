"""The Parquet generation log: schema, a chromosome's row, write (one file per generation, atomically), read.

Layout: <run_dir>/generations/NNNN/part-0.parquet (rundir.generation_file), one row per chromosome, `generation` an
int column of the file: no folder name is a hive partition, so pandas, pyarrow, DuckDB and polars all read the
file's integer. Runs begun before schema_version 4 name their folders generation=NNNN and their files have no
`generation` column; they keep both on resume (rundir.partitioned) until `neuroevo migrate` upgrades them (migrate.py),
and `dataset` reads both layouts alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from neuroevo.evolve import ranking
from neuroevo.evolve.fitness import Evaluation
from neuroevo.evolve.population import Member
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.store import rundir

if TYPE_CHECKING:
    from neuroevo.train.results import Quality, TaskReport

SCHEMA_VERSION = 7
ADDED = {  # the columns each schema_version added to the one before
    2: ("parents", "operator", "space", "loss", "g_optimiser", "d_optimiser"),
    3: ("fid", "kid", "kid_std", "quality_samples", "quality_seconds", "pareto_rank", "seeds", "seed_d_loss",
        "seed_g_loss", "seed_fid"),
    4: ("generation",),  # except in a folder named generation=NNNN (rundir.hive): there it is the folder's name
    5: ("inherited_from", "inherited_fraction", "lineage_steps"),
    6: ("rung", "steps"),
    7: ("spectral_norm", "g_ema", "augment", "r1_gamma", "n_critic", "g_steps", "d_steps", "train_flops",
        "quality_flops"),
}
HIDDEN = (".", "_")  # names that pyarrow's dataset discovery skips, e.g. rundir.write's temporary files

_ints = pa.list_(pa.int32())
_floats = pa.list_(pa.float64())
_time = pa.timestamp("us", tz="UTC")

SCHEMA = pa.schema([
    ("schema_version", pa.int16()),
    ("run_id", pa.string()),
    ("generation", pa.int32()),
    ("chromosome_id", pa.string()),
    ("born_generation", pa.int32()),
    ("is_elite", pa.bool_()),  # carried over unchanged from the previous generation
    ("parents", pa.list_(pa.string())),  # chromosome ids of the generation before (an elite's is its own)
    ("operator", pa.string()),  # seed | random | elite | mutation | crossover | tournament
    ("chromosome", pa.string()),  # the whole chromosome as JSON: registry.from_json(row.chromosome)
    # flat copies of the main genes, for queries
    ("space", pa.string()),  # seed-v1 | v2
    ("noise_channels", pa.int32()),  # v2: noise_dim
    ("noise_side", pa.int32()),  # v2: 1
    ("g_n_blocks", pa.int32()),  # v2: the projection counts as G's first block
    ("g_channels", _ints),
    ("g_kernels", _ints),  # the blocks' kernels, then the output layer's
    ("d_n_blocks", pa.int32()),
    ("d_channels", _ints),
    ("d_kernels", _ints),
    ("d_hidden", pa.int32()),  # v2: the first FC layer's units, null without one
    ("loss", pa.string()),  # bce | wgan-gp | hinge
    ("g_optimiser", pa.string()),  # sgd | adam
    ("g_lr", pa.float64()),
    ("g_momentum", pa.float64()),  # Adam: beta1
    ("d_optimiser", pa.string()),
    ("d_lr", pa.float64()),
    ("d_momentum", pa.float64()),
    ("batch_size", pa.int32()),
    ("resampled", pa.int32()),  # chromosomes drawn and rejected for max_params before this one
    # training
    ("task_seed", pa.int64()),
    ("params_g", pa.int64()),
    ("params_d", pa.int64()),
    ("d_loss", pa.float64()),  # mean over the last epoch
    ("g_loss", pa.float64()),
    ("d_losses", _floats),  # per epoch
    ("g_losses", _floats),
    ("fitness", pa.float64()),
    ("status", pa.string()),  # ok | failed | oom | diverged | timeout | lost
    ("error", pa.string()),
    ("train_seconds", pa.float64()),
    ("images_per_second", pa.float64()),
    ("device", pa.string()),
    ("node", pa.string()),
    ("gpu_ids", pa.list_(pa.string())),
    ("started_at", _time),
    ("finished_at", _time),
    # sample quality (quality.py), null where not measured
    ("fid", pa.float64()),
    ("kid", pa.float64()),  # the mean over quality.kid_subsets subsets
    ("kid_std", pa.float64()),
    ("quality_samples", pa.int32()),  # generated images measured (per seed)
    ("quality_seconds", pa.float64()),  # sampling, Inception features, FID and KID (all seeds)
    ("pareto_rank", pa.int32()),  # fitness.kind pareto: NSGA-II's front in the generation (0 = non-dominated)
    # evolve.seeds_per_chromosome: the losses and FID above are the means over the seeds' trainings
    ("seeds", pa.int32()),
    ("seed_d_loss", _floats),  # per seed
    ("seed_g_loss", _floats),
    ("seed_fid", _floats),
    # evolve.inherit: the trained weights its training started from
    ("inherited_from", pa.list_(pa.string())),  # ids: its own (an elite), its parent's, or its G's then D's parent's
    ("inherited_fraction", pa.float64()),  # of its parameters, the share taken from them (0: fresh weights)
    ("lineage_steps", pa.int64()),  # training steps behind its weights: its own, and those of the weights it took
    # evolve.rungs: how far it trained in the generation; `fitness` is its fitness there (ranking.order)
    ("rung", pa.int32()),  # the last rung it trained in, 0 to evolve.rungs - 1 (0 for every row without rungs)
    ("steps", pa.int64()),  # training steps it took in the generation
    # the modern recipe's genes (space v2; null for seed-v1, which has none)
    ("spectral_norm", pa.string()),  # none | d | both
    ("g_ema", pa.float64()),  # decay of the average of G's weights that samples come from; 0: none
    ("augment", pa.string()),  # none | DiffAugment policies, e.g. color,translation,cutout
    ("r1_gamma", pa.float64()),
    ("n_critic", pa.int32()),  # D steps per G step
    # the compute it took
    ("g_steps", pa.int64()),  # the steps the training took (all seeds'), as it counted them
    ("d_steps", pa.int64()),
    ("train_flops", pa.float64()),  # their FLOPs: the layer plan's per step (flops.py) x the steps
    ("quality_flops", pa.float64()),  # G's and Inception's forward on every sample (all seeds)
])


def gene_columns(ch: Chromosome) -> dict[str, Any]:
    """The chromosome and its main genes as flat columns, read off its layer plan."""
    plan = registry.plan(ch)
    g_convs = [layer for layer in plan.g if layer.kind != "linear"]  # v2: the projection, the blocks, the output
    d_convs = [layer for layer in plan.d if layer.kind != "linear"]
    d_hidden = [layer for layer in plan.d if layer.kind == "linear"][:-1]  # the score is D's last linear layer
    g_opt, d_opt = ch.optimisers
    recipe = ch.recipe
    return {
        "chromosome_id": ch.id,
        "chromosome": ch.to_json(),
        "space": ch.space,
        "noise_channels": plan.noise[0],
        "noise_side": plan.noise[1],
        "g_n_blocks": len(g_convs) - 1,
        "g_channels": [layer.c_out for layer in g_convs[:-1]],
        "g_kernels": [layer.kernel for layer in g_convs],
        "d_n_blocks": len(d_convs),
        "d_channels": [layer.c_out for layer in d_convs],
        "d_kernels": [layer.kernel for layer in d_convs],
        "d_hidden": d_hidden[0].c_out if d_hidden else None,
        "loss": ch.loss,
        "g_optimiser": g_opt.name,
        "g_lr": g_opt.lr,
        "g_momentum": g_opt.momentum,
        "d_optimiser": d_opt.name,
        "d_lr": d_opt.lr,
        "d_momentum": d_opt.momentum,
        "batch_size": ch.batch_size,
        "spectral_norm": recipe.spectral_norm if recipe else None,
        "g_ema": recipe.g_ema if recipe else None,
        "augment": recipe.augment if recipe else None,
        "r1_gamma": recipe.r1_gamma if recipe else None,
        "n_critic": recipe.n_critic if recipe else None,
    }


def row(run_id: str, generation: int, member: Member, seed: int, report: TaskReport | None,
        evaluation: Evaluation, quality: Quality | None = None, rung: int = 0) -> dict[str, Any]:
    """The log row of one member's training in `generation`: its genes, its task's report (None: the task
    returned none), its generator's quality where measured, its evaluation, and the rung it reached."""
    r = report.result if report else None
    seeds = report.seeds if report else ()
    params_g, params_d = (r.params_g, r.params_d) if r else registry.param_counts(member.chromosome)
    return {
        "run_id": run_id,
        "generation": generation,
        **gene_columns(member.chromosome),
        "born_generation": member.born_generation,
        "is_elite": member.born_generation < generation,
        "parents": list(member.parents),
        "operator": member.operator,
        "resampled": member.resampled,
        "task_seed": seed,
        "params_g": params_g,
        "params_d": params_d,
        "d_loss": r.d_loss if r else None,
        "g_loss": r.g_loss if r else None,
        "d_losses": list(r.d_losses) if r else None,
        "g_losses": list(r.g_losses) if r else None,
        "fitness": evaluation.fitness,
        "status": evaluation.status,
        "error": evaluation.error,
        "train_seconds": r.train_seconds if r else None,
        "images_per_second": r.images_per_second if r else None,
        "g_steps": r.g_steps if r else None,
        "d_steps": r.d_steps if r else None,
        "train_flops": r.train_flops if r else None,
        "device": r.device if r else None,
        "node": report.node if report else None,
        "gpu_ids": list(report.gpu_ids) if report else None,
        "started_at": report.started_at if report else None,
        "finished_at": report.finished_at if report else None,
        "fid": quality.fid if quality else None,
        "kid": quality.kid if quality else None,
        "kid_std": quality.kid_std if quality else None,
        "quality_samples": quality.samples if quality else None,
        "quality_seconds": quality.seconds if quality else None,
        "quality_flops": quality.flops if quality else None,
        "pareto_rank": evaluation.front,
        "seeds": len(seeds) if seeds else None,
        "seed_d_loss": [s.d_loss for s in seeds] if seeds else None,
        "seed_g_loss": [s.g_loss for s in seeds] if seeds else None,
        "seed_fid": [s.fid for s in seeds] if seeds and all(s.fid is not None for s in seeds) else None,
        "inherited_from": list(report.inherited.parents) if report else None,
        "inherited_fraction": report.inherited.fraction if report else None,
        "lineage_steps": r.steps + report.inherited.steps if r else None,
        "rung": rung,
        "steps": r.steps if r else None,
    }


def value(v: Any) -> Any:
    """A row's value as plain Python, None where missing: rows read back hold NaN, NaT and numpy values."""
    if hasattr(v, "tolist"):
        v = v.tolist()
    return None if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)) else v


def generation_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One generation's rows (as `row` builds them, or read back) in figures: best, mean and worst fitness, the
    failures, and the lowest FID and KID where any was measured (None otherwise)."""
    fitness = [float(r["fitness"]) for r in rows]
    fid = [value(r["fid"]) for r in rows if value(r["fid"]) is not None]
    kid = [value(r["kid"]) for r in rows if value(r["kid"]) is not None]
    return {"best_fitness": max(fitness), "mean_fitness": sum(fitness) / len(fitness), "worst_fitness": min(fitness),
            "failed": sum(r["status"] != "ok" for r in rows), "best_fid": min(fid, default=None),
            "best_kid": min(kid, default=None)}


# Key-value metadata of every generation file: the run keeps a copy of its resolved config in its logs, from
# which --resume restores a damaged config.yaml.
CONFIG_KEY = b"neuroevo.config"
VERSION_KEY = b"neuroevo.schema_version"


def write_generation(run_dir: Path, generation: int, rows: list[dict[str, Any]], config_yaml: str | None = None) -> Path:
    """Write one generation's rows as one file, atomically (rundir.write): a reader never sees half a file.

    config_yaml: the run's resolved config (config.to_yaml), kept in the file's metadata; no row depends on it.
    """
    for r in rows:
        if set(r) != set(SCHEMA.names) - {"schema_version"}:
            raise ValueError(f"log row columns differ from the schema: {sorted(set(r) ^ set(SCHEMA.names))}")
        if r["generation"] != generation:
            raise ValueError(f"a row of generation {r['generation']} written as generation {generation}'s")
    table = pa.Table.from_pylist([{"schema_version": SCHEMA_VERSION, **r} for r in rows], schema=SCHEMA)
    if rundir.hive(rundir.generation_dir(run_dir, generation)):  # its folder's name holds it, as older files' do
        table = table.drop_columns(["generation"])
    if config_yaml is not None:
        table = table.replace_schema_metadata({CONFIG_KEY: config_yaml.encode("utf-8"),
                                               VERSION_KEY: str(SCHEMA_VERSION).encode()})
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return rundir.write(rundir.generation_file(run_dir, generation), buffer.getvalue().to_pybytes())


def schema_of(version: int) -> pa.Schema:
    """The columns a file of schema_version `version` has, typed as in SCHEMA."""
    later = {name for v, names in ADDED.items() if v > version for name in names}
    return pa.schema([f for f in SCHEMA if f.name not in later])


NOT_NULL = ("chromosome_id", "chromosome", "born_generation", "is_elite", "fitness", "status")  # in every row


def extra_files(run_dir: Path, generation: int) -> list[Path]:
    """What a generation's folder holds besides its data file that a reader of the dataset would read too."""
    path = rundir.generation_file(run_dir, generation)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.iterdir() if p != path and not p.name.startswith(HIDDEN))


def check_generation(run_dir: Path, generation: int, members: Sequence[Member] | None = None) -> str | None:
    """What is wrong with a logged generation's folder, or None when it holds exactly one data file, with every
    column its schema_version has, of one row per member of `members` (None: of whatever members it holds).

    The rows may be in any order: runs before the rows were logged in population order logged them as their tasks
    finished.
    """
    path = rundir.generation_file(run_dir, generation)
    if not path.is_file():
        return f"{path} is missing"
    extra = extra_files(run_dir, generation)
    if extra:
        return f"{path.parent} holds {', '.join(p.name for p in extra)} besides {path.name}"
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        return f"{path} is unreadable ({type(e).__name__})"
    if members is not None and table.num_rows != len(members):
        return f"{path} has {table.num_rows} rows, expected {len(members)}"
    versions = set(table.column("schema_version").to_pylist()) if "schema_version" in table.column_names else set()
    version = versions.pop() if len(versions) == 1 else None
    if version not in range(1, SCHEMA_VERSION + 1):
        found = sorted(map(str, versions)) or "none"
        return f"{path} has schema_version {found}, expected one of 1-{SCHEMA_VERSION}"
    for field in schema_of(version):
        if field.name == "generation" and rundir.hive(path.parent):
            continue
        if field.name not in table.column_names:
            return f"{path} has no column {field.name} (schema_version {version})"
        if table.schema.field(field.name).type != field.type:
            return f"{path}: column {field.name} is {table.schema.field(field.name).type}, expected {field.type}"
    for name in NOT_NULL:
        if table.column(name).null_count:
            return f"{path}: column {name} has {table.column(name).null_count} null values"
    if "generation" in table.column_names and set(table.column("generation").to_pylist()) != {generation}:
        return f"{path} holds rows of generation {sorted(map(str, set(table.column('generation').to_pylist())))}"
    logged = sorted(zip(table.column("chromosome_id").to_pylist(), table.column("born_generation").to_pylist()))
    if members is not None and logged != sorted((m.chromosome.id, m.born_generation) for m in members):
        return f"{path}: its chromosomes are not generation {generation}'s population"
    return None


def check_saved(run_dir: Path, generation: int, kept: Sequence[str] = ()) -> str | None:
    """What is missing of what a valid logged generation saved beside its rows (dispatch.log_generation), or None:
    the best's weights, samples and chromosome when the best trained, and the weights the `kept` elites (ids;
    evolve.keep_weights) start the next generation from."""
    path = rundir.generation_file(run_dir, generation)
    table = pq.read_table(path, columns=["chromosome_id", "chromosome", "fitness", "status",
                                         *(["rung"] if "rung" in pq.read_schema(path).names else [])]).to_pydict()
    best = ranking.order(table["fitness"], chromosome_id=table["chromosome_id"],
                         rung=ranking.rung_key(table.get("rung"), table["status"]))[0]
    if table["status"][best] == "ok":
        for path in (rundir.best_weights(run_dir, generation), rundir.best_samples(run_dir, generation)):
            if not path.is_file():
                return f"{path} is missing"
        path = rundir.best_chromosome(run_dir, generation)
        if not path.is_file():
            return f"{path} is missing"
        if path.read_bytes() != (table["chromosome"][best] + "\n").encode():
            return f"{path} is not the chromosome of generation {generation}'s best, {table['chromosome_id'][best]}"
    status = dict(zip(table["chromosome_id"], table["status"]))
    for chromosome_id in kept:
        path = rundir.weights_file(run_dir, generation + 1, chromosome_id)
        if status.get(chromosome_id) == "ok" and not path.is_file():
            return f"{path} is missing"
    return None


def lineage_steps(run_dir: Path, generation: int) -> dict[str, int]:
    """The training steps behind each logged member's weights (lineage_steps), by chromosome id; empty where the
    generation's file is missing or older than the column."""
    path = rundir.generation_file(run_dir, generation)
    try:
        if "lineage_steps" not in pq.read_schema(path).names:
            return {}
        table = pq.read_table(path, columns=["chromosome_id", "lineage_steps"])
    except (OSError, pa.ArrowException):
        return {}
    rows = zip(table.column("chromosome_id").to_pylist(), table.column("lineage_steps").to_pylist())
    return {i: steps for i, steps in rows if steps is not None}


def logged_members(run_dir: Path, generation: int, columns: Sequence[str] = ()) -> list[dict[str, Any]] | None:
    """A logged generation's members as its rows tell them, in row order: chromosome (JSON), born_generation,
    resampled, parents and operator (left out in files of schema_version 1), and `columns` where the file has them;
    None when the file is unreadable."""
    try:
        table = pq.read_table(rundir.generation_file(run_dir, generation))
    except (OSError, pa.ArrowException):
        return None
    names = ("chromosome", "born_generation", "resampled", "parents", "operator", *columns)
    return table.select([n for n in names if n in table.column_names]).to_pylist()


def saved_config(run_dir: str | Path) -> tuple[Path, str] | None:
    """The config copy in the newest logged generation file that has one (and can be read): (file, YAML text).

    Files written before the copy was kept have none; damaged files are passed over (only their footer is read).
    """
    files = [rundir.generation_file(run_dir, g) for g in reversed(rundir.logged_generations(run_dir))]
    for path in files:
        try:
            metadata = pq.read_schema(path).metadata or {}
            if CONFIG_KEY in metadata:
                return path, metadata[CONFIG_KEY].decode("utf-8")
        except (OSError, pa.ArrowException, UnicodeDecodeError):
            continue
    return None


def read_generations(run_dir: str | Path, columns: list[str] | None = None,
                     filter: ds.Expression | None = None) -> pd.DataFrame:
    """A run's whole history, one row per chromosome per generation, with `generation` as an int column.

    `filter` is a pyarrow expression, e.g. `pyarrow.dataset.field("generation") >= 5`; on `generation` it
    skips whole files unread. Files of an older schema_version read with nulls in the newer columns.
    """
    df = dataset([(Path(run_dir), None)], SCHEMA).to_table(columns=columns, filter=filter).to_pandas()
    if "generation" in df.columns:
        df = df.sort_values("generation", kind="stable").reset_index(drop=True)
    return df


_FORMAT = ds.ParquetFileFormat()


def dataset(runs: Sequence[tuple[Path, ds.Expression | None]], schema: pa.Schema) -> ds.FileSystemDataset:
    """Every generation file of the runs as one dataset with `schema`: (run directory, what else its rows hold,
    e.g. `field("run_dir") == "runs/a"`, or None) each.

    Each file's fragment carries `generation == G` (G from its folder's name, in either layout) and the run's
    expression as its partition expression: pyarrow fills `generation` in files that lack it (before schema 4),
    and skips a file unopened when a filter contradicts it. Files are found as pyarrow's discovery finds them
    (hidden ones skipped), so whatever else a generation folder holds is read too, as pandas would read it.
    """
    fragments, filesystem = [], None
    for run_dir, where in runs:
        found = ds.dataset(rundir.generations_dir(run_dir), format=_FORMAT, schema=schema)
        filesystem = found.filesystem
        for f in found.get_fragments():
            generation = rundir.generation_of(Path(f.path).parent)
            expression = ds.scalar(True) if where is None else where
            if generation is not None:
                expression &= ds.field("generation") == generation
            fragments.append(_FORMAT.make_fragment(f.path, filesystem, partition_expression=expression))
    return ds.FileSystemDataset(fragments, schema, _FORMAT, filesystem)
