"""Every preset's rows are what tests/fixtures/rows.json recorded: a change meant to keep behaviour keeps them."""

import json

import pytest

from tests import rows_identical

pytestmark = pytest.mark.slow


def test_every_preset_logs_the_recorded_rows():
    got = rows_identical.fingerprints()
    expected = json.loads(rows_identical.EXPECTED.read_text())[got["data"]]
    assert got["rows"] == expected
