"""Several runs' Parquet logs as one table, queried with SQL (DuckDB) over a pyarrow dataset.

The dataset has every column of the current logs.SCHEMA, `generation` (int) among them, plus `run_dir` (the run
directory as given). A file written with an older schema lacks some columns: they read as nulls (`generation`, from
its folder's name), and its `schema_version` says which schema wrote it. Columns this version does not know are not
read.

DuckDB pushes column selection and simple filters (comparisons, IN, AND) down into the pyarrow scan, so a
filter on `generation` or `run_dir` skips other generations' and runs' files unopened.

Only reading runs: a query must be exactly one SELECT statement (WITH, subqueries, SUMMARIZE and DESCRIBE
included), load_runs' pieces must each stay inside their clause, and the connection can reach no file but the
registered dataset (enable_external_access off, then the configuration locked), so neither a COPY nor a
read_csv('/etc/passwd') runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from neuroevo.store import logs, rundir

TABLE = "logs"  # the dataset's name in `sql` queries
SCHEMA = pa.schema([pa.field("run_dir", pa.string()), logs.SCHEMA.field("generation"),
                    *(f for f in logs.SCHEMA if f.name != "generation")])
DEFAULT_ORDER = "run_dir, generation, chromosome_id"
# keywords that begin a clause of a SELECT: outside parentheses, a piece of load_runs' query may hold none
_CLAUSES = {"FROM", "WHERE", "GROUP", "HAVING", "WINDOW", "QUALIFY", "ORDER", "LIMIT", "OFFSET", "UNION", "EXCEPT",
            "INTERSECT"}



class QueryError(ValueError):
    """A missing run, or a query DuckDB cannot run; its message is one line."""


def dataset(run_dirs: Sequence[str | Path]) -> ds.FileSystemDataset:
    """Every generation file of every run, as one dataset with SCHEMA.

    Each file's fragment carries `generation == G and run_dir == R` as its partition expression (logs.dataset):
    pyarrow fills `run_dir` (and an older file's `generation`) from it, and skips the file when a filter
    contradicts it.
    """
    if not run_dirs:
        raise QueryError("no run directory given")
    for run_dir in run_dirs:
        logged_run(run_dir)
    return logs.dataset([(Path(d), ds.field("run_dir") == str(d)) for d in run_dirs], SCHEMA)


def logged_run(run_dir: str | Path) -> Path:
    """The run's generations folder; QueryError for a missing run directory, or one that has logged nothing."""
    run = Path(run_dir)
    if not run.is_dir():
        raise QueryError(f"{run}: no such run directory")
    generations = rundir.generations_dir(run)
    if not generations.is_dir():
        raise QueryError(f"{run}: no generations logged (expected {generations})")
    return generations


def load_runs(run_dirs: Sequence[str | Path], columns: Sequence[str] | None = None, where: str | None = None,
              order_by: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """One or several runs' logs, one row per chromosome per generation: a SELECT over `logs`.

    columns: column names or SQL expressions (`"params_g + params_d AS params"`); default all.
    where: a SQL boolean expression, e.g. `"generation >= 5 AND status = 'ok'"`.
    order_by: a SQL ORDER BY list, e.g. `"fitness DESC"`; default `run_dir, generation, chromosome_id`.
    """
    data = dataset(run_dirs)
    pieces = [("select list", ", ".join(columns or ["*"]))]
    text = f"SELECT {pieces[0][1]} FROM {TABLE}"
    if where:
        pieces.append(("WHERE expression", where))
        text += f" WHERE ({where})"
    pieces.append(("ORDER BY list", order_by or DEFAULT_ORDER))
    text += f" ORDER BY {pieces[-1][1]}"
    if limit is not None:
        text += f" LIMIT {int(limit)}"
    try:
        for clause, piece in pieces:
            _check_piece(clause, piece)
        return _execute(data, text)
    except QueryError as e:  # say which query: the error's position is in it
        raise QueryError(f"{e} (in: {_one_line(text)})") from None


def sql(run_dirs: Sequence[str | Path], query: str) -> pd.DataFrame:
    """Any one SELECT over the runs' logs, which it sees as the table `logs`."""
    data = dataset(run_dirs)
    try:
        return _execute(data, query)
    except QueryError as e:
        raise QueryError(f"{e} (in: {_one_line(query)})") from None


def _check_piece(clause: str, piece: str) -> None:
    """A piece of load_runs' query stays inside its clause: no statement break, no comment hiding the rest, no
    parenthesis closed that it did not open (`true); COPY ...; SELECT 1 WHERE (true` is refused), no clause of
    its own outside parentheses (a select list `* FROM other_table`)."""
    try:
        tokens = duckdb.tokenize(piece)
    except duckdb.Error as e:
        raise QueryError(f"{clause} {piece!r}: {_one_line(str(e))}") from None
    depth, previous = 0, ""
    ends = [p for p, _ in tokens[1:]] + [len(piece)]
    for (start, kind), end in zip(tokens, ends):
        token, before, previous = piece[start:end].strip(), previous, piece[start:end].strip().upper()
        if kind == duckdb.token_type.comment:
            raise QueryError(f"{clause} {piece!r} has a comment, which would hide the rest of the query")
        if kind == duckdb.token_type.keyword and depth == 0 and previous in _CLAUSES and \
                not (previous == "FROM" and before == "DISTINCT"):  # `a IS DISTINCT FROM b` is an expression
            raise QueryError(f"{clause} {piece!r} has {previous} outside parentheses, which would start a clause "
                             f"of its own")
        if kind != duckdb.token_type.operator:
            continue
        if ";" in token:
            raise QueryError(f"{clause} {piece!r} has a ';': expected one piece of one SELECT, not statements")
        for c in token:
            depth += {"(": 1, ")": -1}.get(c, 0)
            if depth < 0:
                raise QueryError(f"{clause} {piece!r} closes a parenthesis it did not open")
    if depth:
        raise QueryError(f"{clause} {piece!r} leaves a parenthesis open")


def _check_select(query: str) -> None:
    """Exactly one statement, and a SELECT: nothing that writes, attaches, sets or installs runs."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as e:
        raise QueryError(_one_line(str(e).split("\n\nLINE")[0])) from None
    kinds = [s.type.name for s in statements]
    if kinds != ["SELECT"]:
        got = f"{len(kinds)} statements ({', '.join(kinds)})" if len(kinds) > 1 else f"{kinds[0]}" if kinds else "nothing"
        raise QueryError(f"expected one SELECT over the table {TABLE}, got {got}")


def _execute(data: ds.Dataset, query: str) -> pd.DataFrame:
    """Run the query with `data` as the table `logs`; DuckDB's and pyarrow's errors become one line."""
    _check_select(query)
    con = duckdb.connect()
    con.register(TABLE, data)  # scanned by pyarrow, so it stays readable with DuckDB's own file access off
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    try:
        table = con.sql(query).to_arrow_table()
    except (duckdb.Error, pa.ArrowException) as e:  # pyarrow's: from the scan, e.g. an unreadable file
        raise QueryError(_one_line(str(e).split("\n\nLINE")[0])) from None
    return table.to_pandas()


def _one_line(text: str) -> str:
    return " ".join(text.split())
