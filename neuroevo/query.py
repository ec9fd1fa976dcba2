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
from typing import Sequence

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from neuroevo import logs, rundir

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
        generations = rundir.generations_dir(run)
        if not generations.is_dir():
            raise QueryError(f"{run}: no generations logged (expected {generations})")
        found = ds.dataset(generations, format=_FORMAT, partitioning=_PARTITIONING, schema=SCHEMA)
        filesystem = found.filesystem
        for f in found.get_fragments():
            where = f.partition_expression & (ds.field("run_dir") == str(run_dir))
            fragments.append(_FORMAT.make_fragment(f.path, filesystem, partition_expression=where))
    return ds.FileSystemDataset(fragments, SCHEMA, _FORMAT, filesystem)


def load_runs(run_dirs: Sequence[str | Path], columns: Sequence[str] | None = None, where: str | None = None,
              order_by: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """One or several runs' logs, one row per chromosome per generation: a SELECT over `logs`.

    columns: column names or SQL expressions (`"params_g + params_d AS params"`); default all.
    where: a SQL boolean expression, e.g. `"generation >= 5 AND status = 'ok'"`.
    order_by: a SQL ORDER BY list, e.g. `"fitness DESC"`; default `run_dir, generation, chromosome_id`.
    """
    data = dataset(run_dirs)
    text = f"SELECT {', '.join(columns or ['*'])} FROM {TABLE}"
    if where:
        text += f" WHERE ({where})"
    text += f" ORDER BY {order_by or DEFAULT_ORDER}"
    if limit is not None:
        text += f" LIMIT {int(limit)}"
    try:
        return _execute(data, text)
    except QueryError as e:  # say which query: the error's position is in it
        raise QueryError(f"{e} (in: {text})") from None


def sql(run_dirs: Sequence[str | Path], query: str) -> pd.DataFrame:
    """Any DuckDB query over the runs' logs, which it sees as the table `logs`."""
    return _execute(dataset(run_dirs), query)


def _execute(data: ds.Dataset, query: str) -> pd.DataFrame:
    """Run the query with `data` as the table `logs`; DuckDB's and pyarrow's errors become one line."""
    con = duckdb.connect()
    con.register(TABLE, data)
    try:
        rel = con.sql(query)
        if rel is None:  # a statement that returns nothing (DuckDB < 2)
            raise QueryError(f"{query!r} returns no rows; expected a SELECT over the table {TABLE}")
        table = rel.to_arrow_table()
    except (duckdb.Error, pa.ArrowException) as e:  # pyarrow's: from the scan, e.g. an unreadable file
        raise QueryError(" ".join(str(e).split("\n\nLINE")[0].split())) from None
    return table.to_pandas()
