"""`neuroevo run --quiet`, `best`, `report` and `sample` as a user runs them, on a real three-generation run."""

import base64
import io
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.colors import BoundaryNorm
from PIL import Image

from neuroevo.analysis import query, report
from neuroevo.execution import progress
from neuroevo.store import rundir
from neuroevo.train import data
from tests.conftest import (
    GRID_FILES,
    PLOT_FILES,
    Page,
    assert_enlarged,
    assert_report_written,
    neuroevo,
    tiny_dict,
)

GENERATIONS = 3


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory):
    """A real run through the CLI, in quiet mode: (run directory, its stdout)."""
    root = tmp_path_factory.mktemp("report")
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_dict(evolve={"population": 4, "generations": GENERATIONS})))
    p = neuroevo("run", cfg, "--quiet", "--set", f"out_dir={root}/runs", "--set", "run_id=r", timeout=300)
    assert p.returncode == 0, p.stderr
    return root / "runs" / "r", p.stdout


@pytest.fixture(scope="module")
def run_dir(quiet_run):
    return quiet_run[0]


@pytest.fixture(scope="module")
def history(run_dir):
    return query.load_runs([run_dir])


@pytest.mark.slow
def test_quiet_run_prints_one_line_per_generation(quiet_run):
    _, stdout = quiet_run
    summaries = re.findall(r"^gen (\d+): best [\d.]+ mean [\d.]+ failed 0/4 [\d.]+s$", stdout, re.MULTILINE)
    assert summaries == [str(g) for g in range(GENERATIONS)]
    assert "gen 0 [" not in stdout  # no line per chromosome
    assert "chromosome_id" not in stdout  # no table per generation
    assert "best chromosome" in stdout  # the end summary stays


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_counts_done_failed_and_pending(capsys):
    screen = Terminal()
    bar = progress.GenerationBar(3, 4, file=screen)
    ok = {"chromosome_id": "aaa", "status": "ok", "fitness": 0.5, "d_loss": 1.0, "g_loss": 0.5, "params_g": 10,
          "params_d": 20, "train_seconds": 1.0, "images_per_second": 100.0, "device": "cpu"}
    bar.task_done(ok)
    bar.task_done({"chromosome_id": "bbb", "status": "failed", "error": "out of memory"})
    bar.bar.refresh()
    assert "gen 3" in screen.getvalue() and "2/4" in screen.getvalue()
    assert "failed=1, pending=2" in screen.getvalue()
    bar.close()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gen 3 [1/4] aaa fitness 0.5000") and out[1] == "gen 3 [2/4] bbb FAILED: out of memory"

    with progress.quiet(True):
        screen = Terminal()
        bar = progress.GenerationBar(0, 2, file=screen)
        bar.task_done(ok)
        bar.close()
        assert screen.getvalue() == "" and capsys.readouterr().out == ""


@pytest.mark.slow
def test_best_lays_out_the_fittest_chromosome(run_dir, history):
    p = neuroevo("best", run_dir)
    assert p.returncode == 0, p.stderr
    ok = history[history.status == "ok"]
    top = ok.sort_values(["fitness", "generation"], ascending=[False, True]).iloc[0]
    assert p.stdout.startswith(f"best chromosome {top.chromosome_id} of run r, generation {top.generation} ")
    assert f"fitness   {top.fitness:.4f}" in p.stdout
    assert f"params    {top.params_g + top.params_d:,}" in p.stdout
    # one line per layer: G's blocks and output layer, D's blocks, hidden and output layers
    layer_lines = [line for line in p.stdout.splitlines() if re.match(r"^\s+[GD] ", line)]
    assert len(layer_lines) == top.g_n_blocks + 1 + top.d_n_blocks + 2
    samples = re.search(r"^samples\s+(\S+)$", p.stdout, re.MULTILINE).group(1)
    assert samples.endswith(f"best/generation={top.generation:04d}/samples.png")
    assert Image.open(samples).format == "PNG"


@pytest.fixture(scope="module")
def report_out(run_dir, tmp_path_factory):
    """`neuroevo report` of the run: its output folder, and the process."""
    out = tmp_path_factory.mktemp("report") / "rep"
    return out, neuroevo("report", run_dir, "--out", out, "--top", 3)


@pytest.mark.slow
def test_report_writes_valid_plots_and_a_self_contained_page(run_dir, history, report_out):
    out, p = report_out
    assert p.returncode == 0, p.stderr
    assert_report_written(p, out)

    page = Page()
    page.feed((out / "report.html").read_text(encoding="utf-8"))
    assert page.title.endswith(" r") and not page.links
    srcs = [img["src"] for img in page.images]
    assert all(s.startswith("data:image/png;base64,") for s in srcs)  # nothing to fetch: all inlined
    pngs = [base64.b64decode(s.split(",", 1)[1]) for s in srcs]
    for png in pngs:
        Image.open(io.BytesIO(png)).verify()
    assert pngs[:6] == [(out / n).read_bytes() for n in PLOT_FILES + GRID_FILES]
    top = report.best(history)
    assert_enlarged(pngs[4], rundir.best_samples(run_dir, int(top.generation)).read_bytes())
    # then one sample grid per generation, each the saved best's grid enlarged
    assert len(pngs) == 6 + GENERATIONS
    for png, g in zip(pngs[6:], range(GENERATIONS)):
        assert_enlarged(png, rundir.best_samples(run_dir, g).read_bytes())
    # the top table: the 3 fittest distinct chromosomes, best first
    ok = history[history.status == "ok"].sort_values(["fitness", "generation"], ascending=[False, True])
    top3 = ok.drop_duplicates("chromosome_id").head(3)
    ids = [c for c in page.cells if re.fullmatch(r"[0-9a-f]{12}", c)]
    assert ids == top3["chromosome_id"].tolist()


