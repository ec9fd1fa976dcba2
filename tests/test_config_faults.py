"""Config files that are not what they should be: not text, too big, an alias bomb, unreadable, a key given twice, a
run_id that leaves out_dir, a value out of bounds, and a run's own config.yaml damaged before --resume (refused, or
restored from the copy in the logs)."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from neuroevo import config, errors
from neuroevo.evolve import population
from neuroevo.evolve.fitness import Evaluation
from neuroevo.store import logs, rundir
from tests.conftest import neuroevo, tiny_config, tiny_dict

BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))

BAD_FILES = [
    ("binary", bytes(range(256)) * 4, "not a UTF-8 text file"),
    ("latin-1", "evolve:\n  population: 4  # Größe\n".encode("latin-1"), "not a UTF-8 text file"),
    ("too large", b"#" * (config.MAX_BYTES + 1), "larger than 1 MiB"),
    ("alias bomb", BOMB.encode(), "more than 100,000 YAML values once its aliases are expanded"),
    ("recursive alias", b"a: &a [*a, 1]\n", "more than 100,000 YAML values"),
]


def _one_clean_line(p: subprocess.CompletedProcess, message: str) -> None:
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("neuroevo: error: ") and message in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name, content, message", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_a_config_file_that_is_not_a_small_text_is_one_line(tmp_path, name, content, message):
    (tmp_path / "c.yaml").write_bytes(content)
    start = time.monotonic()
    with pytest.raises(errors.ConfigError, match=message):
        config.load(str(tmp_path / "c.yaml"))
    assert time.monotonic() - start < 1.0
    p = neuroevo("run", "c.yaml", "--set", "out_dir=runs", cwd=tmp_path, timeout=60)
    _one_clean_line(p, f"c.yaml: {message}")
    assert not (tmp_path / "runs").exists()


def test_an_alias_bomb_in_a_set_value_is_refused():
    with pytest.raises(errors.ConfigError, match="--set seed: more than 100,000"):
        config.load("demo", ["seed=[&a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1], " + ", ".join(["*a"] * 20000) + "]"])


@pytest.mark.slow
def test_an_unreadable_config_file_is_one_line(tmp_path):
    """Read without the capabilities that let root read any file (setpriv), so the PermissionError is real."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed: root reads every file, so no unreadable file to test")
    (tmp_path / "secret.yaml").write_text(yaml.safe_dump(tiny_dict()))
    (tmp_path / "secret.yaml").chmod(0o000)
    drop = "-dac_override,-dac_read_search"
    cmd = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", sys.executable, "-m", "neuroevo", "run",
           "secret.yaml", "--set", "out_dir=runs"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    if "setpriv:" in p.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {p.stderr.strip()}")
    _one_clean_line(p, "secret.yaml: cannot be read (Permission denied)")
    assert not (tmp_path / "runs").exists()


def test_a_file_that_fails_to_read_is_one_line():
    with pytest.raises(errors.ConfigError, match="/proc/self/mem: cannot be read"):
        config.load("/proc/self/mem")


@pytest.mark.slow
@pytest.mark.parametrize("run_id", ["../x", "/tmp/abs", "a/b/../../..", "..", ".", ".hidden", "a/b", ""])
def test_run_id_must_be_a_plain_name(tmp_path, run_id):
    p = neuroevo("run", "--set", "out_dir=out/runs", "--set", f"run_id='{run_id}'", cwd=tmp_path, timeout=60)
    _one_clean_line(p, "run_id: expected a plain name")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# the copy of the config in the generation files' metadata


def _rows(cfg):
    members = population.fresh_members(cfg, 0, 3)
    return [logs.row("r", 0, m, 7, None, Evaluation("ok", "", 0.5)) for m in members]


