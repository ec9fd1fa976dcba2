"""Querying runs' logs: SQL over a pyarrow dataset, checked against the same selection done in pandas."""

import json
import shutil
from io import StringIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from neuroevo.analysis import query
from neuroevo.execution import loop
from neuroevo.store import logs, rundir
from neuroevo.train import data
from tests.conftest import neuroevo, plain, tiny_config

# every test here reads runs made on a local Ray, or runs the CLI as a subprocess
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(ray_local, tmp_path_factory):
    """Two real three-generation runs, seeds 0 and 1."""
    root = tmp_path_factory.mktemp("runs")
    for seed, name in ((0, "a"), (1, "b")):
        cfg = tiny_config(seed=seed, evolve={"population": 4, "generations": 3, "elite_fraction": 0.5})
        loop.evolve(cfg, name, root / name, data.load(cfg.data, cfg.seed).array)
    return root / "a", root / "b"


def test_where_and_sort_match_pandas(runs):
    ref = plain(*runs)
    cut = float(ref["fitness"].median())
    got = query.load_runs(runs, where=f"generation >= 1 AND fitness > {cut} AND status = 'ok'",
                          order_by="fitness DESC, chromosome_id")
    want = ref[(ref.generation >= 1) & (ref.fitness > cut) & (ref.status == "ok")]
    want = want.sort_values(["fitness", "chromosome_id"], ascending=[False, True])
    assert 0 < len(got) < len(ref)
    for col in ("run_dir", "generation", "chromosome_id", "fitness", "d_loss"):
        assert got[col].tolist() == want[col].tolist(), col


def test_columns_are_names_or_expressions_and_limit_cuts(runs):
    got = query.load_runs(runs[:1], columns=["generation", "chromosome_id", "params_g + params_d AS params"],
                          where="generation = 2", order_by="params DESC", limit=3)
    ref = plain(runs[0])
    ref = ref[ref.generation == 2].assign(params=ref.params_g + ref.params_d).sort_values("params", ascending=False)
    assert list(got.columns) == ["generation", "chromosome_id", "params"]
    assert got["params"].tolist() == ref["params"].head(3).tolist()
    assert got["generation"].dtype.kind == "i"


def test_two_runs_at_once(runs):
    a, b = runs
    df = query.load_runs([a, b])
    assert df.groupby("run_dir").size().to_dict() == {str(a): 12, str(b): 12}
    assert df.groupby("run_dir")["run_id"].unique().map(list).to_dict() == {str(a): ["a"], str(b): ["b"]}
    assert set(query.SCHEMA.names) == set(df.columns)
    # in order: by run, then generation
    assert df[["run_dir", "generation"]].apply(tuple, axis=1).is_monotonic_increasing
    # the same chromosomes as pandas reads, with typed values
    ref = plain(a, b)
    key = ["run_dir", "generation", "chromosome_id"]
    merged = df.merge(ref, on=key, suffixes=("", "_pd"))
    assert len(merged) == 24 and (merged.fitness == merged.fitness_pd).all()
    assert df["started_at"].dt.tz is not None
    assert list(df["g_kernels"].iloc[0]) == list(ref.sort_values(key)["g_kernels"].iloc[0])


def test_a_generation_filter_leaves_other_partitions_unread(runs, tmp_path):
    """Pushdown: with generation 0's file made unreadable, a query for later generations still works."""
    broken = tmp_path / "a"
    shutil.copytree(runs[0], broken)
    rundir.generation_file(broken, 0).write_bytes(b"not parquet")
    later = query.load_runs([broken], columns=["generation", "chromosome_id", "fitness"], where="generation >= 1")
    intact = query.load_runs(runs[:1], columns=["generation", "chromosome_id", "fitness"], where="generation >= 1")
    pd.testing.assert_frame_equal(later, intact)
    # a filter on the run skips the broken run's files too
    only_b = query.load_runs([broken, runs[1]], where=f"run_dir = '{runs[1]}'")
    assert len(only_b) == 12
    with pytest.raises(query.QueryError, match="generations/0000/part-0.parquet"):
        query.load_runs([broken])


