"""state.json holds one population whatever the generation; the logged ones are read back from the Parquet rows,
exactly as selection read them; a state file of the older format (every generation's population) still resumes."""

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import yaml

from neuroevo.evolve import fitness, population
from neuroevo.evolve.fitness import Evaluation
from neuroevo.space import registry
from neuroevo.store import logs, resume, rundir, state
from neuroevo.train.results import Quality
from tests.conftest import neuroevo, old_state, tiny_config, tiny_dict

N, GENERATIONS = 4, 3
COLUMNS = ["generation", "chromosome_id", "chromosome", "born_generation", "parents", "operator", "task_seed",
           "d_loss", "g_loss", "fitness"]


def test_logged_rows_give_the_members_as_selection_scored_them(tmp_path):
    """fitness.kind pareto: the front and crowding come back from the rows, so the next population drawn from the
    log is the one drawn from the trained generation (tournaments and mutation read both)."""
    cfg = tiny_config(evolve={"population": 8, "strategy": "tournament"})
    cfg = replace(cfg, fitness=replace(cfg.fitness, kind="pareto"))
    members = population.initial_population(cfg)
    rng = np.random.default_rng(0)
    params = [sum(registry.param_counts(m.chromosome)) for m in members]
    # FID falling as size grows: most measured members on the first front, apart by their crowding
    qualities = [Quality(1e7 / p * float(rng.uniform(1, 1.2)), 0.1, 0.01, 64, 1.0) for p in params[:6]] + [None] * 2
    evaluations = [Evaluation("ok", "", float(rng.random())) for _ in members[:7]] + [Evaluation("failed", "x", 0.0)]
    ranked = fitness.rank_generation(evaluations, qualities, params, cfg.fitness)
    trained = [population.Evaluated(m, e.fitness, e.front or 0, e.crowding) for m, e in zip(members, ranked)]
    assert len({e.crowding for e in trained}) > 2  # crowding tells members apart
    logs.write_generation(tmp_path, 0, [logs.row("r", 0, m, 1, None, e, q)
                                        for m, e, q in zip(members, ranked, qualities)])
    read, problem = resume.logged(cfg, tmp_path, 0)
    assert problem is None and read == trained
    assert resume.drawn(cfg, tmp_path, 1) == population.next_population(cfg, 1, trained)
    logs.write_generation(tmp_path, 0, [logs.row("r", 0, m, 1, None, e, q)
                                        for m, e, q in list(zip(members, ranked, qualities))[1:]])
    assert resume.logged(cfg, tmp_path, 0) == (None, f"{rundir.generation_file(tmp_path, 0)} has 7 rows, expected 8")
    assert resume.drawn(cfg, tmp_path, 1) is None


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An uninterrupted run, and the size of its state.json after each generation it was seen at."""
    d = tmp_path_factory.mktemp("state")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"population": N, "generations": GENERATIONS})))
    run_dir = d / "runs" / "base"
    proc = subprocess.Popen([sys.executable, "-m", "neuroevo", "run", "tiny.yaml", "--set", "out_dir=runs",
                             "--set", "run_id=base", "--quiet"], cwd=d, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    sizes = {}
    while proc.poll() is None:
        try:
            text = rundir.state_file(run_dir).read_text()  # whole: written atomically
            sizes[json.loads(text)["completed"]] = len(text.encode())
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    assert proc.wait() == 0, proc.stderr.read()
    sizes[GENERATIONS] = rundir.state_file(run_dir).stat().st_size
    return run_dir, sizes


def _rows(run_dir):
    return logs.read_generations(run_dir).sort_values(COLUMNS[:2]).reset_index(drop=True)[COLUMNS]


@pytest.mark.slow
def test_state_json_holds_one_population_and_a_fingerprint_per_generation(base):
    run_dir, sizes = base
    assert {0, GENERATIONS} <= set(sizes)
    doc = json.loads(rundir.state_file(run_dir).read_text())
    assert set(doc) == {"format", "seed", "completed", "population", "sha256"} and len(doc["population"]) == N
    assert sorted(doc["sha256"]) == [str(g) for g in range(GENERATIONS)]
    # one population of 4 tiny chromosomes: the size varies with their genes, and grows by a fingerprint (75 bytes) a
    # generation (every generation's population would be 4x)
    assert all(abs(size - sizes[0]) < 0.3 * sizes[0] for size in sizes.values()), sizes


@pytest.mark.slow
def test_a_state_file_of_the_older_format_resumes_to_the_same_rows(base, tmp_path):
    """Stopped after two generations under the older format, and generations 0 and 1 damaged: --resume trains them
    again (0 drawn from the seed, 1 from 0's new rows) and the third from the state file, as the uninterrupted run
    did, and the next save writes format 2. The older file loads with its lineage as recorded, or without it (before
    parents and operators were recorded) with the reference's: the same, for evolve.strategy random."""
    run_dir = tmp_path / "old"
    shutil.copytree(base[0], run_dir)
    rundir.state_file(run_dir).write_text(json.dumps(old_state(run_dir, 2, lineage=True)))
    with_lineage = state.load(run_dir)
    assert with_lineage == state.RunState(resume.logged_population(tiny_config(evolve={"population": N}), run_dir, 2), 2)
    rundir.state_file(run_dir).write_text(json.dumps(old_state(run_dir, 2, lineage=False)))
    assert state.load(run_dir) == with_lineage
    for g in (0, 1):  # cut short, as a crash mid-copy leaves a file
        part = rundir.generation_file(run_dir, g)
        part.write_bytes(part.read_bytes()[:100])
    shutil.rmtree(rundir.generation_dir(run_dir, 2))
    shutil.rmtree(rundir.best_dir(run_dir, 2))
    p = neuroevo("run", "--resume", run_dir, "--quiet")
    assert p.returncode == 0, p.stderr
    ours = [line for line in p.stderr.splitlines() if line.startswith("resume: ")]
    assert [line.rsplit("; ", 1)[1] for line in ours] == [f"generation {g} will be trained again" for g in (0, 1)]
    assert "Traceback" not in p.stderr
    assert _rows(run_dir).equals(_rows(base[0]))
    doc = json.loads(rundir.state_file(run_dir).read_text())
    assert doc["format"] == state.FORMAT and "generations" not in doc
    # each generation trained again is fingerprinted anew: its file's timings differ from the uninterrupted run's
    uninterrupted = json.loads(rundir.state_file(base[0]).read_text())
    assert sorted(doc.pop("sha256")) == sorted(uninterrupted.pop("sha256")) == ["0", "1", "2"]
    assert doc == uninterrupted
