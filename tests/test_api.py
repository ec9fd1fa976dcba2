"""neuroevo from Python, as a notebook uses it: run, resume, read the result, sample; bad input and Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
import yaml

import neuroevo
from neuroevo import errors
from neuroevo.space import registry
from neuroevo.store import logs, rundir
from tests.conftest import neuroevo as cli
from tests.conftest import tiny_dict

# every test here runs neuroevo.run (a local Ray) or the CLI as a subprocess
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict()))
    return d


@pytest.fixture(scope="module")
def result(tiny):
    """A run through the API: two generations of two; what it leaves in this process."""
    handlers, stderr = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)), sys.stderr
    r = neuroevo.run(tiny / "tiny.yaml", {"evolve.population": 2, "space.channels": [5, 6]}, out_dir=tiny / "runs",
                     run_id="api")
    left = {"stderr": sys.stderr is stderr,
            "handlers": (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers}
    return r, left


def test_import_loads_no_pandas_torch_or_ray():
    code = ("import sys, neuroevo; heavy = ('pandas', 'torch', 'ray'); assert not [m for m in heavy if m in "
            "sys.modules], sys.modules.keys() & set(heavy); neuroevo.run; neuroevo.Result; "
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_run_returns_the_logs_the_best_and_samples(result, tiny, tmp_path):
    r, left = result
    assert r.run_dir == tiny / "runs" / "api"
    assert r.logs.equals(logs.read_generations(r.run_dir)) and len(r.logs) == 4
    assert r.config.evolve.population == 2 and r.config.space.channels == (5, 6)
    assert left == {"stderr": True, "handlers": True}  # a notebook gets its stderr and signal handlers back

    shown = cli("best", r.run_dir)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"best chromosome {r.best().chromosome_id} of run api, "
                                   f"generation {r.best().generation} ")
    assert neuroevo.open(r.run_dir).best().equals(r.best())

    ch = r.best()
    images = r.sample(5, seed=1)
    c, size = r.config.data.channels, r.config.data.image_size
    assert tuple(images.shape) == (5, c, size, size) and images.min() >= -1 and images.max() <= 1
    assert (r.sample(5, seed=1) == images).all() and not (r.sample(5, seed=2) == images).all()
    assert not list(tmp_path.iterdir())  # no file unless asked
    grid = r.sample(4, out=tmp_path / "new" / "grid.png")
    assert grid.shape[0] == 4 and (tmp_path / "new" / "grid.png").stat().st_size > 0
    assert r.draw(1, 0, None, None)[:2] == (registry.from_json(ch.chromosome), ch.generation)  # the best's generator


@pytest.fixture(scope="module")
def cli_error(tiny):
    p = cli("run", "demo", "--set", "evolve.populaton=3", "--set", f"out_dir={tiny / 'bad'}")
    assert p.returncode == 2
    return p.stderr


@pytest.mark.parametrize("overrides", [{"evolve.populaton": 3}, ["evolve.populaton=3"]])
def test_bad_input_raises_the_line_the_cli_prints(tiny, cli_error, overrides):
    with pytest.raises(neuroevo.InputError) as e:
        neuroevo.run("demo", overrides, out_dir=tiny / "bad")
    assert cli_error == f"neuroevo: error: {e.value}\n"
    assert not (tiny / "bad").exists()
    with pytest.raises(neuroevo.InputError, match="no such run directory"):
        neuroevo.open(tiny / "nope")


def test_resume_extends_the_run_and_refuses_a_changed_experiment(result):
    r, _ = result
    with pytest.raises(neuroevo.InputError, match=r"^--resume: the config would change the experiment: "
                                                  r"evolve.population \(2 -> 3\)$"):
        neuroevo.run(resume=r.run_dir, overrides={"evolve.population": 3})
    longer = neuroevo.run(resume=r.run_dir, overrides=["evolve.generations=3"])
    assert longer.run_dir == r.run_dir and sorted(set(longer.logs.generation)) == [0, 1, 2]
    assert longer.logs[longer.logs.generation < 2].reset_index(drop=True).equals(
        logs.read_generations(r.run_dir).query("generation < 2").reset_index(drop=True))


def test_ctrl_c_stops_ray_then_raises_keyboard_interrupt(tiny):
    import ray

    run_dir = tiny / "runs" / "stopped"
    handler = signal.getsignal(signal.SIGINT)

    done = threading.Event()

    def press_ctrl_c():  # as a notebook's interrupt does, once generation 0 is logged
        while not done.wait(0.05):
            try:
                if json.loads(rundir.state_file(run_dir).read_text())["completed"] >= 1:
                    return os.kill(os.getpid(), signal.SIGINT)
            except (OSError, ValueError):
                pass

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    try:
        neuroevo.run(tiny / "tiny.yaml", {"evolve.population": 2, "evolve.generations": 3}, out_dir=tiny / "runs",
                     run_id="stopped")
    except KeyboardInterrupt as e:
        stopped = e
    else:
        stopped = None
    finally:
        done.set()
        presser.join()
    if stopped is None:
        pytest.skip("the run finished before Ctrl-C")
    assert isinstance(stopped, errors.Interrupted) and stopped.signum == signal.SIGINT
    assert stopped.run_dir == run_dir and 1 <= stopped.logged <= len(set(logs.read_generations(run_dir).generation))
    assert str(stopped).startswith("interrupted: ") and str(run_dir) in str(stopped)
    assert not ray.is_initialized() and signal.getsignal(signal.SIGINT) is handler
