"""The stages import one way: pyproject.toml's import-linter contract holds on the package, and breaks on an upward
import added to a copy of it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_package_keeps_its_layers():
    p = _lint(REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 kept, 0 broken" in p.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(REPO / "neuroevo", tmp_path / "neuroevo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    genes = tmp_path / "neuroevo" / "space" / "genes.py"  # the search space reaching up into the evolution loop
    genes.write_text(genes.read_text() + "\nfrom neuroevo.execution import loop  # noqa: E402,F401\n")
    p = _lint(tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "BROKEN" in p.stdout and "neuroevo.space.genes -> neuroevo.execution.loop" in p.stdout
