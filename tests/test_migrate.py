"""`neuroevo migrate` upgrades a run of the older formats in place (state.json format 1, logs of an older
schema_version in folders generation=NNNN, a config.yaml without the keys added since): the run then reads, reports
and resumes exactly as the unmigrated one does, through the current formats. A second migrate and --check change
nothing; bad input and a run a driver holds are refused in one line, nothing written; a migrate stopped anywhere
leaves a run that reads, and migrating again finishes it."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from neuroevo import cli, config
from neuroevo.evolve.fitness import Evaluation
from neuroevo.evolve.population import fresh_members
from neuroevo.store import logs, migrate, resume, rundir, state
from tests.conftest import neuroevo, old_layout, old_state, tiny_config, tiny_dict

N = 4
CURRENT = ("{}: already current (state.json format 2, logs schema_version " + str(logs.SCHEMA_VERSION)
           + ", config.yaml complete); nothing to do")
STATE_LINE = "  state.json: format 1 (every generation's population) -> 2 (the next generation's)"
FOLDERS_LINE = "  generations 0-2: folder generation=NNNN -> NNNN; {}, its config copy completed"
COLUMNS = ["generation", "chromosome_id", "chromosome", "born_generation", "parents", "operator", "task_seed",
           "d_loss", "g_loss", "fitness"]


# the later keys of the runs here, whose space is seed-v1 (space v2's later keys are no keys of theirs)
SEED_V1_LATER_KEYS = [key for key in config.LATER_KEYS if not key.startswith("space.")]


def without_later_keys(text: str) -> str:
    """A config's text as neuroevo wrote it before config.LATER_KEYS were keys."""
    raw = yaml.safe_load(text)
    for key in SEED_V1_LATER_KEYS:
        *sections, name = key.split(".")
        node = raw
        for section in sections:
            node = node[section]
        del node[name]
    return yaml.safe_dump(raw, sort_keys=False)


def make_old(run_dir, version):
    """A run of the current formats as an older neuroevo left it: logs of `version` in folders generation=NNNN,
    state.json of format 1 (without parents and operators), config.yaml and the logs' copies of it without the
    later keys."""
    saved = state.load(run_dir)
    old_layout(run_dir, version)
    doc = old_state(run_dir, saved.completed - 1, lineage=False)
    doc["completed"] = saved.completed
    doc["generations"].append({"generation": saved.completed, "elite_ids": [], "population": [
        {"chromosome": m.chromosome.to_json(), "born_generation": m.born_generation, "resampled": m.resampled}
        for m in saved.population]})
    rundir.state_file(run_dir).write_text(json.dumps(doc))
    path = rundir.config_file(run_dir)
    path.write_text(without_later_keys(path.read_text()))
    for g in rundir.logged_generations(run_dir):
        file = rundir.generation_file(run_dir, g)
        table = pq.read_table(file)
        copy = without_later_keys(table.schema.metadata[logs.CONFIG_KEY].decode())
        pq.write_table(table.replace_schema_metadata({**table.schema.metadata, logs.CONFIG_KEY: copy.encode()}), file)


def synthetic(run_dir, version, generations=3):
    """An older run's directory without training: `generations` logged generations of random members."""
    cfg = tiny_config(evolve={"population": N})
    text = config.to_yaml(cfg)
    rundir.write(rundir.config_file(run_dir), text)
    for g in range(generations):
        rows = [logs.row("synthetic", g, m, 1, None, Evaluation("ok", "", 0.1 * i))
                for i, m in enumerate(fresh_members(cfg, g, N))]
        logs.write_generation(run_dir, g, rows, text)
    state.save(run_dir, state.RunState(fresh_members(cfg, generations, N), generations), cfg.seed)
    make_old(run_dir, version)
    return run_dir


def tree(run_dir):
    """Every file of the run and its bytes."""
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def rows(run_dir):
    """The run's logs as neuroevo reads them, but for the column that says which schema wrote each file."""
    df = logs.read_generations(run_dir).drop(columns=["schema_version"])
    return df.sort_values(["generation", "chromosome_id"]).reset_index(drop=True)