@pytest.mark.slow
def test_real_images_are_the_runs_own_data_laid_out_as_its_sample_grids(run_dir, report_out):
    out, _ = report_out
    real = out / "real-images.png"
    side = 12 + 2  # TINY's 12 px images with torchvision's 2 px padding, 16 of them in rows of 4
    with Image.open(real) as img:
        k = img.size[0] // (4 * side + 2)
        assert k > 1 and img.size == (k * (4 * side + 2),) * 2 and max(img.size) >= report.GRID_PX
        pixels = np.asarray(img)[::k, ::k]
    with Image.open(out / "best-samples.png") as samples:
        assert samples.size == img.size  # beside the samples at the same scale
    demo = {im.tobytes() for im in data.demo(128, 12, 3, 0).array.transpose(0, 2, 3, 1)}  # the run's data (TINY)
    tiles = [pixels[2 + r * side:(r + 1) * side, 2 + c * side:(c + 1) * side] for r in range(4) for c in range(4)]
    assert all(t.tobytes() in demo for t in tiles) and len({t.tobytes() for t in tiles}) == 16
    picked, _ = report.real_images(run_dir)  # the same pick every time, in the grid's order
    assert [t.tobytes() for t in tiles] == [im.tobytes() for im in picked.transpose(0, 2, 3, 1)]


@pytest.mark.slow
def test_a_run_whose_data_is_gone_still_gets_a_report_that_says_so(run_dir, tmp_path):
    moved = tmp_path / "r"
    shutil.copytree(run_dir, moved, ignore=shutil.ignore_patterns("report", "weights.pt"))
    cfg = yaml.safe_load(rundir.config_file(moved).read_text())
    cfg["data"].update(source="folder", root=str(tmp_path / "gone"))
    rundir.config_file(moved).write_text(yaml.safe_dump(cfg))
    written = report.write_report(moved, tmp_path / "rep")
    assert [p.name for p in written] == PLOT_FILES + ["best-samples.png", "report.html"]
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    assert f"No real images to show: data.root: {tmp_path / 'gone'} is not a directory" in page


@pytest.mark.slow
def test_generations_are_discrete_colours_and_legends_cover_no_data(history):
    few = report.pareto_figure(history)
    (ax,) = few.axes  # no colour bar: each generation named in the legend
    labels = [t.get_text() for t in few.legends[0].get_texts()]
    assert [x for x in labels if x.startswith("generation")] == [f"generation {g}" for g in range(GENERATIONS)]

    many = report.pareto_figure(history.assign(generation=np.arange(len(history)) % 10))
    (bar,) = [c.colorbar for c in many.axes[0].collections if c.colorbar is not None]
    assert isinstance(bar.norm, BoundaryNorm) and bar.cmap.N == 10  # one band per generation, 0 to 9
    assert np.array_equal(bar.norm.boundaries, np.arange(-0.5, 10))
    ticks = [t for t in bar.get_ticks() if -0.5 <= t <= 9.5]  # those drawn: the locator may add ones beyond
    assert len(ticks) >= 3 and set(ticks) <= set(range(10))  # whole generations

    for fig in (report.fitness_figure(history), few, many, report.quality_figure(history)):
        fig.draw_without_rendering()
        for legend in fig.legends:
            assert not any(legend.get_window_extent().overlaps(a.get_window_extent()) for a in fig.axes)
    one = report.fitness_figure(history[history.generation == 0])
    lo, hi = one.axes[0].get_xlim()
    assert [t for t in one.axes[0].get_xticks() if lo <= t <= hi] == [0]  # whole generations, also for one


@pytest.mark.slow
def test_pareto_leaves_out_and_counts_chromosomes_whose_loss_is_not_positive(history):
    ok = history[history.status == "ok"]
    assert (ok.d_loss > 0).all() and (ok.g_loss > 0).all()  # bce
    assert "not shown" not in report.pareto_figure(history).axes[0].get_xlabel()
    negative = history.copy()
    negative.loc[ok.index[0], "g_loss"] = -0.3  # not a loss bce can have: its term is 0
    (ax,) = report.pareto_figure(negative).axes[:1]
    assert f"(1 of {len(ok)} trained chromosomes not shown: a loss term of 0)" in ax.get_xlabel()