def test_the_config_copy_round_trips_and_leaves_the_rows_unchanged(tmp_path):
    cfg = tiny_config()
    rows = _rows(cfg)
    logs.write_generation(tmp_path / "plain", 0, rows)
    logs.write_generation(tmp_path / "copy", 0, rows, config.to_yaml(cfg))
    assert logs.saved_config(tmp_path / "plain") is None
    path, text = logs.saved_config(tmp_path / "copy")
    assert path == rundir.generation_file(tmp_path / "copy", 0)
    assert config.loads_saved(text, "copy") == cfg
    assert pq.read_schema(path).metadata[b"neuroevo.schema_version"] == str(logs.SCHEMA_VERSION).encode()
    a, b = pq.read_table(rundir.generation_file(tmp_path / "plain", 0)), pq.read_table(path)
    assert a.equals(b) and a.to_pylist() == b.to_pylist()
    assert logs.read_generations(tmp_path / "plain").equals(logs.read_generations(tmp_path / "copy"))


def test_a_saved_config_missing_a_key_is_damage_not_a_default(tmp_path):
    text = config.to_yaml(tiny_config())
    assert config.loads_saved(text, "c") == tiny_config()
    with pytest.raises(errors.ConfigError, match=r"c: incomplete, 4 keys missing \(fitness, evolve, resources, quality\)"):
        config.loads_saved(text[:text.index("fitness:")], "c")
    with pytest.raises(errors.ConfigError, match="c: empty"):
        config.loads_saved("", "c")
    with pytest.raises(errors.ConfigError, match="c: incomplete, 1 keys missing \\(train.keep\\)"):
        config.loads_saved(text.replace("  keep: best\n", ""), "c")
    with pytest.raises(errors.ConfigError, match="evolve.extra: unknown key"):
        config.loads_saved(text.replace("evolve:\n", "evolve:\n  extra: 1\n"), "c")


# ---------------------------------------------------------------------------------------------------------
# a damaged config.yaml on --resume


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """`whole`: 3 generations; `short`: the same run stopped after 2 (finished, with evolve.generations 2)."""
    d = tmp_path_factory.mktemp("config-faults")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"generations": 2})))
    for run_id, generations in (("whole", 3), ("short", 2)):
        p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", f"run_id={run_id}", "--set",
                     f"evolve.generations={generations}", cwd=d)
        assert p.returncode == 0, p.stderr
    return d


def _copy_run(runs: Path, name: str) -> Path:
    shutil.copytree(runs / "runs" / "short", runs / "runs" / name)
    return runs / "runs" / name


def _history(run_dir):
    return logs.read_generations(run_dir).sort_values(["generation", "chromosome_id"]).reset_index(drop=True)


@pytest.mark.slow
def test_a_config_cut_before_fitness_is_restored_and_the_run_goes_on_exactly(runs):
    run_dir = _copy_run(runs, "cut")
    path = rundir.config_file(run_dir)
    text = path.read_text()
    path.write_text(text[:text.index("fitness:")])
    p = neuroevo("run", "--resume", run_dir, "--set", "evolve.generations=3", cwd=runs)
    assert p.returncode == 0, p.stderr
    assert "resume: " in p.stderr and "incomplete, 4 keys missing" in p.stderr and "restored it from" in p.stderr
    resumed, whole = _history(run_dir), _history(runs / "runs" / "whole")
    assert len(resumed) == 4 * 3
    for col in ("generation", "chromosome_id", "chromosome", "is_elite", "task_seed", "fitness", "d_loss"):
        assert resumed[col].tolist() == whole[col].tolist(), col
    assert config.load_saved(path).evolve.generations == 3 and config.load_saved(path).fitness.scale == 1e4


@pytest.mark.slow
def test_an_emptied_config_is_restored_from_the_logs(runs):
    run_dir = _copy_run(runs, "empty")
    before = rundir.config_file(run_dir).read_text()
    rundir.config_file(run_dir).write_bytes(b"")
    p = neuroevo("run", "--resume", run_dir, cwd=runs)
    assert p.returncode == 0 and "already logged" in p.stdout, p.stderr
    assert "config.yaml: empty; restored it from the copy kept in" in p.stderr
    assert rundir.config_file(run_dir).read_text() == before


