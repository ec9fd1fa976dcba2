"""The fast lane's guard: a test not marked slow that starts Ray or a Python subprocess fails, and names what it
started; a test marked slow starts what it needs."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# a pytest of its own, in a subprocess, with conftest's guard
pytestmark = pytest.mark.slow

INNER = '''
import subprocess
import sys

import pytest


def test_starts_python():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_catches_the_refusal():
    try:
        subprocess.run([sys.executable, "-c", "pass"])
    except RuntimeError:
        pass


def test_starts_python_behind_a_wrapper():
    subprocess.run(["env", sys.executable, "-c", "pass"], check=True)


def test_starts_ray():
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False)


def test_runs_a_tool():
    subprocess.run(["true"], check=True)


@pytest.mark.slow
def test_marked_slow_starts_python():
    subprocess.run([sys.executable, "-c", "pass"], check=True)
'''


def test_a_test_not_marked_slow_cannot_start_ray_or_python(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_call, pytest_runtest_setup\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers = slow: starts Ray or a subprocess\n")
    (tmp_path / "test_inner.py").write_text(INNER)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfp", "-p", "no:cacheprovider", "test_inner.py"],
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                       timeout=300)
    summary = {line.split(" ", 1)[1].split(" - ")[0]: line.split(" ", 1)[0] for line in p.stdout.splitlines()
               if line.startswith(("PASSED test_inner.py::", "FAILED test_inner.py::"))}
    assert summary == {
        "test_inner.py::test_starts_python": "FAILED",
        "test_inner.py::test_catches_the_refusal": "FAILED",  # the refusal was caught: the test fails all the same
        "test_inner.py::test_starts_python_behind_a_wrapper": "FAILED",
        "test_inner.py::test_starts_ray": "FAILED",
        "test_inner.py::test_runs_a_tool": "PASSED",  # not Python, not Ray
        "test_inner.py::test_marked_slow_starts_python": "PASSED",
    }, p.stdout + p.stderr
    refused = [line for line in p.stdout.splitlines() if "is not marked slow, yet starts Ray or Python: `" in line]
    assert any(line.endswith("-c pass`") and "test_starts_python_behind_a_wrapper" in line and "`env " in line
               for line in refused), refused
    assert any("test_starts_ray" in line and f"{os.sep}ray{os.sep}" in line for line in refused), refused