@pytest.mark.slow
def test_every_file_of_a_run_is_a_path_of_rundir_and_none_is_left_half_written(run_dir):
    written = report.write_report(run_dir, rundir.report_dir(run_dir))
    expected = {rundir.config_file(run_dir), rundir.data_file(run_dir), rundir.state_file(run_dir),
                rundir.ray_log(run_dir), run_dir / rundir.LOCK, *written}  # the lock's holder file goes with it
    for g in range(GENERATIONS):
        expected |= {rundir.generation_file(run_dir, g), rundir.best_weights(run_dir, g),
                     rundir.best_samples(run_dir, g), rundir.best_chromosome(run_dir, g)}
    events = {p for p in rundir.tensorboard_dir(run_dir).rglob("*") if p.is_file()}
    assert events and all(p.name.startswith("events.out.tfevents.") for p in events)  # tensorboardX's own names
    expected |= {rundir.tracking_file(run_dir), *events}
    assert all(p.parent == rundir.report_dir(run_dir) for p in written)
    assert {p for p in run_dir.rglob("*") if p.is_file()} == expected  # no temporary file among them


@pytest.mark.slow
def test_report_on_a_missing_run_is_one_line_and_exit_2(tmp_path):
    p = neuroevo("report", tmp_path / "nope")
    assert p.returncode == 2 and p.stderr.strip() == f"neuroevo: error: {tmp_path / 'nope'}: no such run directory"
    assert not (tmp_path / "nope").exists()


@pytest.mark.slow
def test_sample_draws_a_grid_of_the_right_size(run_dir, tmp_path):
    p = neuroevo("sample", run_dir, "--generation", 1, "--n", 6, "--out", tmp_path / "grid.png")
    assert p.returncode == 0, p.stderr
    saved = json.loads((run_dir / "best" / "generation=0001" / "chromosome.json").read_text())
    with Image.open(tmp_path / "grid.png") as img:
        # 6 images of 12 px in rows of ceil(sqrt(6)) = 3, with 2 px padding: 3*(12+2)+2 by 2*(12+2)+2
        assert img.format == "PNG" and img.size == (44, 30) and img.mode == "RGB"
        pixels = np.asarray(img)
    assert pixels[2:14, 2:14].std() > 0  # a drawn image, not blank padding
    assert f"6 samples of 3x{saved['image_size']}x{saved['image_size']}" in p.stdout

    # the same seed draws the same images; another seed, others
    weights = run_dir / "best" / "generation=0001" / "weights.pt"
    report.sample(weights, 6, 0, tmp_path / "again.png")
    report.sample(weights, 6, 1, tmp_path / "other.png")
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "grid.png").read_bytes()
    assert (tmp_path / "other.png").read_bytes() != (tmp_path / "grid.png").read_bytes()


@pytest.mark.slow
def test_sample_defaults_to_the_best_chromosomes_generator(run_dir, history, tmp_path):
    p = neuroevo("sample", run_dir, "--out", tmp_path / "best.png")
    assert p.returncode == 0, p.stderr
    top = report.best(history)
    assert "64 samples" in p.stdout and f"chromosome {top.chromosome_id} (generation {top.generation}," in p.stdout
    assert Image.open(tmp_path / "best.png").size == (8 * 14 + 2, 8 * 14 + 2)


@pytest.mark.parametrize("args, out, message", [
    (["--generation", 99], "x.png", "weights.pt does not exist (saved: 0, 1, 2)"),
    ([], "grid.nope", "grid.nope has no image file extension"),
])
@pytest.mark.slow
def test_sample_bad_input_is_one_line_and_exit_2(run_dir, tmp_path, args, out, message):
    p = neuroevo("sample", run_dir, *args, "--out", tmp_path / out)
    assert p.returncode == 2 and p.stderr.startswith("neuroevo: error: ") and message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    assert not (tmp_path / out).exists()


def test_pareto_front_keeps_the_undominated():
    size = np.array([10, 20, 30, 15, 40, 10])
    loss = np.array([0.9, 0.5, 0.4, 0.95, 0.45, 1.0])
    assert report.pareto_front(size, loss).tolist() == [True, True, True, False, False, False]


def test_grid_generations_spread_evenly_with_first_and_last():
    assert report.grid_generations(list(range(5)), 20) == [0, 1, 2, 3, 4]
    assert report.grid_generations(list(range(10)), 4) == [0, 3, 6, 9]


def test_the_pareto_plot_draws_the_loss_each_chromosome_is_scored_on():
    """bce sums two inverses, hinge and wgan-gp score D's loss alone: a hinge chromosome with a tiny G loss is not
    drawn as if it dominated."""
    df = pd.DataFrame({"loss": ["bce", "hinge", "wgan-gp", "hinge", None], "d_loss": [1.0, 0.5, -2.0, -0.1, 3.0],
                       "g_loss": [1.0, 0.001, 5.0, 1.0, 6.0]})
    got = report.scored_losses(df)
    assert got[:3].tolist() == [0.5, 0.5, 2.0] and np.isnan(got[3]) and got[4] == pytest.approx(2.0)