def assert_current(run_dir):
    """Every file of the run in the current format: the folders NNNN, each file of the current schema_version with
    exactly logs.SCHEMA and its generation, metadata of that version with a complete config copy; state.json format 2; a
    complete config.yaml."""
    folders = sorted(p.name for p in rundir.generations_dir(run_dir).iterdir())
    assert folders == [f"{g:04d}" for g in range(len(folders))]
    for g in range(len(folders)):
        table = pq.read_table(rundir.generation_file(run_dir, g))
        assert table.schema.remove_metadata() == logs.SCHEMA
        assert set(table.column("generation").to_pylist()) == {g}
        assert set(table.column("schema_version").to_pylist()) == {logs.SCHEMA_VERSION}
        assert table.schema.metadata[logs.VERSION_KEY] == str(logs.SCHEMA_VERSION).encode()
        copy = yaml.safe_load(table.schema.metadata[logs.CONFIG_KEY])
        assert config.missing_keys(copy) == []
    doc = json.loads(rundir.state_file(run_dir).read_text())
    assert doc["format"] == state.FORMAT and "generations" not in doc
    assert config.missing_keys(yaml.safe_load(rundir.config_file(run_dir).read_text())) == []


def main(capsys, *args):
    """The CLI in this process: its exit code, stdout lines and stderr lines."""
    code = cli.main(["migrate", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def test_a_file_of_an_older_schema_gains_the_later_columns_as_nulls():
    row = logs.row("r", 5, fresh_members(tiny_config(), 5, 1)[0], 1, None, Evaluation("ok", "", 0.5))
    later = [name for v, names in logs.ADDED.items() if v > 1 for name in names]
    old = pa.Table.from_pylist([{**row, "schema_version": 1}], schema=logs.SCHEMA).drop_columns(later)
    new = migrate.upgraded(old, 5)
    assert new.schema == logs.SCHEMA
    assert new.column("generation").to_pylist() == [5] and new.column("schema_version").to_pylist() == [logs.SCHEMA_VERSION]
    assert all(new.column(name).null_count == 1 for name in later if name != "generation")
    assert new.select(old.column_names[1:]).equals(old.select(old.column_names[1:]))


@pytest.mark.parametrize("version", [1, 2, 3, 4])
def test_an_older_run_is_upgraded_and_reads_as_before(tmp_path, capsys, version):
    """Version 4: a run begun before schema 4 and resumed since, whose new files went to its folders
    generation=NNNN without the `generation` column."""
    run_dir = synthetic(tmp_path / "run", version)
    before = rows(run_dir), state.load(run_dir), resume.saved_config(run_dir, restore=False)
    code, out, err = main(capsys, run_dir)
    schema = f"schema_version {version} -> {logs.SCHEMA_VERSION}"
    assert (code, err) == (0, [])
    assert out == [f"{run_dir}: migrated:", STATE_LINE,
                   f"  config.yaml: {', '.join(SEED_V1_LATER_KEYS)} written out with the values the run ran with",
                   FOLDERS_LINE.format(schema)]
    assert_current(run_dir)
    assert rows(run_dir).equals(before[0])
    assert (state.load(run_dir), resume.saved_config(run_dir, restore=False)) == before[1:]
    assert all(logs.check_generation(run_dir, g) is None for g in range(3))
    files = tree(run_dir)
    assert main(capsys, run_dir) == (0, [CURRENT.format(run_dir)], [])
    assert main(capsys, "--check", run_dir)[0] == 0
    assert tree(run_dir) == files


def test_check_says_what_would_change_and_writes_nothing(tmp_path, capsys):
    run_dir = synthetic(tmp_path / "run", 3)
    rundir.write(rundir.config_file(run_dir), config.to_yaml(tiny_config(evolve={"population": N})))
    files = tree(run_dir)
    code, out, err = main(capsys, run_dir, "--check")
    assert (code, err) == (1, [])
    assert out == [f"{run_dir}: would change:", STATE_LINE, FOLDERS_LINE.format(f"schema_version 3 -> {logs.SCHEMA_VERSION}")]
    assert tree(run_dir) == files


def _cut(run_dir):
    part = rundir.generation_file(run_dir, 1)
    part.write_bytes(part.read_bytes()[:100])


def _bad_copy(run_dir):
    file = rundir.generation_file(run_dir, 2)
    table = pq.read_table(file)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, logs.CONFIG_KEY: b"seed: ["}), file)


