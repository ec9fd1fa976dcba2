"""Several runs' Parquet logs as one table, queried with SQL (DuckDB) over a pyarrow dataset.

The dataset has every column of the current logs.SCHEMA, plus `generation` (int, from the hive partition
name) and `run_dir` (the run directory as given). A file written with an older schema lacks some columns:
they read as nulls, and its `schema_version` says which schema wrote it. Columns this version does not know
are not read.

DuckDB pushes column selection and simple filters (comparisons, IN, AND) down into the pyarrow scan, so a
filter on `generation` or `run_dir` skips other partitions' files unopened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from neuroevo import logs

TABLE = "logs"  # the dataset's name in `sql` queries
SCHEMA = pa.schema([("run_dir", pa.string()), ("generation", pa.int32()), *logs.SCHEMA])
DEFAULT_ORDER = "run_dir, generation, chromosome_id"

_PARTITIONING = ds.partitioning(pa.schema([SCHEMA.field("generation")]), flavor="hive")
_FORMAT = ds.ParquetFileFormat()


class QueryError(ValueError):
    """A missing run, or a query DuckDB cannot run; its message is one line."""


def dataset(run_dirs: Sequence[str | Path]) -> ds.FileSystemDataset:
    """Every generation file of every run, as one dataset with SCHEMA.

    Each file's fragment carries `generation == G and run_dir == R` as its partition expression: pyarrow
    fills both columns from it, and skips the file when a filter contradicts it.
    """
    if not run_dirs:
        raise QueryError("no run directory given")
    fragments, filesystem = [], None
    for run_dir in run_dirs:
        run = Path(run_dir)
        if not run.is_dir():
            raise QueryError(f"{run}: no such run directory")
        if not (run / "generations").is_dir():
            raise QueryError(f"{run}: no generations logged (expected {run / 'generations'})")
        found = ds.dataset(run / "generations", format=_FORMAT, partitioning=_PARTITIONING, schema=SCHEMA)
        filesystem = found.filesystem
        for f in found.get_fragments():
            where = f.partition_expression & (ds.field("run_dir") == str(run_dir))
            fragments.append(_FORMAT.make_fragment(f.path, filesystem, partition_expression=where))
    return ds.FileSystemDataset(fragments, SCHEMA, _FORMAT, filesystem)


def load_runs(run_dirs: Sequence[str | Path], columns: Sequence[str] | None = None, where: str | None = None,
              order_by: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """One or several runs' logs, one row per chromosome per generation.

    columns: column names or SQL expressions (`"params_g + params_d AS params"`); default all.
    where: a DuckDB SQL boolean expression, e.g. `"generation >= 5 AND status = 'ok'"`.
    order_by: a SQL ORDER BY list, e.g. `"fitness DESC"`; default `run_dir, generation, chromosome_id`.
    """
    con = duckdb.connect()
    return _run(lambda: _select(con.from_arrow(dataset(run_dirs)), ", ".join(columns or ["*"]), where,
                                order_by, limit))


def sql(run_dirs: Sequence[str | Path], query: str) -> pd.DataFrame:
    """Any DuckDB query over the runs' logs, which it sees as the table `logs`."""
    con = duckdb.connect()
    con.register(TABLE, dataset(run_dirs))

    def run() -> duckdb.DuckDBPyRelation:
        rel = con.sql(query)
        if rel is None:
            raise QueryError(f"--sql: {query!r} returns no rows; expected a SELECT over the table {TABLE}")
        return rel

    return _run(run)


def _select(rel: duckdb.DuckDBPyRelation, columns: str, where: str | None, order_by: str | None,
            limit: int | None) -> duckdb.DuckDBPyRelation:
    if where:
        rel = rel.filter(where)
    rel = rel.order(order_by or DEFAULT_ORDER).project(columns)  # ordered first: ORDER BY may name any column
    return rel.limit(limit) if limit is not None else rel


def _run(make_relation: Callable[[], duckdb.DuckDBPyRelation]) -> pd.DataFrame:
    """Build and execute the relation; DuckDB's errors (and pyarrow's, from the scan) become one line."""
    try:
        table = make_relation().to_arrow_table()
    except (duckdb.Error, pa.ArrowException) as e:
        raise QueryError(" ".join(str(e).split("\n\nLINE")[0].split())) from None
    return table.to_pandas()