def write_old_run(run_dir):
    """A run as an older schema (version 0) wrote it: fewer columns, 32-bit parameter counts."""
    schema = pa.schema([
        ("schema_version", pa.int16()), ("run_id", pa.string()), ("chromosome_id", pa.string()),
        ("born_generation", pa.int32()), ("is_elite", pa.bool_()), ("params_g", pa.int32()),
        ("params_d", pa.int32()), ("d_loss", pa.float64()), ("g_loss", pa.float64()), ("fitness", pa.float64()),
        ("status", pa.string()),
    ])
    for g in (0, 1):
        rows = [{"schema_version": 0, "run_id": "old", "chromosome_id": f"{g}{i:011d}", "born_generation": g,
                 "is_elite": False, "params_g": 1000 + i, "params_d": 2000 + i, "d_loss": 1.3, "g_loss": 0.7,
                 "fitness": 0.1 * i, "status": "ok"} for i in range(3)]
        out = run_dir / "generations" / f"generation={g:04d}"
        out.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "part-0.parquet")


def test_a_run_with_an_older_schema_reads_alongside_a_new_one(runs, tmp_path):
    old = tmp_path / "old"
    write_old_run(old)
    df = query.load_runs([old, runs[0]])
    assert df.groupby("run_dir").size().to_dict() == {str(old): 6, str(runs[0]): 12}
    old_rows, new_rows = df[df.run_dir == str(old)], df[df.run_dir == str(runs[0])]
    assert set(old_rows.schema_version) == {0} and set(new_rows.schema_version) == {logs.SCHEMA_VERSION}
    # columns the old schema lacked read as nulls; its columns keep their values, widened to the new types
    assert old_rows["task_seed"].isna().all() and old_rows["gpu_ids"].isna().all()
    assert old_rows["images_per_second"].isna().all() and new_rows["images_per_second"].notna().all()
    assert df["params_g"].dtype == "int64" and old_rows["params_g"].tolist() == [1000, 1001, 1002] * 2
    # and missing columns can be queried
    missing = query.load_runs([old, runs[0]], columns=["run_dir", "chromosome_id"], where="task_seed IS NULL")
    assert missing["chromosome_id"].tolist() == old_rows["chromosome_id"].tolist()
    by_sql = query.sql([old, runs[0]], "SELECT run_id, count(*) AS n FROM logs WHERE task_seed IS NULL GROUP BY run_id")
    assert by_sql.to_dict("records") == [{"run_id": "old", "n": 6}]


def test_cli_query_csv_matches_pandas(runs):
    a, b = runs
    p = neuroevo("query", a, b, "--where", "generation = 2", "--sort", "fitness DESC, chromosome_id", "--limit", 3,
                 "--columns", "run_id, chromosome_id, fitness, g_kernels", "--format", "csv")
    assert p.returncode == 0, p.stderr
    got = pd.read_csv(StringIO(p.stdout))
    ref = plain(a, b)
    want = ref[ref.generation == 2].sort_values(["fitness", "chromosome_id"], ascending=[False, True]).head(3)
    assert got["chromosome_id"].tolist() == want["chromosome_id"].tolist()
    assert got["fitness"].tolist() == pytest.approx(want["fitness"].tolist(), rel=1e-12)
    assert got["g_kernels"].map(json.loads).tolist() == [list(k) for k in want["g_kernels"]]


def test_cli_sql_json_and_table(runs):
    a, b = runs
    p = neuroevo("query", a, b, "--format", "json",
                 "--sql", "SELECT run_id, generation, max(fitness) AS best FROM logs GROUP BY ALL ORDER BY ALL")
    assert p.returncode == 0, p.stderr
    ref = plain(a, b).groupby(["run_id", "generation"])["fitness"].max().reset_index(name="best")
    assert json.loads(p.stdout) == ref.to_dict("records")

    p = neuroevo("query", a, "--where", "is_elite", "--sort", "fitness DESC")
    assert p.returncode == 0, p.stderr
    header, *lines = p.stdout.strip().splitlines()
    assert header.split() == ["run_id", "generation", "chromosome_id", "is_elite", "params", "d_loss", "g_loss",
                              "fitness", "status"]
    elites = plain(a).query("is_elite").sort_values("fitness", ascending=False)
    assert [line.split()[2] for line in lines] == elites["chromosome_id"].tolist()


@pytest.mark.parametrize("args, message", [
    (["--where", "fitnes > 0.1"], 'Referenced column "fitnes" not found'),
    (["--where", "fitness >"], "syntax error"),
    (["--sort", "nope DESC"], 'Referenced column "nope" not found'),
    (["--sql", "SELECT * FROM logs", "--where", "true"], "--sql: give the whole query there"),
])
def test_cli_bad_query_is_one_line_and_exit_2(runs, args, message):
    p = neuroevo("query", runs[0], *args)
    assert p.returncode == 2
    assert message in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_cli_missing_run_dir_is_one_line_and_exit_2(runs, tmp_path):
    p = neuroevo("query", runs[0], tmp_path / "nope")
    assert p.returncode == 2 and p.stderr.strip() == f"neuroevo: error: {tmp_path / 'nope'}: no such run directory"
    (tmp_path / "starting").mkdir()
    p = neuroevo("query", tmp_path / "starting")
    assert p.returncode == 2 and "no generations logged" in p.stderr


