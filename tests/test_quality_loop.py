"""Sample quality in the loop: measured in the tasks, logged, in the fitness, in selection, scored after the fact.

The plumbing is tested with a stand-in feature network (a TorchScript file taking the Inception's input, 299 px
images, to 16 features of their mean colours): it and FID over 16 features cost nothing, where the real network
takes 0.2 s an image and FID over its 2048 features seconds. tests/test_quality.py runs the real Inception.
"""


import numpy as np
import pytest

from neuroevo import config
from neuroevo.evolve import fitness, pareto, ranking
from neuroevo.execution import loop
from neuroevo.store import logs, rundir
from neuroevo.train import data
from tests.conftest import neuroevo, tiny_dict

# every test here starts a local Ray or runs the CLI as a subprocess
pytestmark = pytest.mark.slow


def quality_dict(standin: str, **keys) -> dict:
    return {"evaluate": "all", "samples": 32, "reference_images": 64, "kid_subsets": 5, "kid_subset_size": 16,
            "batch_size": 32, "extractor_weights": standin, **keys}


def run(tmp_path, standin, name, quality=None, fitness_keys=None, evolve_keys=None, train_keys=None):
    """A tiny evolution with sample quality measured; its config and logs."""
    from neuroevo.train import quality as q

    cfg = config.from_dict(tiny_dict(quality=quality_dict(standin, **(quality or {})),
                                     fitness=fitness_keys or {}, evolve=evolve_keys or {}, train=train_keys or {}))
    images = data.load(cfg.data, cfg.seed)
    reference = q.reference(images, max_images=cfg.quality.reference_images, weights=standin,
                            directory=tmp_path / "cache")
    loop.evolve(cfg, name, tmp_path / name, images.array, reference=reference)
    return cfg, logs.read_generations(tmp_path / name)


@pytest.fixture(scope="module")
def kinds(ray_local, tmp_path_factory, standin):
    """One run of each fitness kind (and a reference run without quality), on the same seed."""
    tmp = tmp_path_factory.mktemp("kinds")
    out = {kind: run(tmp, standin, kind, fitness_keys={"kind": kind}) for kind in ("reference", "quality", "pareto")}
    plain = config.from_dict(tiny_dict())
    loop.evolve(plain, "plain", tmp / "plain", data.load(plain.data, plain.seed).array)
    out["plain"] = (plain, logs.read_generations(tmp / "plain"))
    return out


def test_every_trained_chromosome_logs_its_quality(kinds):
    for kind in ("reference", "quality", "pareto"):
        _, df = kinds[kind]
        ok = df[df.status == "ok"]
        assert len(ok) and ok[["fid", "kid", "kid_std", "quality_seconds"]].notna().all().all()
        assert (ok.quality_samples == 32).all() and (ok.fid > 0).all() and (ok.seeds == 1).all()
        assert ok.fid.nunique() > 1  # different generators, different FIDs


def test_reference_fitness_is_unchanged_by_measuring_quality(kinds):
    """The same run with and without quality: the same chromosomes, losses and fitness."""
    _, measured = kinds["reference"]
    _, plain = kinds["plain"]
    cols = ["generation", "chromosome_id", "d_loss", "g_loss", "fitness"]
    assert measured[cols].equals(plain[cols])
    assert plain.fid.isna().all() and plain.pareto_rank.isna().all()


def test_quality_fitness_is_the_formula_and_selects_the_elites(kinds):
    cfg, df = kinds["quality"]
    f = cfg.fitness
    ok = df[df.status == "ok"]
    expected = f.lam * np.exp(-ok.fid / f.fid_scale) + f.gamma * np.tanh(f.scale / (ok.params_g + ok.params_d))
    assert np.allclose(ok.fitness, expected, rtol=1e-12)
    g0, g1 = df[df.generation == 0], df[df.generation == 1]
    fittest = g0.iloc[ranking.order(g0.fitness, chromosome_id=g0.chromosome_id)].chromosome_id[:2]
    assert set(g1[g1.is_elite].chromosome_id) == set(fittest)


