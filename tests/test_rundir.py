"""The run directory's one atomic write, and the writers of the run's files that go through it."""

import json
import os

import pandas as pd
import pytest

from neuroevo import config
from neuroevo.analysis import report
from neuroevo.evolve import population
from neuroevo.evolve.fitness import Evaluation
from neuroevo.store import logs, rundir, state


class Crash(Exception):
    pass


def crash(src, dst):
    """os.replace of a process that dies between writing the temporary file and renaming it."""
    raise Crash(f"killed before renaming {src}")


@pytest.fixture
def crash_before_rename(monkeypatch):
    monkeypatch.setattr(os, "replace", crash)


def test_write_replaces_the_whole_file_and_makes_its_folders(tmp_path):
    path = tmp_path / "a" / "b" / "f.txt"
    assert rundir.write(path, "first ünïcode") == path
    assert path.read_text(encoding="utf-8") == "first ünïcode"
    rundir.write(path, b"\x00second")
    assert path.read_bytes() == b"\x00second"
    assert os.listdir(path.parent) == ["f.txt"]  # no temporary file left


def test_a_crash_between_write_and_rename_keeps_the_old_file(tmp_path, crash_before_rename):
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(Crash):
        rundir.write(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]  # the temporary file is gone too


def test_a_crash_before_the_first_write_leaves_no_file(tmp_path, crash_before_rename):
    with pytest.raises(Crash):
        rundir.write(tmp_path / "f.txt", "new")
    assert os.listdir(tmp_path) == []


def _row(m: population.Member, fitness: float) -> dict:
    """A log row of a member without a task report, scored `fitness`."""
    return logs.row("r", 0, m, 1, None, Evaluation("ok", "", fitness))


def test_the_run_files_are_written_atomically(tmp_path, monkeypatch):
    """state.json, a generation's Parquet file and the report's plots and page: a crash keeps the old ones."""
    cfg = config.load("demo")
    members = population.fresh_members(cfg, 0, 2)
    old_state = state.RunState(members, 0)
    state.save(tmp_path, old_state, 0)
    logs.write_generation(tmp_path, 0, [_row(m, 0.5) for m in members])
    df = pd.DataFrame([{**_row(m, 0.5), "generation": 0} for m in members])
    report.save_png(report.fitness_figure(df), tmp_path / "fitness.png")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert rundir.state_file(tmp_path) in before and rundir.generation_file(tmp_path, 0) in before

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Crash):
        state.save(tmp_path, old_state.advance(members), 0)
    with pytest.raises(Crash):
        logs.write_generation(tmp_path, 0, [_row(m, 0.9) for m in members])
    with pytest.raises(Crash):
        report.save_png(report.fitness_figure(df.assign(fitness=0.9)), tmp_path / "fitness.png")
    with pytest.raises(Crash):
        report.write_report(tmp_path, tmp_path / "report")
    monkeypatch.undo()

    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert state.load(tmp_path) == old_state
    assert logs.read_generations(tmp_path)["fitness"].tolist() == [0.5, 0.5]
    assert json.loads(rundir.state_file(tmp_path).read_text())["completed"] == 0


def test_paths_are_the_documented_layout(tmp_path):
    assert rundir.generation_file(tmp_path, 3) == tmp_path / "generations" / "0003" / "part-0.parquet"
    assert rundir.best_weights(tmp_path, 12) == tmp_path / "best" / "generation=0012" / "weights.pt"
    assert rundir.weights_file(tmp_path, 1, "abc") == tmp_path / "weights" / "generation=0001" / "abc.pt"
    for g in (2, 0, 10):
        rundir.write(rundir.best_weights(tmp_path, g), b"w")
    assert rundir.best_generations(tmp_path) == [0, 2, 10]
    assert [rundir.config_file(tmp_path).name, rundir.data_file(tmp_path).name, rundir.state_file(tmp_path).name] == \
        ["config.yaml", "data.json", "state.json"]
