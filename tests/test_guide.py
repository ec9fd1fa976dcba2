"""What `neuroevo run` tells a user before, during and after a run: the estimated cost, the warnings where the
fitness cannot rank, a data root one level too high, the loss on each line, the help, the next commands."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from neuroevo import cli, config, errors
from neuroevo.config import reference
from neuroevo.evolve import fitness, population
from neuroevo.execution import estimate, progress
from neuroevo.execution.capacity import Capacity
from neuroevo.execution.task import task_resources
from neuroevo.space import registry
from neuroevo.train import data
from tests.conftest import REPO, neuroevo, tiny_config, tiny_dict

# --- the estimate ---------------------------------------------------------------------------------------------


def test_a_generation_takes_its_longest_task_or_its_work_over_the_workers():
    even = [estimate.Task(1e9, 10.0, 1.0, 0.0)] * 4
    assert estimate.estimate(even, {"CPU": 2.0}, 3).seconds == pytest.approx(60.0)  # 4 x 10 s on 2 CPUs, x 3
    assert estimate.estimate(even, {"CPU": 8.0}, 3).seconds == pytest.approx(30.0)  # one task each: the longest
    skewed = [estimate.Task(1e9, 100.0, 1.0, 0.0)] + [estimate.Task(1e9, 1.0, 1.0, 0.0)] * 3
    assert estimate.estimate(skewed, {"CPU": 2.0}, 1).seconds == pytest.approx(100.0)
    halves = [estimate.Task(1e9, 10.0, 1.0, 0.5)] * 4  # two to a GPU, on 1 GPU: the GPU is the bound
    e = estimate.estimate(halves, {"CPU": 16.0, "GPU": 1.0}, 2)
    assert e.on_gpu and e.seconds == pytest.approx(40.0) and e.flops == pytest.approx(8e9)


def test_cpu_throughput_is_the_measured_points_and_grows_with_the_layers():
    for step, rate in estimate.CPU_FLOPS:
        assert estimate.cpu_flops(step) == pytest.approx(rate)
    rates = [estimate.cpu_flops(10.0 ** k) for k in range(6, 14)]
    assert rates == sorted(rates)
    assert rates[0] == pytest.approx(estimate.CPU_FLOPS[0][1]) and rates[-1] == pytest.approx(estimate.CPU_FLOPS[-1][1])


def _estimate_lines(preset: str, total: dict[str, float], overrides: tuple[str, ...] = ()) -> list[str]:
    cfg = config.load(preset, list(overrides))
    n_images = 2048 if cfg.data.source == "demo" else 50_000
    members = population.initial_population(cfg)
    cap = Capacity(total)
    tasks = [estimate.task(m.chromosome, cfg, n_images, task_resources(cfg, m.chromosome, cap)) for m in members]
    return estimate.lines(estimate.estimate(tasks, total, cfg.evolve.generations), cfg, n_images)


def test_the_demo_takes_minutes_and_cifar10_on_two_cpus_says_it_takes_hours_and_how_to_shrink_it():
    demo = _estimate_lines("demo", {"CPU": 2.0})
    assert len(demo) == 2 and "generation 0's 8 chromosomes" in demo[0] and "x 4 generations" in demo[0]
    assert re.search(r"about \d+ (s|min) on 2 CPUs \(rough: 10-120 GFLOP/s a CPU", demo[1]), demo
    cifar = _estimate_lines("cifar10", {"CPU": 2.0})
    assert re.search(r"about \d+ days on 2 CPUs", cifar[1]), cifar
    for key in ("evolve.population", "evolve.generations", "train.epochs", "data.subset", "train.steps_per_epoch",
                "data.image_size"):
        assert key in cifar[2]
    gpus = _estimate_lines("cifar10", {"CPU": 64.0, "GPU": 8.0})
    assert "on 8 GPUs (rough: 10 TFLOP/s a GPU, assumed" in gpus[1]
    shrunk = _estimate_lines("cifar10", {"CPU": 64.0, "GPU": 8.0}, ("train.steps_per_epoch=5", "evolve.generations=2"))
    assert len(shrunk) == 2  # no longer hours


# --- the warnings ---------------------------------------------------------------------------------------------


def _params(cfg: config.RunConfig) -> list[int]:
    return [sum(registry.param_counts(ch)) for ch in population.space_sample(cfg)]


@pytest.mark.parametrize("preset", config.PRESETS)
def test_no_preset_saturates_its_size_term(preset):
    cfg = config.load(preset)
    assert fitness.scale_warning(_params(cfg), cfg.fitness) is None


def test_a_scale_that_saturates_every_chromosome_warns_with_a_value_that_fixes_it():
    cfg = config.load("demo", ["fitness.scale=1e9"])
    params = _params(cfg)
    text = fitness.scale_warning(params, cfg.fitness)
    assert text.startswith("fitness.scale 1e+09 saturates the size term") and f"{max(params):,}" in text
    fix = float(re.search(r"set fitness.scale=(\d+)", text).group(1))
    assert fitness.scale_warning(params, dataclasses.replace(cfg.fitness, scale=fix)) is None
    assert fitness.scale_warning(params, dataclasses.replace(cfg.fitness, kind="pareto")) is None  # ranks by params


CHANCE = [(1.39, 0.69, "bce", 20_000), (1.35, 0.72, "bce", 60_000), (1.42, 0.66, "bce", 9_000)]


def test_losses_that_count_for_nothing_against_size_warn_with_a_value_that_fixes_it():
    ok = tiny_config().fitness
    assert fitness.loss_warning(CHANCE, ok) is None  # bce near chance: 0.016 against at most 0.25
    drowned = dataclasses.replace(ok, lam=0.001, gamma=0.999)
    text = fitness.loss_warning(CHANCE, drowned)
    assert text.startswith("in generation 0 the loss term") and "for all 3 chromosomes that trained" in text
    fix = float(re.search(r"set fitness.scale=([\d.]+)", text).group(1))
    assert fitness.loss_warning(CHANCE, dataclasses.replace(drowned, scale=fix)) is None
    critics = [(60.0, -3.0, "wgan-gp", 2_000_000), (45.0, 2.0, "wgan-gp", 4_000_000)]  # |L_D| far from 0
    assert "set fitness.scale=" in fitness.loss_warning(critics, config.load("v2").fitness)
    assert fitness.loss_warning(CHANCE, dataclasses.replace(drowned, kind="quality")) is None  # no loss term


# --- data, losses, wording ------------------------------------------------------------------------------------


def _images(folder: Path, n: int = 2) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(folder / f"{i}.png")


def test_a_root_one_level_above_the_image_folder_warns_and_names_the_likely_root(tmp_path):
    for c in ("cat", "dog", "owl"):
        _images(tmp_path / "data" / "train" / c)
    cfg = config.DataConfig(source="folder", root=str(tmp_path / "data"), image_size=8, cache_dir=str(tmp_path / "c"))
    images = data.load(cfg, progress=False)
    assert len(images.classes) == 1 and len(images.array) == 6
    [warning] = images.warnings
    assert "holds one class folder, train, which holds 3 folders (cat, dog, owl)" in warning
    assert warning.endswith(f"set data.root={tmp_path / 'data' / 'train'}")
    assert data.load(cfg, progress=False).warnings == images.warnings  # again from the cache
    right = data.load(dataclasses.replace(cfg, root=str(tmp_path / "data" / "train")), progress=False)
    assert len(right.classes) == 3 and right.warnings == ()
    _images(tmp_path / "one" / "faces" / "2025")  # a single class with sub-folders and images of its own
    _images(tmp_path / "one" / "faces" / "2026")
    _images(tmp_path / "one" / "faces" / "top")
    (tmp_path / "one" / "faces" / "top" / "0.png").rename(tmp_path / "one" / "faces" / "own.png")
    assert data.load(dataclasses.replace(cfg, root=str(tmp_path / "one")), progress=False).warnings == ()


def test_each_line_names_its_loss_where_the_run_mixes_losses():
    assert population.run_losses(config.load("v2")) == {"bce", "wgan-gp", "hinge"}
    assert population.run_losses(config.load("demo")) == {"bce"}
    assert population.run_losses(config.load("v2", ["space.losses=[hinge]", "space.label_smoothing=[false]"])) == \
        {"hinge"}
    assert population.run_losses(config.load("dcgan", ["space.losses=[hinge]", "space.label_smoothing=[false]"])) \
        == {"hinge", "bce"}  # the DCGAN seed trains with bce
    row = {"chromosome_id": "abc", "loss": "hinge", "status": "ok", "fitness": 0.5, "d_loss": 1.0, "g_loss": 0.5,
           "params_g": 10, "params_d": 20, "train_seconds": 1.0, "images_per_second": 100.0, "device": "cpu"}
    assert progress.task_line(0, 1, 4, row, name_loss=True).startswith("gen 0 [1/4] abc hinge fitness 0.5000")
    assert progress.task_line(0, 1, 4, row).startswith("gen 0 [1/4] abc fitness 0.5000")


@pytest.mark.parametrize("completed, logged", [(0, "no generation is logged yet"), (1, "generation 0 is logged"),
                                               (3, "generations 0-2 are logged")])
def test_a_stopped_run_says_what_is_logged_in_one_wording(tmp_path, capsys, completed, logged):
    fault = errors.FileSystemFault(f"{tmp_path / 'f'}: no space left on the device", tmp_path, completed)
    assert cli._stopped_by(fault) == 2
    assert f"stopped: {logged} in {tmp_path};" in capsys.readouterr().err
    interrupted = errors.Interrupted(2, tmp_path, completed)
    assert cli._interrupted(interrupted) == 130
    assert f"interrupted: {logged} in {tmp_path};" in capsys.readouterr().err


def test_every_config_key_has_a_docstring_whose_first_sentence_is_short():
    found = reference.sections()
    assert [s.name for s in found] == ["top level", "data", *(f"space ({n})" for n in registry.SECTIONS), "train",
                                       "fitness", "evolve", "resources", "quality", "tracking"]
    keys = [k.name for s in found for k in s.keys if not s.name.startswith("space")]
    assert keys == [k for k in config.flat(config.RunConfig()) if not k.startswith("space.")]  # every section's
    for space, section in zip(registry.SECTIONS.values(), found[2:]):
        assert [k.name for k in section.keys] == [f"space.{f.name}" for f in dataclasses.fields(space)]
    for section in found:
        assert reference.summary(section.doc), section.name
        for key in section.keys:
            first = reference.summary(key.doc)
            assert first.endswith(".") and len(first) <= 80, (key.name, first)  # --help shows it on one line


def test_the_configuration_reference_is_generated_from_the_docstrings():
    assert (REPO / "docs" / "configuration.md").read_text() == reference.reference_markdown(), \
        "docs/configuration.md is stale: regenerate it with `python -m neuroevo.config.reference`"
    text = reference.reference_markdown()
    for section in reference.sections():
        for key in section.keys:
            assert f"### `{key.name}`\n\n**Values:** {reference.allowed(key)}. **Default:** " \
                   f"`{reference.value(key.default)}`.\n\n{key.doc}\n" in text, key.name
    assert "**Values:** an integer in [4, 1024]. **Default:** `64`." in text  # data.image_size
    assert "**Values:** a non-empty list of `none`, `max`, `avg`. **Default:** `[none, max, avg]`." in text


# --- the CLI, as a user runs it -------------------------------------------------------------------------------


@pytest.mark.slow
def test_bare_neuroevo_prints_the_help_and_version_prints_the_version():
    bare = neuroevo()
    assert bare.returncode == 0 and bare.stdout.startswith("usage: neuroevo") and "run an evolution" in bare.stdout
    version = neuroevo("--version")
    assert version.returncode == 0 and re.fullmatch(r"neuroevo \d+\.\d+\.\d+\n", version.stdout)


@pytest.mark.slow
def test_run_help_lists_every_key_with_its_default_and_first_sentence():
    p = neuroevo("run", "--help")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert max(map(len, lines[lines.index("options:"):])) <= 110
    for section, key, default in ((config.EvolveConfig, "evolve.population", "10"),
                                  (config.DataConfig, "data.in_memory", "auto"),
                                  (config.SPACES["v2"], "space.max_flatten", "8192"),
                                  (config.TrainConfig, "train.compile", "'off'")):
        at = next(i for i, line in enumerate(lines) if line.startswith(f"  {key} = {default} "))
        rest = itertools.takewhile(lambda line: line.startswith(" " * 42), lines[at + 1:])  # the sentence, wrapped
        shown = " ".join(" ".join([lines[at][42:], *rest]).split())
        docstring = section.__pydantic_fields__[key.rpartition(".")[2]].description
        assert shown == " ".join(docstring.split("\n\n")[0].replace("`", "").split()), key  # its first sentence
    text = " ".join(p.stdout.split())
    assert "space (seed-v1): The search space seed-v1" in text and "space (v2): The search space v2" in text
    for section in ("top level", "data", "train", "fitness", "evolve", "resources", "quality", "tracking"):
        assert f"\n{section}: " in p.stdout, section
    assert "--resume RUN_DIR continue a stopped run, OUT_DIR/RUN_ID" in text
    helps = {"query": "RUN_DIR one or more runs' directories, each OUT_DIR/RUN_ID"}
    for command in ("best", "report", "sample", "score", "query"):
        expected = helps.get(command, "RUN_DIR a run's directory, OUT_DIR/RUN_ID")
        assert expected in " ".join(neuroevo(command, "--help").stdout.split()), command


@pytest.mark.slow
def test_an_enum_value_that_is_not_allowed_is_one_line_naming_the_allowed_values(tmp_path):
    p = neuroevo("run", "--set", "data.in_memory=maybe", "--set", f"out_dir={tmp_path}/runs", cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr == "neuroevo: error: data.in_memory: expected true, false or 'auto', got 'maybe'\n"


@pytest.mark.slow
def test_a_tiny_run_warns_before_and_after_generation_0_and_prints_the_next_commands(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_dict(fitness={"scale": 1e9, "lam": 0.001, "gamma": 0.999},
                                            evolve={"population": 2, "generations": 1, "elite_fraction": 0.5})))
    p = neuroevo("run", cfg, "--quiet", "--set", f"out_dir={tmp_path}/runs", "--set", "run_id=w", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    warnings = [line for line in p.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2, p.stderr
    assert warnings[0].startswith("warning: fitness.scale 1e+09 saturates the size term")
    assert warnings[1].startswith("warning: in generation 0 the loss term") and "set fitness.scale=" in warnings[1]
    out = p.stdout
    assert out.index("estimate: ") < out.index("gen 0: best")  # before the first task's result
    assert "estimate: about " in out and "generation 0's 2 chromosomes" in out
    run_dir = tmp_path / "runs" / "w"
    for command in (f"neuroevo best {run_dir}", f"neuroevo report {run_dir}", f"neuroevo query {run_dir}",
                    f"neuroevo sample {run_dir} --out grid.png"):
        assert command in out