@pytest.mark.slow
def test_a_key_changed_by_hand_is_refused(runs):
    run_dir = _copy_run(runs, "edited")
    path = rundir.config_file(run_dir)
    edited = path.read_text().replace("scale: 10000.0", "scale: 5000000.0")
    path.write_text(edited)
    p = neuroevo("run", "--resume", run_dir, "--set", "evolve.generations=3", cwd=runs)
    _one_clean_line(p, "differs from the run's own copy in")
    assert "fitness.scale (10000.0 -> 5000000.0)" in p.stderr
    assert path.read_text() == edited and len(logs.read_generations(run_dir)) == 4 * 2


@pytest.mark.slow
def test_a_damaged_config_with_nothing_logged_is_refused(tmp_path):
    run_dir = tmp_path / "runs" / "new"
    run_dir.mkdir(parents=True)
    rundir.config_file(run_dir).write_bytes(b"")
    p = neuroevo("run", "--resume", run_dir, cwd=tmp_path, timeout=60)
    _one_clean_line(p, "config.yaml: empty; no generation is logged yet, so nothing was trained: start a new run")
    assert sorted(x.name for x in run_dir.iterdir()) == ["config.yaml"]


@pytest.mark.slow
def test_a_run_written_before_the_copy_resumes_when_intact_and_is_refused_when_damaged(runs):
    run_dir = _copy_run(runs, "legacy")
    for g in range(2):  # the generation files as the neuroevo before the copy wrote them
        path = rundir.generation_file(run_dir, g)
        pq.write_table(pq.read_table(path).replace_schema_metadata(None), path)
    doc = json.loads(rundir.state_file(run_dir).read_text())  # which kept no fingerprints either
    del doc["sha256"]
    rundir.state_file(run_dir).write_text(json.dumps(doc))
    assert logs.saved_config(run_dir) is None
    p = neuroevo("run", "--resume", run_dir, cwd=runs)
    assert p.returncode == 0 and "already logged" in p.stdout, p.stderr
    path = rundir.config_file(run_dir)
    path.write_text(path.read_text().replace("  keep: best\n", ""))
    p = neuroevo("run", "--resume", run_dir, cwd=runs, timeout=60)
    _one_clean_line(p, "incomplete, 1 keys missing (train.keep); the run's logs keep no copy of its config")


def test_a_saved_config_written_before_train_max_loss_resumes_without_the_bound():
    """An older run's complete config.yaml lacks train.max_loss: not damage; it resumes as it ran, unbounded."""
    text = config.to_yaml(config.load("demo"))
    older = "\n".join(line for line in text.splitlines() if not line.strip().startswith("max_loss:"))
    assert config.loads_saved(older, "config.yaml").train.max_loss is None
    assert config.loads_saved(text, "config.yaml").train.max_loss == 1e5


# ---------------------------------------------------------------------------------------------------------
# a key given twice: YAML would keep the last value silently


