"""Ctrl-C and SIGTERM at any moment of `neuroevo run`, a cluster address nothing listens on, and Ray's own output."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from neuroevo.store import logs
from tests.conftest import neuroevo, tiny_dict

# every test here runs the CLI as a subprocess
pytestmark = pytest.mark.slow

GENERATIONS = 3


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("signals")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"population": 2, "generations": GENERATIONS})))
    return d


@pytest.fixture(scope="module")
def whole(workdir):
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=whole", cwd=workdir)
    assert p.returncode == 0, p.stderr
    return _rows(workdir / "runs" / "whole")


def _rows(run_dir: Path) -> list:
    df = logs.read_generations(run_dir).sort_values(["generation", "chromosome_id"])
    return df[["generation", "chromosome_id", "chromosome", "task_seed", "fitness"]].values.tolist()


def _descendants(pid: int) -> set[int]:
    """pid's children and theirs, from /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parents.items() if pp == p}
        found |= kids
        todo += kids
    return found


def _alive(pids: set[int]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def _interrupt(workdir: Path, run_id: str, signum: int, when: str) -> tuple[subprocess.Popen, str, set[int]]:
    """Start a run, send `signum` at `when` (startup: once its Ray has processes; generation: once generation 0
    is logged, while generation 1 trains), and return it finished, its stderr and its Ray's pids."""
    run_dir = workdir / "runs" / run_id
    proc = subprocess.Popen([sys.executable, "-m", "neuroevo", "run", "tiny.yaml", "--set", "out_dir=runs",
                             "--set", f"run_id={run_id}"], cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    ray_pids: set[int] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        ray_pids |= _descendants(proc.pid)
        if when == "startup" and ray_pids:
            break
        if when == "generation":
            try:
                if json.loads((run_dir / "state.json").read_text())["completed"] >= 1:
                    break
            except (OSError, ValueError):
                pass
        time.sleep(0.02)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    deadline = time.monotonic() + 15
    while _alive(ray_pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return proc, stderr, ray_pids


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_stops_cleanly_and_resumes_exactly(workdir, whole, signum, code):
    run_id = f"mid-{signum}"
    proc, stderr, ray_pids = _interrupt(workdir, run_id, signum, "generation")
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "Check failed" not in stderr
    assert f"continue with: neuroevo run --resume {Path('runs') / run_id}" in stderr
    assert "generation 0 is logged" in stderr or "generations 0-1 are logged" in stderr
    assert ray_pids and not _alive(ray_pids)
    p = neuroevo("run", "--resume", f"runs/{run_id}", cwd=workdir)
    assert p.returncode == 0, p.stderr
    assert _rows(workdir / "runs" / run_id) == whole


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_ray_start_up_writes_nothing(workdir, signum, code):
    run_id = f"startup-{signum}"
    proc, stderr, ray_pids = _interrupt(workdir, run_id, signum, "startup")
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert "interrupted before the run started" in stderr
    assert not (workdir / "runs" / run_id).exists()
    assert not _alive(ray_pids)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_listens_on_fails_at_once(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    start = time.monotonic()
    p = neuroevo("run", "--address", address, "--set", f"out_dir={tmp_path}/runs", cwd=tmp_path, timeout=60)
    assert time.monotonic() - start < 30
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"neuroevo: error: --address: nothing accepts connections at {address}")
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_an_address_that_is_no_ray_cluster_fails_within_the_connect_timeout(tmp_path):
    with socket.socket() as server:  # takes TCP connections, never answers Ray's
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        start = time.monotonic()
        p = neuroevo("run", "--address", address, "--connect-timeout", "8", "--set", f"out_dir={tmp_path}/runs",
                     cwd=tmp_path, timeout=120)
        took = time.monotonic() - start
    assert p.returncode == 2, p.stderr
    assert took < 30, took
    assert p.stderr.startswith(f"neuroevo: error: --address: could not join the Ray cluster at {address}")
    assert len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_ray_output_goes_to_the_run_log_unless_verbose(workdir, whole):
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=quiet", "--quiet", cwd=workdir)
    assert p.returncode == 0, p.stderr
    # Ray's start-up line is in every run (its token warning only where Ray's auth settings call for it)
    assert "Token authentication" not in p.stderr and "Started a local Ray instance" not in p.stderr
    assert "Started a local Ray instance" in (workdir / "runs" / "quiet" / "ray.log").read_text()
    p = neuroevo("run", "tiny.yaml", "--set", "out_dir=runs", "--set", "run_id=loud", "--quiet", "--verbose",
                 cwd=workdir)
    assert p.returncode == 0, p.stderr
    assert "Started a local Ray instance" in p.stderr
    assert "run_id: loud\n" in p.stdout and "evolve:\n  population: 2\n" in p.stdout  # the whole config, verbose
