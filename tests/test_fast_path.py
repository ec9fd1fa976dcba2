"""The GPU fast path's switches: what each device gets, and that the CPU trains exactly as without them."""

import numpy as np
import pytest
import torch

from neuroevo import config, errors
from neuroevo.space import registry
from neuroevo.train import data, fastpath, model, trainer
from neuroevo.train.fastpath import Device, FastPathSwitches
from tests.conftest import tiny_config

SWITCHES = ("bf16", "channels_last", "data_on_gpu", "cudnn_benchmark", "compile")
GIB = 2**30
AMPERE = Device("cuda", "an Ampere GPU", bf16=True, bf16_emulated=True, free_bytes=40 * GIB, triton=True)
VOLTA = Device("cuda", "a Volta GPU", bf16=False, bf16_emulated=True, free_bytes=16 * GIB, triton=False)


def _train_cfg(value: str, **others):
    return tiny_config(train={"epochs": 2, "steps_per_epoch": 3, **{k: value for k in SWITCHES}, **others}).train


@pytest.mark.parametrize("value", ["auto", "on", "off"])
def test_the_cpu_gets_no_fast_path_whatever_the_switches(value):
    assert fastpath.switches(_train_cfg(value), fastpath.CPU, data_bytes=1000) == FastPathSwitches()
    assert fastpath.probe("cpu") == fastpath.CPU


def test_a_gpu_gets_what_it_supports():
    defaults = config.TrainConfig()
    cifar64 = 50_000 * 3 * 64 * 64  # 614 MB of uint8
    assert fastpath.switches(defaults, AMPERE, cifar64) == FastPathSwitches(True, True, True, True, compile=False)
    assert fastpath.switches(_train_cfg("auto"), AMPERE, cifar64).compile
    assert fastpath.switches(_train_cfg("off"), AMPERE, cifar64) == FastPathSwitches()
    # an older GPU: no native bf16 under auto, emulated bf16 only when asked for; no Triton, so no compile
    assert fastpath.switches(_train_cfg("auto"), VOLTA, cifar64) == FastPathSwitches(False, True, True, True, False)
    assert fastpath.switches(_train_cfg("on"), VOLTA, cifar64) == FastPathSwitches(True, True, True, True, False)
    # images on the GPU: auto when they take a quarter of its free memory at most, on when they fit at all
    assert not fastpath.switches(defaults, VOLTA, 5 * GIB).data_on_gpu
    assert fastpath.switches(_train_cfg("on"), VOLTA, 5 * GIB).data_on_gpu
    assert not fastpath.switches(_train_cfg("on"), VOLTA, 15 * GIB).data_on_gpu


def test_switches_read_on_off_from_yaml_and_reject_anything_else():
    cfg = config.from_dict({"train": {"bf16": False, "compile": True, "data_on_gpu": "auto"}})
    assert (cfg.train.bf16, cfg.train.compile, cfg.train.data_on_gpu) == ("off", "on", "auto")
    with pytest.raises(errors.ConfigError, match=r"^train.channels_last: expected 'auto', 'on' or 'off', got"):
        config.from_dict({"train": {"channels_last": "fast"}})


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config()
    images = data.load(cfg.data, seed=0).array
    ch, _ = registry.sample(cfg.space, 12, 3, np.random.default_rng(3))
    return images, ch


def test_cpu_training_is_bit_identical_with_every_switch_on(setup):
    images, ch = setup
    off, _, _, _ = trainer.train(ch, images, _train_cfg("off"), seed=4)
    on, _, _, _ = trainer.train(ch, images, _train_cfg("on"), seed=4)
    assert (on.d_losses, on.g_losses) == (off.d_losses, off.g_losses)
    assert on.status == "ok" and on.device == "cpu"


def test_cpu_training_makes_no_gpu_or_bf16_call(setup, monkeypatch):
    images, ch = setup

    def gpu_only(*args, **kwargs):
        raise AssertionError("a GPU-only call on the CPU")

    for name in ("mem_get_info", "get_device_name", "get_device_capability", "is_bf16_supported", "synchronize"):
        monkeypatch.setattr(torch.cuda, name, gpu_only)
    monkeypatch.setattr(torch, "compile", gpu_only)
    monkeypatch.setattr(torch, "autocast", gpu_only)
    benchmark = torch.backends.cudnn.benchmark
    seen = []

    def record(module, inputs, output):
        out = output[1] if isinstance(output, tuple) else output  # D: (features, score)
        seen.append((torch.is_autocast_enabled("cuda"), torch.is_autocast_enabled("cpu"), out.dtype,
                     inputs[0].is_contiguous()))

    def build_and_watch(c):
        G, D = model.build(c)
        G.register_forward_hook(record)
        D.register_forward_hook(record)
        return G, D

    monkeypatch.setattr(trainer, "build", build_and_watch)
    result, G, D, _ = trainer.train(ch, images, _train_cfg("on"), seed=4)
    assert result.status == "ok"
    assert seen and all(s == (False, False, torch.float32, True) for s in seen)
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in [*G.parameters(), *D.parameters()])
    assert torch.backends.cudnn.benchmark == benchmark


def test_resident_batches_equal_host_batches(setup):
    """The GPU data path (images resident as uint8, indices sorted on the device) yields the host path's
    batches; run here on the CPU, where both paths can be compared."""
    images, _ = setup
    cpu = torch.device("cpu")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    host = list(trainer.Batches(images, cpu, FastPathSwitches()).epoch(order, 32))
    resident = trainer.Batches(images, cpu, FastPathSwitches(data_on_gpu=True))
    assert resident.resident is not None
    assert len(host) == len(images) // 32
    for a, b in zip(host, resident.epoch(order, 32)):
        assert torch.equal(a, b) and a.shape == (32, 3, 12, 12) and a.min() >= -1 and a.max() <= 1


def test_channels_last_layout_and_placement():
    fp = FastPathSwitches(channels_last=True)
    x = fp.layout(torch.zeros(2, 3, 8, 8))
    assert x.is_contiguous(memory_format=torch.channels_last)
    conv = fastpath.place(torch.nn.Conv2d(3, 4, 3), torch.device("cpu"), fp)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert FastPathSwitches().layout(x) is x and fp.describe() == "channels_last" and FastPathSwitches().describe() == ""
