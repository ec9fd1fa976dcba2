"""`neuroevo migrate`: a run directory written by an older neuroevo, upgraded in place to the current formats.

    state.json     format 1 (every generation's population) -> format 2 (the next generation's only)
    generations/   generation=NNNN/ -> NNNN/, and each file to the current schema_version (logs.SCHEMA_VERSION):
                   the `generation` column, nulls in the columns later versions added (logs.ADDED), its metadata
                   kept, with the current version key and the config copy completed as config.yaml is
    config.yaml    the keys added later (config.LATER_KEYS) written out, with the values the run ran with

`plan` reads and checks everything and writes nothing; `apply` writes, through rundir: each file atomically, and a
generation's folder renamed before its file is rewritten, so that one folder at a time holds a generation's rows. A
migrate stopped anywhere leaves a run that reads and resumes as before (a file of an older schema in a folder NNNN
reads as any older file does, and rundir finds each generation's folder under either name); migrating again finishes
it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from neuroevo import config
from neuroevo.errors import ConfigError, InputError
from neuroevo.store import fingerprints, logs, rundir, state

VERSION = str(logs.SCHEMA_VERSION).encode()  # the metadata's VERSION_KEY of a current file


@dataclass(frozen=True)
class Folder:
    """A generation folder to upgrade: renamed (generation=NNNN to NNNN), its file rewritten, or both."""
    generation: int
    file: Path  # its data file, where it is now
    rename: bool
    rewrite: str | None  # what rewriting the file changes, in words; None: the file is current


@dataclass(frozen=True)
class Plan:
    """What migrating a run changes; nothing where it is current."""
    run_dir: Path
    seed: int  # the run's, which state.json repeats
    state: str | None  # state.json's text in format 2; None: it is
    config: str | None  # config.yaml's text with the later keys; None: it has them
    config_keys: tuple[str, ...]  # the later keys config.yaml lacks
    folders: tuple[Folder, ...]  # the generation folders that change, in generation order

    @property
    def current(self) -> bool:
        return self.state is None and self.config is None and not self.folders


def plan(run_dir: Path) -> Plan:
    """Read and check the whole run; InputError, one line naming the file, for anything it cannot migrate."""
    _check_run_dir(run_dir)
    cfg, keys = _saved_config(run_dir)
    text = _state_text(run_dir, cfg.seed)
    _check_fingerprints(run_dir)
    return Plan(run_dir, cfg.seed, text, config.to_yaml(cfg) if keys else None, keys, _folders(run_dir))


def _check_fingerprints(run_dir: Path) -> None:
    """A file changed since it was logged is not upgraded (its new fingerprint would vouch for the change)."""
    try:
        _, recorded = state.fingerprints(run_dir)
    except state.StateError as e:
        raise InputError(str(e)) from None
    for g in sorted(recorded):
        problem = fingerprints.changed(run_dir, g, recorded)
        if problem:
            raise InputError(f"{problem}; resume the run to train generation {g} again, then migrate it")


def _check_run_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise InputError(f"{run_dir}: no such directory; expected a run directory, OUT_DIR/RUN_ID")
    if not rundir.state_file(run_dir).is_file():
        raise InputError(f"{rundir.state_file(run_dir)}: not found; is {run_dir} a neuroevo run directory?")


def _saved_config(run_dir: Path) -> tuple[config.RunConfig, tuple[str, ...]]:
    """config.yaml read as --resume reads it, and the later keys it lacks."""
    path = rundir.config_file(run_dir)
    try:
        cfg = config.load_saved(path)
        return cfg, tuple(config.missing_keys(config.parse_yaml(path.read_text("utf-8"), str(path))))
    except ConfigError as e:
        raise InputError(str(e)) from None


def _state_text(run_dir: Path, seed: int) -> str | None:
    """state.json in format 2, as the next save would write it; None where it is in format 2 already."""
    try:
        saved = state.load(run_dir)
    except state.StateError as e:
        raise InputError(f"{e}; expected neuroevo's state.json, of format 1 or {state.FORMAT}") from None
    if "generations" not in json.loads(rundir.state_file(run_dir).read_text()):  # load read it: it parses
        return None
    return state.dumps(saved, seed)


def _folders(run_dir: Path) -> tuple[Folder, ...]:
    found = [f for f in rundir.generations_dir(run_dir).glob("*") if rundir.generation_of(f) is not None]
    twice = [g for g, n in Counter(map(rundir.generation_of, found)).items() if n > 1]
    if twice:
        raise InputError(f"{rundir.generations_dir(run_dir)} holds generation {min(twice)} in two folders, "
                         f"{min(twice):04d} and {rundir.HIVE}{min(twice):04d}; expected one")
    folders = (_folder(run_dir, g) for g in sorted(map(rundir.generation_of, found)))
    return tuple(f for f in folders if f.rename or f.rewrite)


def _folder(run_dir: Path, generation: int) -> Folder:
    problem = logs.check_generation(run_dir, generation)
    if problem:
        raise InputError(f"{problem}; migrate needs each logged generation whole (neuroevo run --resume {run_dir} "
                         f"sets a damaged one aside and trains it again)")
    file = rundir.generation_file(run_dir, generation)
    schema = pq.read_schema(file)
    for field in schema:
        if field.name in logs.SCHEMA.names and field.type != logs.SCHEMA.field(field.name).type:
            raise InputError(f"{file}: column {field.name} is {field.type}, expected "
                             f"{logs.SCHEMA.field(field.name).type}")
    version = pq.read_table(file, columns=["schema_version"]).column(0)[0].as_py()  # one, as checked
    return Folder(generation, file, rundir.hive(file.parent), _rewrite(file, version, schema))


def _rewrite(file: Path, version: int, schema: pa.Schema) -> str | None:
    """What upgrading a file of `version` with `schema` changes, in words; None: nothing."""
    said = []
    if version < logs.SCHEMA_VERSION:
        said.append(f"schema_version {version} -> {logs.SCHEMA_VERSION}")
    elif "generation" not in schema.names:
        said.append("the generation column added")
    metadata = schema.metadata or {}
    new = upgraded_metadata(metadata, file)
    if new.get(logs.CONFIG_KEY) != metadata.get(logs.CONFIG_KEY):
        said.append("its config copy completed")
    elif new != metadata and not said:
        said.append(f"its metadata to schema_version {logs.SCHEMA_VERSION}")
    return ", ".join(said) or None


def upgraded(table: pa.Table, generation: int) -> pa.Table:
    """A generation file's table at the current schema_version: the columns of logs.SCHEMA in its order,
    `generation` filled, nulls in those the file's version lacks; its rows in their order, and any column SCHEMA
    does not know after."""
    n = table.num_rows
    given = {"schema_version": pa.array([logs.SCHEMA_VERSION] * n, pa.int16()),
             "generation": pa.array([generation] * n, pa.int32())}
    fields = [*logs.SCHEMA, *(f for f in table.schema if f.name not in logs.SCHEMA.names)]
    columns = [given[f.name] if f.name in given else table.column(f.name) if f.name in table.column_names
               else pa.nulls(n, f.type) for f in fields]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def upgraded_metadata(metadata: dict[bytes, bytes], file: Path) -> dict[bytes, bytes]:
    """A generation file's key-value metadata as a current file's: every key kept, the current version key and the
    config copy completed; none added to a file written without neuroevo's."""
    if logs.CONFIG_KEY not in metadata and logs.VERSION_KEY not in metadata:
        return metadata
    new = {**metadata, logs.VERSION_KEY: VERSION}
    if logs.CONFIG_KEY in metadata:
        where = f"the config copy in {file}"
        try:
            new[logs.CONFIG_KEY] = completed_config(metadata[logs.CONFIG_KEY].decode("utf-8"), where).encode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{where}: not UTF-8 text; expected a YAML config") from None
    return new