BAD = {
    "no such directory": (lambda r: shutil.rmtree(r), "run: no such directory; expected a run directory"),
    "no run directory": (lambda r: rundir.state_file(r).unlink(),
                         "run/state.json: not found; is {run_dir} a neuroevo run directory?"),
    "state.json not JSON": (lambda r: rundir.state_file(r).write_text("{"), "run/state.json: unreadable"),
    "state.json of a newer format": (lambda r: rundir.state_file(r).write_text('{"format": 3, "completed": 1}'),
                                     "run/state.json: unreadable (ValueError: format 3, expected 2"),
    "a cut log file": (_cut, "generation=0001/part-0.parquet is unreadable (ArrowInvalid); migrate needs each"),
    "a generation in two folders": (
        lambda r: shutil.copytree(rundir.generation_dir(r, 1), rundir.generations_dir(r) / "0001"),
        "run/generations holds generation 1 in two folders, 0001 and generation=0001; expected one"),
    "config.yaml without a key": (
        lambda r: rundir.config_file(r).write_text(rundir.config_file(r).read_text().replace("seed: 0\n", "")),
        "run/config.yaml: incomplete, 1 keys missing (seed)"),
    "a damaged config copy": (
        _bad_copy, "the config copy in {run_dir}/generations/generation=0002/part-0.parquet: not valid YAML"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_written(tmp_path, capsys, case):
    damage, message = BAD[case]
    run_dir = synthetic(tmp_path / "run", 3)
    damage(run_dir)
    files = tree(run_dir) if run_dir.exists() else None
    code, out, err = main(capsys, run_dir)
    assert code == 2 and out == [] and len(err) == 1, err
    assert err[0].startswith("neuroevo: error: ") and message.format(run_dir=run_dir) in err[0], err[0]
    assert (tree(run_dir) if run_dir.exists() else None) == files


class Stop(Exception):
    """A migrate stopped at this write or rename (a crash, a power cut)."""


def _stopping(f, steps, at):
    def step(*args, **kwargs):
        steps.append(args[0])
        if len(steps) == at:
            raise Stop
        return f(*args, **kwargs)
    return step


def test_a_migrate_stopped_anywhere_leaves_a_run_that_reads_and_migrating_again_finishes_it(tmp_path, monkeypatch,
                                                                                              capsys):
    """Each rename and write of a migrate is a point it may stop at: the run stopped there holds each generation in
    one folder, reads the same rows, checks whole and loads its state and config; migrate then finishes it."""
    cfg = tiny_config(evolve={"population": N})
    original = synthetic(tmp_path / "original", 1)
    before = rows(original), state.load(original), resume.saved_config(original, restore=False)
    points = []
    with monkeypatch.context() as m:
        m.setattr(rundir, "write", _stopping(rundir.write, points, 0))
        m.setattr(rundir, "move", _stopping(rundir.move, points, 0))
        migrate.migrate(shutil.copytree(original, tmp_path / "whole"))
    assert len(points) == 3 * 2 + 3  # each generation's folder and file, state.json, config.yaml, claim's .lock.json
    for at in range(1, len(points) + 1):
        run_dir = shutil.copytree(original, tmp_path / f"stopped-{at}")
        with monkeypatch.context() as m, pytest.raises(Stop):
            steps = []
            m.setattr(rundir, "write", _stopping(rundir.write, steps, at))
            m.setattr(rundir, "move", _stopping(rundir.move, steps, at))
            migrate.migrate(run_dir)
        assert sorted(rundir.logged_generations(run_dir)) == [0, 1, 2]  # each once
        assert rows(run_dir).equals(before[0])
        assert all(resume.logged(cfg, run_dir, g)[1] is None for g in range(3))
        assert (state.load(run_dir), resume.saved_config(run_dir, restore=False)) == before[1:]
        assert main(capsys, run_dir)[0] == 0
        assert_current(run_dir)
        assert tree(run_dir) == tree(tmp_path / "whole")


@pytest.fixture(scope="module")
def older(tmp_path_factory):
    """A real tiny run of two generations, as a neuroevo of logs schema_version 1 and state format 1 left it."""
    d = tmp_path_factory.mktemp("migrate")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"population": N, "generations": 2})))
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=older", "--quiet", cwd=d)
    assert p.returncode == 0, p.stderr
    run_dir = d / "runs" / "older"
    make_old(run_dir, 1)
    return run_dir