# --- only reading: one SELECT, pieces that stay in their clause, no file but the logs ---------------------------


@pytest.mark.parametrize("args", [
    ["--where", "true); COPY (SELECT chromosome_id FROM logs) TO '{out}'; SELECT 1 FROM logs WHERE (true"],
    ["--sort", "fitness; COPY (SELECT chromosome_id FROM logs) TO '{out}'"],
    ["--columns", "1 FROM logs; COPY (SELECT chromosome_id FROM logs) TO '{out}'; SELECT 1"],
    ["--columns", "* FROM read_csv('{secret}') --"],
    ["--columns", "s.* FROM read_csv('{secret}') AS s, (SELECT 1", "--sort", "chromosome_id) AS x"],
])
def test_cli_a_piece_that_leaves_its_clause_is_refused_and_writes_nothing(runs, tmp_path, args):
    out, secret = tmp_path / "written.csv", tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    p = neuroevo("query", runs[0], *(a.format(out=out, secret=secret) for a in args))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "hunter2" not in p.stdout
    line, = p.stderr.strip().splitlines()
    assert line.startswith("neuroevo: error: ") and "(in: SELECT " in line and "logs" in line
    assert not out.exists()


@pytest.mark.parametrize("text, got", [
    ("CREATE TABLE t AS SELECT * FROM logs", "CREATE"),
    ("COPY (SELECT * FROM logs) TO '{out}'", "COPY"),
    ("SELECT 1; COPY (SELECT * FROM logs) TO '{out}'", "2 statements (SELECT, COPY)"),
    ("ATTACH '{out}' AS other", "ATTACH"),
    ("SET enable_external_access = true", "SET"),
    ("INSTALL httpfs", "LOAD"),
    ("", "nothing"),
])
def test_sql_runs_nothing_but_one_select(runs, tmp_path, text, got):
    out = tmp_path / "written"
    query_text = text.format(out=out)
    with pytest.raises(query.QueryError) as e:
        query.sql(runs[:1], query_text)
    assert str(e.value) == f"expected one SELECT over the table logs, got {got} (in: {query_text})"
    assert not out.exists()


def test_cli_sql_create_table_is_one_line_and_exit_2(runs):
    p = neuroevo("query", runs[0], "--sql", "CREATE TABLE t AS SELECT * FROM logs")
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == ("neuroevo: error: expected one SELECT over the table logs, got CREATE "
                        "(in: CREATE TABLE t AS SELECT * FROM logs)\n")


def test_a_select_reads_no_file_but_the_logs(runs, tmp_path):
    readable = tmp_path / "readable.csv"
    readable.write_text("a\n1\n")
    for text in (f"SELECT * FROM read_csv('{readable}')", f"SELECT * FROM '{readable}'",
                 f"SELECT * FROM logs, read_parquet('{runs[1]}/generations/*/*.parquet')"):
        with pytest.raises(query.QueryError, match="file system operations are disabled"):
            query.sql(runs[:1], text)


def test_with_and_subqueries_still_run(runs):
    got = query.sql(runs, "WITH top AS (SELECT run_dir, generation, max(fitness) AS best FROM logs GROUP BY ALL) "
                          "SELECT * FROM top WHERE best >= (SELECT median(fitness) FROM logs) ORDER BY ALL")
    ref = plain(*runs)
    want = ref.groupby(["run_dir", "generation"])["fitness"].max().reset_index(name="best")
    want = want[want.best >= ref.fitness.median()].sort_values(["run_dir", "generation"])
    assert 0 < len(got) and got.to_dict("records") == want.to_dict("records")
    # pieces with their own parentheses, strings holding ';' and expressions with FROM inside them still run
    got = query.load_runs(runs[:1], columns=["chromosome_id", "(SELECT max(fitness) FROM logs) AS top",
                                             "extract(year FROM started_at) AS year"],
                          where="status IS DISTINCT FROM 'a;b' AND (generation >= 1)", order_by="fitness DESC")
    assert len(got) == 8 and got["top"].eq(plain(runs[0]).fitness.max()).all()