def completed_config(text: str, where: str) -> str:
    """A saved config's text with the later keys written out (config.to_yaml, as a run writes it); the text itself
    where it has them all. InputError where it is damaged."""
    try:
        raw = config.parse_yaml(text, where)
        if isinstance(raw, dict) and not config.missing_keys(raw):
            return text
        return config.to_yaml(config.loads_saved(text, where))
    except ConfigError as e:
        raise InputError(str(e)) from None


def apply(plan: Plan) -> None:
    """Write what `plan` found: the generation folders in order, each renamed and then its file rewritten (never two
    folders of one generation), then state.json and config.yaml; every file whole at every moment."""
    rewritten = {}  # generation: the sha256 of its file as rewritten
    for f in plan.folders:
        file = f.file
        if f.rename:
            file = rundir.move(file.parent, file.parent.with_name(file.parent.name.removeprefix(rundir.HIVE)))
            file = file / f.file.name
        if f.rewrite:
            content = _upgraded_file(file, f.generation)
            rundir.write(file, content)
            rewritten[f.generation] = hashlib.sha256(content).hexdigest()
    if plan.state is not None:
        rundir.write(rundir.state_file(plan.run_dir), plan.state)
    saved = refreshed = state.load(plan.run_dir)
    for g, digest in rewritten.items():  # a fingerprint recorded for the old file, now of the new one
        if g in saved.sha256:
            refreshed = refreshed.fingerprinted(g, digest)
    if refreshed != saved:
        rundir.write(rundir.state_file(plan.run_dir), state.dumps(refreshed, plan.seed))
    if plan.config is not None:
        rundir.write(rundir.config_file(plan.run_dir), plan.config)


def _upgraded_file(file: Path, generation: int) -> bytes:
    table = pq.read_table(file)
    table = upgraded(table, generation).replace_schema_metadata(upgraded_metadata(table.schema.metadata or {}, file))
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    return buffer.getvalue().to_pybytes()


def migrate(run_dir: Path) -> Plan:
    """Upgrade the run in place, holding it as a driver does (rundir.claim: ClaimError while one trains it); the
    plan carried out (current: nothing was written)."""
    plan(run_dir)  # bad input is found before the lock is taken: nothing at all is written
    with rundir.claim(run_dir, new=False):
        found = plan(run_dir)  # again: a driver may have logged a generation since
        apply(found)
    return found


def describe(plan: Plan) -> list[str]:
    """What the plan changes, a line per file kind, consecutive generations of one change on one line."""
    lines = []
    if plan.state is not None:
        lines.append("state.json: format 1 (every generation's population) -> 2 (the next generation's)")
    if plan.config is not None:
        lines.append(f"config.yaml: {', '.join(plan.config_keys)} written out with the values the run ran with")
    spans: list[tuple[int, int, str]] = []
    for f in plan.folders:
        what = "; ".join(filter(None, [f"folder {rundir.HIVE}NNNN -> NNNN" if f.rename else None, f.rewrite]))
        if spans and spans[-1][1] == f.generation - 1 and spans[-1][2] == what:
            spans[-1] = (spans[-1][0], f.generation, what)
        else:
            spans.append((f.generation, f.generation, what))
    for first, last, what in spans:
        lines.append(f"generations {first}-{last}: {what}" if last > first else f"generation {first}: {what}")
    return lines
