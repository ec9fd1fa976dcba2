"""Every preset's rows are what tests/fixtures/rows.json recorded: a change meant to keep behaviour keeps them."""

import json

import pytest

from tests import rows_identical

pytestmark = pytest.mark.slow


def test_every_preset_logs_the_recorded_rows():
    expected = json.loads(rows_identical.EXPECTED.read_text())[rows_identical.data_name()]
    got = rows_identical.fingerprints(version=expected.pop("schema_version", 4))  # recorded before it was: 4
    assert got["rows"] == expected