def test_pareto_ranks_the_generation_and_its_elites_come_from_the_front(kinds):
    cfg, df = kinds["pareto"]
    for g, gen in df.groupby("generation"):
        objectives = np.c_[gen.fid, gen.params_g + gen.params_d]
        assert gen.pareto_rank.tolist() == pareto.fronts(objectives).tolist()
    g0, g1 = df[df.generation == 0], df[df.generation == 1]
    crowding = pareto.crowding(np.c_[g0.fid, g0.params_g + g0.params_d], g0.pareto_rank.to_numpy())
    order = ranking.order(g0.fitness, chromosome_id=g0.chromosome_id, front=g0.pareto_rank, crowding=crowding)
    assert set(g1[g1.is_elite].chromosome_id) == set(g0.chromosome_id.iloc[order[:2]])
    kept = g0.chromosome_id.isin(g1[g1.is_elite].chromosome_id)
    assert g0[kept].pareto_rank.max() <= g0[~kept].pareto_rank.min()  # no elite from a worse front than a loser


def test_top_k_measures_only_the_k_fittest_by_the_reference_formula(ray_local, tmp_path, standin):
    cfg, df = run(tmp_path, standin, "top", quality={"evaluate": "top_k", "top_k": 2}, fitness_keys={"kind": "quality"})
    ref_cfg = config.from_dict(tiny_dict()).fitness
    for _, gen in df.groupby("generation"):
        screen = [fitness.fitness(r.d_loss, r.g_loss, r.params_g, r.params_d, ref_cfg) for r in gen.itertuples()]
        top = set(gen.chromosome_id.iloc[ranking.order(screen, chromosome_id=gen.chromosome_id)[:2]])
        assert set(gen[gen.fid.notna()].chromosome_id) == top
        unmeasured = gen[gen.fid.isna()]
        assert np.allclose(unmeasured.fitness, cfg.fitness.gamma * np.tanh(
            cfg.fitness.scale / (unmeasured.params_g + unmeasured.params_d)))


def test_several_seeds_per_chromosome_score_the_mean_and_keep_all_saves_every_generator(ray_local, tmp_path,
                                                                                        standin, kinds):
    _, one = kinds["reference"]
    cfg, df = run(tmp_path, standin, "seeds", evolve_keys={"seeds_per_chromosome": 2}, train_keys={"keep": "all"})
    ok = df[df.status == "ok"]
    assert (ok.seeds == 2).all() and all(len(x) == 2 for x in ok.seed_d_loss) and all(len(x) == 2 for x in ok.seed_fid)
    assert np.allclose(ok.d_loss, [np.mean(x) for x in ok.seed_d_loss])
    assert np.allclose(ok.fid, [np.mean(x) for x in ok.seed_fid])
    # the first seed is the chromosome's task seed: its training is the one-seed run's
    first = one[one.generation == 0].set_index("chromosome_id")
    g0 = ok[ok.generation == 0].set_index("chromosome_id")
    assert [x[0] for x in g0.seed_d_loss] == first.loc[g0.index].d_loss.tolist()
    for r in ok.itertuples():  # train.keep all
        assert rundir.generator_file(tmp_path / "seeds", r.generation, r.chromosome_id).is_file()


# --- the CLI: score, and bad input before any training ----------------------------------------------------------


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, standin):
    tmp = tmp_path_factory.mktemp("score")
    p = neuroevo("run", "demo", "--quiet", "--set", f"out_dir={tmp}", "--set", "run_id=r", "--set", "data.image_size=12",
                 "--set", "data.subset=128", "--set", "space.batch_size=32", "--set", "space.noise_side=[0.25,0.5]",
                 "--set", "space.g_blocks=[1,3]", "--set", "space.d_blocks=[1,2]", "--set", "space.channels=[5,8]",
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "evolve.population=3",
                 "--set", "evolve.generations=1", "--set", "evolve.elite_fraction=0.34", "--set", "train.keep=all",
                 *[a for k, v in quality_dict(standin).items() for a in ("--set", f"quality.{k}={v}")])
    assert p.returncode == 0, p.stderr
    assert "quality: reference statistics of 64 real images" in p.stdout
    return tmp / "r", tmp


