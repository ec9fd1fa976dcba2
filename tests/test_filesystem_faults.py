"""Output locations that cannot be written (a file in the way, a read-only mount, a full disk, a folder that cannot be
created) and two drivers on one run: one line naming the path and the problem, exit code 2, no traceback, nothing left half-written."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from neuroevo.store import logs, rundir
from tests.conftest import neuroevo, tiny_dict

GENERATIONS = 3


def _one_error_line(p: subprocess.CompletedProcess, *words: str) -> str:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("neuroevo: error: ")]
    assert len(errors) == 1, p.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def tmpfs(tmp_path):
    """A 4 MB tmpfs of our own; remount(ro=True) makes it read-only. Skipped where mounting is not permitted."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")

    class Fs:
        path = mnt

        @staticmethod
        def remount(ro: bool) -> None:
            subprocess.run(["mount", "-o", f"remount,{'ro' if ro else 'rw'}", str(mnt)], check=True)

        @staticmethod
        def fill() -> Path:
            filler = mnt / "filler"
            with open(filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:
                    pass
            return filler

    try:
        yield Fs
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fs")
    (d / "tiny.yaml").write_text(yaml.safe_dump(tiny_dict(evolve={"generations": GENERATIONS})))
    return d


@pytest.fixture(scope="module")
def finished(workdir):
    p = neuroevo("run", "tiny.yaml", "--quiet", "--set", "out_dir=runs", "--set", "run_id=whole", cwd=workdir)
    assert p.returncode == 0, p.stderr
    return workdir / "runs" / "whole"


def _rows(run_dir: Path):
    df = logs.read_generations(run_dir).sort_values(["generation", "chromosome_id"]).reset_index(drop=True)
    return df[["generation", "chromosome_id", "chromosome", "is_elite", "task_seed", "fitness"]]


@pytest.mark.slow
def test_a_new_run_whose_out_dir_cannot_be_written(workdir, tmpfs):
    (tmpfs.path / "a-file").write_text("not a folder")
    p = neuroevo("run", "tiny.yaml", "--set", f"out_dir={tmpfs.path}/a-file", cwd=workdir)
    _one_error_line(p, str(tmpfs.path / "a-file"))
    assert (tmpfs.path / "a-file").read_text() == "not a folder"

    filler = tmpfs.fill()
    p = neuroevo("run", "tiny.yaml", "--set", f"out_dir={tmpfs.path}/runs", "--set", "run_id=full", cwd=workdir)
    _one_error_line(p, "no space left")
    assert not (tmpfs.path / "runs" / "full").exists()  # no empty folder or 0-byte config.yaml left behind
    filler.unlink()

    tmpfs.remount(ro=True)
    p = neuroevo("run", "tiny.yaml", "--set", f"out_dir={tmpfs.path}/runs", cwd=workdir)
    _one_error_line(p, str(tmpfs.path), "read-only")


@pytest.mark.slow
def test_report_and_sample_where_they_cannot_write(finished, tmpfs, tmp_path):
    (tmp_path / "a-file").write_text("x")
    p = neuroevo("report", finished, "--out", tmp_path / "a-file")
    _one_error_line(p, str(tmp_path / "a-file"))

    copy = tmpfs.path / "whole"
    shutil.copytree(finished, copy)
    tmpfs.remount(ro=True)
    before = sorted(copy.rglob("*"))
    p = neuroevo("report", copy)
    _one_error_line(p, str(rundir.report_dir(copy)), "read-only")
    p = neuroevo("sample", copy, "--out", copy / "grid.png")
    _one_error_line(p, str(copy), "not writable")
    assert sorted(copy.rglob("*")) == before

    tmpfs.remount(ro=False)
    filler = tmpfs.fill()
    p = neuroevo("sample", copy, "--out", tmpfs.path / "new" / "grid.png")
    _one_error_line(p, str(tmpfs.path / "new" / "grid.png"), "no space left")
    assert not (tmpfs.path / "new" / "grid.png").exists() and os.listdir(tmpfs.path / "new") == []
    filler.unlink()
    p = neuroevo("sample", copy, "--out", tmpfs.path / "missing" / "folder" / "grid.png")
    assert p.returncode == 0 and (tmpfs.path / "missing" / "folder" / "grid.png").is_file(), p.stderr


UNCREATABLE = Path("/proc/neuroevo-nothing-here")  # procfs makes no folder of ours, even for root


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no procfs: no folder that cannot be created")
@pytest.mark.parametrize("command", [
    ["run", "tiny.yaml", "--quiet", "--set", f"out_dir={UNCREATABLE}/runs"],
    ["report", "{run}", "--out", f"{UNCREATABLE}/report"],
    ["sample", "{run}", "--out", f"{UNCREATABLE}/grid.png"],
], ids=["run out_dir", "report --out", "sample --out"])
def test_a_folder_that_cannot_be_created_is_one_line(workdir, finished, command):
    before = sorted(workdir.rglob("*"))
    p = neuroevo(*[str(finished) if a == "{run}" else a for a in command], cwd=workdir)
    _one_error_line(p, f"{UNCREATABLE}: no such file or folder, and it cannot be created there")
    assert sorted(workdir.rglob("*")) == before


def _wait_for_state(run_dir: Path, completed: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(rundir.state_file(run_dir).read_text())["completed"] >= completed:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{run_dir}: no state.json with {completed} generations")


def _start(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "neuroevo", "run", "tiny.yaml", "--quiet", *args], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_stops_it_cleanly_and_it_resumes_exactly(workdir, finished, tmpfs):
    run_dir = tmpfs.path / "runs" / "filled"
    proc = _start(workdir, "--set", f"out_dir={tmpfs.path}/runs", "--set", "run_id=filled",
                  "--set", "train.steps_per_epoch=8", "--set", "data.subset=256")
    try:
        _wait_for_state(run_dir, 1, proc)
        filler = tmpfs.fill()
        _, stderr = proc.communicate(timeout=240)
    finally:
        _stop(proc)
    if proc.returncode == 0:
        pytest.skip("the run finished before the disk was full")
    p = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    _one_error_line(p, str(run_dir), "no space left")
    assert f"continue with: neuroevo run --resume {run_dir}" in stderr
    filler.unlink()
    p = neuroevo("run", "--resume", run_dir, cwd=workdir)
    assert p.returncode == 0, p.stderr
    whole = neuroevo("run", "tiny.yaml", "--quiet", "--set", "out_dir=runs", "--set", "run_id=whole8",
                     "--set", "train.steps_per_epoch=8", "--set", "data.subset=256", cwd=workdir)
    assert whole.returncode == 0, whole.stderr
    assert _rows(run_dir).equals(_rows(workdir / "runs" / "whole8"))


@pytest.mark.slow
def test_two_drivers_on_one_run(workdir):
    run_dir = workdir / "runs" / "busy"
    first = _start(workdir, "--set", "out_dir=runs", "--set", "run_id=busy", "--set", "evolve.generations=200")
    try:
        _wait_for_state(run_dir, 0, first)
        before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and "generation" not in str(p)}
        p = neuroevo("run", "--resume", "runs/busy", "--set", "evolve.generations=200", cwd=workdir)
        _one_error_line(p, "runs/busy", "another neuroevo driver", f"pid {first.pid}")
        assert first.poll() is None
        assert {q: before[q] == q.stat().st_mtime_ns for q in before if q.name != "state.json"} == \
            {q: True for q in before if q.name != "state.json"}
    finally:
        _stop(first)

    twins = [_start(workdir, "--set", "out_dir=runs", "--set", "run_id=twin") for _ in range(2)]
    try:
        outcomes = sorted(t.wait(timeout=300) for t in twins)
        assert outcomes == [0, 2], [t.stderr.read() for t in twins]
        loser = next(t for t in twins if t.returncode == 2)
        stderr = loser.stderr.read()
        assert "Traceback" not in stderr and "FileExistsError" not in stderr
        assert [line for line in stderr.splitlines() if line.startswith("neuroevo: error: ")] == \
            [f"neuroevo: error: run_id: {Path('runs') / 'twin'} already exists; choose another run_id or out_dir, "
             f"or --resume it"]
    finally:
        for t in twins:
            _stop(t)
    assert len(logs.read_generations(workdir / "runs" / "twin")) == 4 * GENERATIONS


def test_claim_is_one_driver_at_a_time_and_a_failed_start_leaves_nothing(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    with rundir.claim(run_dir, new=True):
        with pytest.raises(rundir.ClaimError, match="already exists"):
            with rundir.claim(run_dir, new=True):
                pass
        with pytest.raises(rundir.ClaimError, match=f"another neuroevo driver .*pid {os.getpid()} on "):
            with rundir.claim(run_dir, new=False):
                pass
    with rundir.claim(run_dir, new=False):  # released on exit: a resume takes it
        pass
    assert sorted(os.listdir(run_dir)) == [".lock"]

    with pytest.raises(OSError):
        with rundir.claim(tmp_path / "runs" / "failed", new=True):
            raise OSError(28, "No space left on device", str(tmp_path / "runs" / "failed" / "config.yaml"))
    assert not (tmp_path / "runs" / "failed").exists()
