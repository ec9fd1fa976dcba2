"""`neuroevo run` as a user runs it: a subprocess, its exit code, its output, its files."""

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from tests.conftest import CIFAR_SUBSET, needs_cifar_subset, neuroevo, tiny_dict

# every test here runs the CLI as a subprocess
pytestmark = pytest.mark.slow


def test_run_writes_logs_and_reports_the_best(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_dict()))
    p = neuroevo("run", str(cfg), "--set", f"out_dir={tmp_path}/runs", "--set", "run_id=smoke", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    # the config in two lines at start, saved whole, with the run's id
    assert f"config: {cfg} with 2 --set: space seed-v1, population 4 x 2 generations (strategy random), train.epochs 1" \
        in p.stdout
    assert "seed: 0" not in p.stdout and "config: saved whole in " in p.stdout
    assert re.search(r"^resources: tasks ask for (no GPU and 1 CPU each, and train on CPUs: the cluster has no GPU|"
                     r"1 GPU and 1 CPU each: the cluster has \d+ GPUs?$)", p.stdout, re.MULTILINE)  # said at start
    assert p.stdout.count("gen 0 [") == 4 and p.stdout.count("gen 1 [") == 4
    assert "best chromosome" in p.stdout and "generation=" in p.stdout
    assert "estimate: about " in p.stdout and "warning:" not in p.stderr  # its fitness ranks: nothing to warn of
    run_dir = tmp_path / "runs" / "smoke"
    df = pd.read_parquet(run_dir / "generations")
    assert len(df) == 8
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["evolve"]["population"] == 4 and saved["run_id"] == "smoke"
    assert (run_dir / "best" / "generation=0001" / "samples.png").is_file()

    # the same run id again: refused before anything is touched
    again = neuroevo("run", str(cfg), "--set", f"out_dir={tmp_path}/runs", "--set", "run_id=smoke", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert len(pd.read_parquet(run_dir / "generations")) == 8


@pytest.mark.parametrize("args, message", [
    (["run", "--set", "evolve.populaton=3"], "evolve.populaton: unknown key (did you mean evolve.population?)"),
    (["run", "--set", "fitness.gamma=0.5"], "fitness.lam + fitness.gamma: must equal 1"),
    (["run", "nope.yaml"], "nope.yaml: no such config file or preset"),
    (["run", "--set", "data.source=folder", "--set", "data.root=/no/such/dir"], "data.root: /no/such/dir is not a directory"),
    (["run", "cifar10", "--set", "data.root=/no/such/dir"], "data.root: no cifar10 at /no/such/dir/cifar-10-batches-py"),
    (["run", "--set", "space.max_params=10"], "space.max_params: 10000 samples in a row had more than 10 parameters"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    p = neuroevo(*args, "--set", f"out_dir={tmp_path}/runs", cwd=tmp_path)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # nothing written before the input is known good


def test_help_and_bad_input_load_no_pandas_ray_or_torch(tmp_path):
    """`neuroevo --help`, `neuroevo run --help` and a bad `run` stop before the logs' pandas and pyarrow, Ray,
    torch or matplotlib load: most of the CLI's start-up."""
    code = ("import json, sys; from neuroevo import cli\n"
            "for argv in (['--help'], ['run', '--help'], ['run', '--set', 'evolve.population=x']):\n"
            "    try:\n        code = cli.main(argv)\n    except SystemExit as e:\n        code = e.code\n"
            "    print(json.dumps([code, sorted(set(sys.modules) & {'pandas', 'pyarrow', 'ray', 'torch', "
            "'torchvision', 'matplotlib'})]), file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = p.stderr.splitlines()
    assert [json.loads(line) for line in lines if line.startswith("[")] == [[0, []], [0, []], [2, []]], p.stderr
    assert "neuroevo: error: evolve.population: input should be a valid integer" in p.stderr


@needs_cifar_subset
def test_run_on_real_cifar10_images(tmp_path):
    """Two generations on all 4,660 real CIFAR-10 images, at 16 px."""
    d = tiny_dict(data={"source": "folder", "root": str(CIFAR_SUBSET), "image_size": 16, "subset": None},
                  space={"noise_side": [0.25, 0.75], "g_blocks": [1, 5]})
    cfg = tmp_path / "cifar.yaml"
    cfg.write_text(yaml.safe_dump(d))
    p = neuroevo("run", str(cfg), "--set", f"out_dir={tmp_path}/runs", "--set", "run_id=cifar", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "4660 images in 10 classes at 16px (0 skipped)" in p.stdout
    df = pd.read_parquet(tmp_path / "runs" / "cifar" / "generations")
    assert len(df) == 8 and (df.status == "ok").all()
