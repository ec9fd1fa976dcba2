import pytest

from neuroevo import config
from neuroevo.errors import ConfigError


@pytest.mark.parametrize("preset", config.PRESETS)
def test_presets_load(preset):
    cfg = config.load(preset)
    assert cfg.space.name == ("v2" if preset in ("v2", "dcgan") else "seed-v1")


def test_cifar_presets_are_the_reference_experiment():
    for preset, source in (("cifar10", "cifar10"), ("cifar100", "cifar100")):
        cfg = config.load(preset)
        assert cfg.data.source == source and cfg.data.image_size == 64
        assert (cfg.evolve.population, cfg.evolve.generations, cfg.train.epochs) == (10, 20, 10)
        assert cfg.space.lr == (1e-5, 1e-4) and cfg.space.momentum == (0.05, 0.9)
        assert cfg.space.channels == (5, 300) and cfg.space.kernel == (3, 5) and cfg.space.d_hidden == (30, 1200)
        assert cfg.space.batch_size == 64 and cfg.fitness.scale == 5e6
        assert (cfg.fitness.lam, cfg.fitness.gamma) == (0.75, 0.25)
    assert config.load("cifar10") == config.from_dict({})  # the defaults are the CIFAR-10 reference run


def test_each_preset_names_only_what_it_changes_from_the_defaults():
    for preset in config.PRESETS:
        written = _keys(config.parse_yaml(config.preset_path(preset).read_text(), preset))
        cfg = config.load(preset)
        defaults = config.flat(config.from_dict({"space": {"name": cfg.space.name}}))  # of the preset's own space
        changed = {k for k, v in config.flat(cfg).items() if v != defaults[k]}
        assert written - changed <= {"data.source", "space.name"}, (preset, written - changed)  # said for the reader
    assert config.load("cifar10") == config.RunConfig()
    assert config.load("cifar100") == config.RunConfig(data=config.DataConfig(source="cifar100"))
    assert config.load("v2") == config.RunConfig(space=config.SPACES["v2"]())
    assert config.load("dcgan") == config.override(config.load("v2"), ["evolve.strategy=mutation",
                                                                        "evolve.seed_chromosomes=[dcgan,dcgan_sn]"])


def _keys(d: dict, prefix: str = "") -> set[str]:
    """The keys a YAML mapping names, as --set writes them."""
    return {k for key, v in d.items() for k in (_keys(v, f"{prefix}{key}.") if isinstance(v, dict) else [prefix + key])}


def test_imagenet_preset():
    cfg = config.load("imagenet")
    assert cfg.data.image_size == 200
    assert (cfg.evolve.population, cfg.evolve.generations, cfg.train.epochs) == (30, 200, 50)
    assert cfg.fitness.scale == 5e7


def test_overrides_are_typed_and_nested():
    cfg = config.load("demo", ["evolve.population=5", "space.channels=[5, 9]", "data.subset=null", "seed=3"])
    assert cfg.evolve.population == 5
    assert cfg.space.channels == (5, 9)
    assert cfg.data.subset is None
    assert cfg.seed == 3


def test_yaml_round_trip(tmp_path):
    cfg = config.load("demo", ["seed=11"])
    path = tmp_path / "c.yaml"
    path.write_text(config.to_yaml(cfg))
    assert config.load(str(path)) == cfg


@pytest.mark.parametrize("overrides, message", [
    (["evolve.populaton=4"], "evolve.populaton: unknown key (did you mean evolve.population?)"),
    (["evolve.population=0"], "evolve.population: input should be greater than or equal to 1 (got 0)"),
    (["evolve.elite_fraction=1.5"], "evolve.elite_fraction: input should be less than 1 (got 1.5)"),
    (["space.channels=[9, 5]"], "space.channels: min 9 is greater than max 5"),
    (["fitness.lam=0.5"], "fitness.lam + fitness.gamma: must equal 1 (got 0.5 + 0.25)"),
    (["data.source=mnist"], "data.source: expected 'demo', 'cifar10', 'cifar100', 'imagenet' or 'folder', got 'mnist'"),
    # a union of a Literal and another type: every value it allows, not pydantic's member names
    (["data.in_memory=maybe"], "data.in_memory: expected true, false or 'auto', got 'maybe'"),
    (["quality.samples=0"], "quality.samples: expected a whole number >= 1 or 'auto', got 0"),
    (["train.bf16=fast"], "train.bf16: expected 'auto', 'on' or 'off', got 'fast'"),
    (["data.source=true"], "data.source: expected 'demo', 'cifar10', 'cifar100', 'imagenet' or 'folder', got true"),
    (["evolve.seed_chromosomes=[dcgen]"], "evolve.seed_chromosomes.0: expected 'dcgan' or 'dcgan_sn', got 'dcgen'"),
    (["space.g_blocks=[3, 5]"], "space.g_blocks: [3, 5] blocks cannot grow a 9px noise to 16px with kernels [3, 5] (needs 1 to 2 blocks)"),
    (["data.subset=10"], "data.subset: 10 images is fewer than one batch"),
    (["evolve"], "--set evolve: expected key=value"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        config.load("demo", overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such config file or preset"):
        config.load(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("evolve: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(str(bad))
