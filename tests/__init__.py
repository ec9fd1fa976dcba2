"""A regular package, so that `from tests.conftest import ...` finds this folder first even where an installed
distribution also ships a top-level `tests` package (torch-fidelity 0.4.0's wheel does)."""