def test_score_measures_a_saved_generator_again(scored_run):
    run_dir, tmp = scored_run
    df = logs.read_generations(run_dir)
    best = df.iloc[ranking.order(df.fitness, df.generation, df.chromosome_id)[0]]
    p = neuroevo("score", run_dir)
    assert p.returncode == 0, p.stderr
    assert f"chromosome {best.chromosome_id} (generation 0): FID " in p.stdout and "32 samples" in p.stdout
    # the same generator, noise seed and reference as in its task: the logged figure
    other = df[df.chromosome_id != best.chromosome_id].iloc[0]
    p = neuroevo("score", run_dir, "--chromosome", other.chromosome_id, "--seed", str(other.task_seed))
    assert p.returncode == 0, p.stderr
    assert f"FID {other.fid:.2f}" in p.stdout, (p.stdout, other.fid)


def test_score_with_fewer_reference_images_computes_them_once_and_shows_its_progress(scored_run):
    run_dir, _ = scored_run
    p = neuroevo("score", run_dir, "--reference-images", "40")
    assert p.returncode == 0, p.stderr
    assert "against 40 real images of the run" in p.stdout
    assert "reference statistics: 0/40 images" in p.stderr  # a line, not a redrawn bar: stderr is no terminal here
    again = neuroevo("score", run_dir, "--reference-images", "40")
    assert again.returncode == 0 and "reference statistics:" not in again.stderr  # kept beside the data cache
    bad = neuroevo("score", run_dir, "--reference-images", "8")
    assert bad.returncode == 2 and "--reference-images: 8 is fewer than KID's subsets" in bad.stderr


def test_score_against_a_folder_and_its_bad_input(scored_run, tmp_path):
    run_dir, _ = scored_run
    from PIL import Image

    folder = tmp_path / "real" / "a"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    p = neuroevo("score", run_dir, "--against", tmp_path / "real", "--samples", "16")
    assert p.returncode == 0, p.stderr
    assert "against 20 real images" in p.stdout
    (tmp_path / "empty" / "a").mkdir(parents=True)
    for args, message in (
            (["--against", tmp_path / "empty"], "has no image files"),
            (["--against", tmp_path / "nowhere"], "--against: "),
            (["--samples", "4"], "--samples: 4 is fewer than KID's subsets"),
            (["--generation", "7"], "--generation: "),
            (["--chromosome", "0123456789ab"], "--chromosome: ")):
        p = neuroevo("score", run_dir, *map(str, args))
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, (args, p.stderr)


@pytest.mark.parametrize("keys, message", [
    (["quality.evaluate=all", "quality.extractor_weights=/nowhere/inception.pt"],
     "quality.extractor_weights: /nowhere/inception.pt does not exist"),
    (["fitness.kind=pareto"], "fitness.kind: pareto scores sample quality, and quality.evaluate is off"),
    (["quality.evaluate=all", "quality.samples=8"], "quality.samples: 8 is fewer than KID's subsets"),
])
def test_bad_quality_input_is_one_line_before_anything_runs(tmp_path, keys, message):
    p = neuroevo("run", "demo", "--set", f"out_dir={tmp_path}", "--set", "run_id=x",
                 *[a for k in keys for a in ("--set", k)])
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, p.stderr
    assert not (tmp_path / "x").exists()


def test_a_corrupt_extractor_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a TorchScript archive")
    p = neuroevo("run", "demo", "--set", f"out_dir={tmp_path}", "--set", "quality.evaluate=all",
                 "--set", f"quality.extractor_weights={bad}")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "is not a TorchScript module" in p.stderr, p.stderr


def test_best_and_report_show_the_measured_quality(scored_run, tmp_path):
    run_dir, _ = scored_run
    df = logs.read_generations(run_dir)
    best = df.iloc[ranking.order(df.fitness, df.generation, df.chromosome_id)[0]]
    p = neuroevo("best", run_dir)
    assert p.returncode == 0, p.stderr
    assert f"quality   FID {best.fid:.2f}  KID {best.kid:.4f} ± {best.kid_std:.4f}  (32 samples" in p.stdout
    p = neuroevo("report", run_dir, "--out", tmp_path / "rep")
    assert p.returncode == 0, p.stderr
    from PIL import Image

    with Image.open(tmp_path / "rep" / "quality.png") as img:
        assert img.size[0] > 800  # two panels: FID per generation, FID against size
    page = (tmp_path / "rep" / "report.html").read_text()
    assert f"Lowest FID {df.fid.min():.2f}" in page and "3 of 3 chromosomes measured" in page
