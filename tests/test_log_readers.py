"""Every common reader of a run's logs gets `generation` as an integer, and runs logged before it was a column (their
folders named generation=NNNN) still read, check and take new generations in their own layout."""

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from neuroevo.analysis import query
from neuroevo.evolve.fitness import Evaluation
from neuroevo.evolve.population import Member
from neuroevo.space import registry
from neuroevo.store import logs, rundir
from tests.conftest import old_layout, tiny_config

GENERATIONS, N = 3, 2


def _members(generation: int) -> list[Member]:
    rng = np.random.default_rng(generation)
    return [Member(registry.sample(tiny_config().space, 12, 3, rng)[0], generation, 0, (), "random") for _ in range(N)]


def _write(run_dir, generation):
    members = _members(generation)
    rows = [logs.row("r", generation, m, 1, None, Evaluation("ok", "", 0.1 * i)) for i, m in enumerate(members)]
    logs.write_generation(run_dir, generation, rows, "seed: 0\n")
    return members


@pytest.fixture
def run_dir(tmp_path):
    for g in range(GENERATIONS):
        _write(tmp_path, g)
    return tmp_path


def test_the_files_hold_generation_in_folders_no_reader_takes_for_a_partition(run_dir):
    assert sorted(p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*.parquet")) == \
        [f"generations/{g:04d}/part-0.parquet" for g in range(GENERATIONS)]
    table = pq.read_table(rundir.generation_file(run_dir, 1))
    assert table.schema.field("generation").type == pa.int32() and table.column("generation").to_pylist() == [1, 1]
    assert pq.read_schema(rundir.generation_file(run_dir, 1)).metadata[logs.VERSION_KEY] == str(logs.SCHEMA_VERSION).encode()


@pytest.mark.parametrize("read", ["pandas", "pq.read_table", "pyarrow.dataset", "pyarrow.dataset hive"])
def test_pandas_and_pyarrow_read_generation_as_an_integer(run_dir, read):
    folder = rundir.generations_dir(run_dir)
    if read == "pandas":
        df = pd.read_parquet(folder)
    elif read == "pq.read_table":
        df = pq.read_table(folder).to_pandas()
    else:
        found = ds.dataset(folder, partitioning="hive" if read.endswith("hive") else None)
        df = found.to_table(filter=ds.field("generation") >= 1).to_pandas()
    assert pd.api.types.is_integer_dtype(df["generation"])
    assert sorted(df.loc[df.generation >= 1, "generation"]) == [1, 1, 2, 2]


@pytest.mark.parametrize("hive", ["", ", hive_partitioning = true", ", hive_partitioning = false"])
@pytest.mark.parametrize("glob", ["*/*.parquet", "**/*.parquet"])
def test_duckdb_reads_generation_as_an_integer(run_dir, hive, glob):
    source = f"read_parquet('{rundir.generations_dir(run_dir)}/{glob}'{hive})"
    con = duckdb.connect()
    rows = con.execute(f"SELECT typeof(generation), generation, count(*) FROM {source} WHERE generation >= 1 "
                       f"GROUP BY ALL ORDER BY 2").fetchall()
    assert rows == [("INTEGER", 1, N), ("INTEGER", 2, N)]
    assert [c[0] for c in con.execute(f"SELECT * FROM {source}").description].count("generation") == 1


def test_polars_reads_generation_as_an_integer(run_dir):
    pl = pytest.importorskip("polars")
    for df in (pl.read_parquet(rundir.generations_dir(run_dir)), pl.read_parquet(f"{run_dir}/generations/*/*.parquet")):
        assert df.schema["generation"] == pl.Int32 and df.filter(pl.col("generation") >= 1).height == 2 * N


def test_a_run_of_the_older_layout_reads_checks_and_grows_in_it(run_dir):
    members = _members(0)
    old_layout(run_dir)
    assert rundir.partitioned(run_dir) and rundir.logged_generations(run_dir) == [0, 1, 2]
    df = logs.read_generations(run_dir)
    assert df.generation.dtype == "int32" and df.generation.tolist() == [0, 0, 1, 1, 2, 2]
    assert set(df.schema_version) == {3}
    assert query.load_runs([run_dir], ["generation"], "generation >= 1").generation.tolist() == [1, 1, 2, 2]
    assert logs.check_generation(run_dir, 0, members) is None
    assert logs.saved_config(run_dir) == (rundir.generations_dir(run_dir) / "generation=0002" / "part-0.parquet",
                                          "seed: 0\n")
    # a generation added on resume goes where the run's others are, its folder naming it, as theirs do
    new = _write(run_dir, 3)
    assert rundir.generation_file(run_dir, 3) == run_dir / "generations" / "generation=0003" / "part-0.parquet"
    assert "generation" not in pq.read_schema(rundir.generation_file(run_dir, 3)).names
    assert logs.check_generation(run_dir, 3, new) is None
    df = logs.read_generations(run_dir)
    assert df.generation.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and df.schema_version.tolist() == [3] * 6 + [logs.SCHEMA_VERSION] * 2
    plain = pd.read_parquet(rundir.generations_dir(run_dir))  # as before: the partition, categorical
    assert sorted(plain.generation.astype(int)) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_a_file_whose_column_is_not_its_folders_generation_is_found(run_dir):
    members = _members(1)
    path = rundir.generation_file(run_dir, 1)
    table = pq.read_table(path)
    pq.write_table(table.set_column(table.schema.get_field_index("generation"), "generation",
                                    pa.array([2] * N, pa.int32())), path)
    assert logs.check_generation(run_dir, 1, members) == f"{path} holds rows of generation ['2']"
    with pytest.raises(ValueError, match="a row of generation 1 written as generation 2's"):
        logs.write_generation(run_dir, 2, [logs.row("r", 1, m, 1, None, Evaluation("ok", "", 0.5)) for m in members])