DUPLICATES = [
    ("top level", "seed: 0\nout_dir: runs\nseed: 1\n", "seed is given twice (lines 1 and 3)"),
    ("nested", "evolve:\n  population: 4\n  generations: 2\n  population: 6\n",
     "evolve.population is given twice (lines 2 and 4)"),
    ("a section twice", "evolve:\n  population: 4\ndata:\n  subset: 128\nevolve:\n  generations: 2\n",
     "evolve is given twice (lines 1 and 5)"),
    ("quoted", "seed: 0\n'seed': 1\n", "seed is given twice (lines 1 and 2)"),
    ("in a flow mapping", "evolve: {population: 4, population: 6}\n", "evolve.population is given twice (on line 1)"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, text, message", DUPLICATES, ids=[d[0] for d in DUPLICATES])
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, name, text, message):
    (tmp_path / "c.yaml").write_text(text)
    p = neuroevo("run", "c.yaml", cwd=tmp_path, timeout=60)
    _one_clean_line(p, f"c.yaml: {message}; give each key once")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["c.yaml"]


@pytest.mark.slow
def test_a_key_given_twice_in_a_set_value_is_refused(tmp_path):
    p = neuroevo("run", "--set", "evolve={population: 4, population: 6}", "--set", "out_dir=runs", cwd=tmp_path,
                 timeout=60)
    _one_clean_line(p, "--set evolve: population is given twice (on line 1); give each key once")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_key_given_twice_in_a_saved_config_is_damage(runs):
    run_dir = _copy_run(runs, "twice")
    path = rundir.config_file(run_dir)
    before = path.read_text()
    path.write_text(before.replace("seed: 0\n", "seed: 0\nseed: 1\n", 1))
    p = neuroevo("run", "--resume", run_dir, cwd=runs)
    assert p.returncode == 0 and "already logged" in p.stdout, p.stderr
    assert f"{path}: seed is given twice (lines 1 and 2); give each key once; restored it from the copy" in p.stderr
    assert path.read_text() == before


def test_anchors_merge_keys_tags_and_tabs_still_read(tmp_path):
    """Overriding a merged key is what merge keys are for, not a key given twice."""
    raw = config.parse_yaml("x-base: &evolve {population: 4, generations: 2}\n"
                            "evolve:\n  <<: *evolve\n  population: 6\n", "c.yaml")
    assert raw["evolve"] == {"population": 6, "generations": 2}
    (tmp_path / "c.yaml").write_text("seed: !!int 3\nout_dir:\truns\ndata: {source: demo, subset: &n 128}\n"
                                     "quality: {kid_subset_size: 100, reference_images: *n}\n")
    cfg = config.load(str(tmp_path / "c.yaml"))
    assert (cfg.seed, cfg.out_dir, cfg.data.subset, cfg.quality.reference_images) == (3, "runs", 128, 128)


# ---------------------------------------------------------------------------------------------------------
# bounds, checked before Ray starts: one line naming the key and what it allows, nothing written


BOUNDS = [
    (["seed=-1"], "seed: expected a whole number from 0 to 2^32 - 1 (4294967295), got -1"),
    (["seed=4294967296"], "seed: expected a whole number from 0 to 2^32 - 1 (4294967295), got 4294967296"),
    (["evolve.population=1000000000"],
     "evolve.population: 1,000,000,000 is more than one driver can draw and hold; at most 100,000"),
    (["fitness.failed=.nan"], "fitness.failed: input should be a finite number (got nan)"),
    (["fitness.scale=.inf"], "fitness.scale: input should be a finite number (got inf)"),
    (["train.max_loss=.inf"], "train.max_loss: input should be a finite number (got inf)"),
    (["space.lr=[1.0e-4, .inf]"], "space.lr.1: input should be a finite number (got inf)"),
    (["resources.num_cpus=.nan"], "resources.num_cpus: expected a finite number or 'auto', got nan"),
    (["resources.num_gpus=.inf"], "resources.num_gpus: input should be a finite number (got inf)"),
    (["out_dir=''"], "out_dir: expected the folder to keep runs in, e.g. runs (got '')"),
    (["space.batch_size=1", "data.subset=128"],
     "space.batch_size: expected at least 2 (BatchNorm needs two images a batch), got 1"),
    (["data.subset=100000000000"], "data.subset: 100,000,000,000 demo images at 16px need about"),
]


@pytest.mark.slow
@pytest.mark.parametrize("overrides, message", BOUNDS, ids=[" ".join(o) for o, _ in BOUNDS])
def test_a_value_out_of_bounds_is_one_line_before_ray(tmp_path, overrides, message):
    sets = [a for o in overrides for a in ("--set", o)]
    start = time.monotonic()
    p = neuroevo("run", *sets, "--set", "run_id=r", cwd=tmp_path, timeout=60)
    _one_clean_line(p, message)
    assert time.monotonic() - start < 20  # no hang while drawing, no cluster started
    assert "memory to draw; this machine has" in p.stderr if "demo images" in message else True
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_subset_larger_than_the_dataset_is_refused(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "images" / c).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "images" / c / f"{i}.png")
    p = neuroevo("run", "--set", "data.source=folder", "--set", f"data.root={tmp_path / 'images'}", "--set",
                 "data.subset=64", "--set", "out_dir=runs", cwd=tmp_path, timeout=60)
    _one_clean_line(p, f"data.subset: 64 is more than the 6 images of {tmp_path / 'images'}")
    assert sorted(x.name for x in tmp_path.iterdir()) == ["images"]