def _same_output(a, b, *args):
    """A command's output on run a and on run b, each run's path left out."""
    pa_, pb = neuroevo(*args, a), neuroevo(*args, b)
    assert pa_.returncode == pb.returncode == 0, pa_.stderr + pb.stderr
    assert pa_.stdout.replace(str(a), "RUN") == pb.stdout.replace(str(b), "RUN")
    return pa_.stdout


@pytest.mark.slow
def test_a_migrated_run_reports_queries_and_resumes_as_the_unmigrated_one(older, tmp_path):
    unmigrated, migrated = shutil.copytree(older, tmp_path / "a"), shutil.copytree(older, tmp_path / "b")
    p = neuroevo("migrate", migrated)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert p.stdout.splitlines()[0] == f"{migrated}: migrated:" and f"schema_version 1 -> {logs.SCHEMA_VERSION}" in p.stdout
    assert_current(migrated)
    assert "best chromosome" in _same_output(unmigrated, migrated, "best")
    _same_output(unmigrated, migrated, "query", "--format", "json", "--where", "generation >= 0")
    _same_output(unmigrated, migrated, "query", "--format", "json", "--sql",
                 "SELECT * EXCLUDE (schema_version, run_dir) FROM logs ORDER BY generation, chromosome_id")
    for run_dir in (unmigrated, migrated):
        p = neuroevo("run", "--resume", run_dir, "--set", "evolve.generations=3", "--quiet")
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        # nothing damaged or repaired; an older run's generations have no fingerprint to verify, migrated or not
        said = [line for line in p.stderr.splitlines() if line.startswith("resume: ")]
        assert said == ["resume: generations 0-1 of 2 logged have no fingerprint in state.json (logged by a neuroevo "
                        "that kept none), so they cannot be verified"], p.stderr
    assert logs.read_generations(migrated)[COLUMNS].equals(logs.read_generations(unmigrated)[COLUMNS])
    # the same state; each fingerprints its own generation 2, whose rows name its own run
    docs = [json.loads(rundir.state_file(r).read_text()) for r in (unmigrated, migrated)]
    assert [set(d.pop("sha256")) for d in docs] == [{"2"}, {"2"}] and docs[0] == docs[1]
    # the same config, each saying which run it is
    saved = [rundir.config_file(r).read_text() for r in (unmigrated, migrated)]
    assert saved[1] == saved[0].replace("run_id: a\n", "run_id: b\n") and "run_id: a\n" in saved[0]
    assert rundir.generation_file(unmigrated, 2).parent.name == "generation=0002"
    assert_current(migrated)  # the generation the resumed run added too


@pytest.mark.slow
def test_a_second_migrate_and_check_change_nothing(older, tmp_path):
    run_dir = shutil.copytree(older, tmp_path / "run")
    p = neuroevo("migrate", "--check", run_dir)
    assert p.returncode == 1 and p.stdout.startswith(f"{run_dir}: would change:\n"), p.stderr
    assert neuroevo("migrate", run_dir).returncode == 0
    files = tree(run_dir)
    for args in (["migrate", run_dir], ["migrate", "--check", run_dir]):
        p = neuroevo(*args)
        assert p.returncode == 0 and p.stdout == CURRENT.format(run_dir) + "\n", p.stdout + p.stderr
    assert tree(run_dir) == files


@pytest.mark.slow
def test_a_run_a_driver_holds_is_refused(older, tmp_path):
    run_dir = shutil.copytree(older, tmp_path / "run")
    with rundir.claim(run_dir, new=False):
        files = tree(run_dir)
        p = neuroevo("migrate", run_dir)
    assert p.returncode == 2 and p.stdout == "", p.stdout
    assert p.stderr.startswith(f"neuroevo: error: {run_dir}: another neuroevo driver is training this run (pid ")
    assert len(p.stderr.splitlines()) == 1, p.stderr
    assert {k: v for k, v in tree(run_dir).items() if k != rundir.HOLDER} == \
        {k: v for k, v in files.items() if k != rundir.HOLDER}
