"""``--bf16 auto|on|off``: CPU detection and the mapping onto TRL/transformers (no model is loaded)."""

from __future__ import annotations

import pytest

from rl4rec.errors import ConfigError
from rl4rec.policy import precision
from rl4rec.policy.precision import cpu_flags, cpu_supports_bf16, resolve_bf16
from rl4rec.training.config import TrainConfig, parse_train_args
from rl4rec.training.trl_backend import trl_args

SAPPHIRE_RAPIDS = {"avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
ZEN4 = {"avx2", "avx512f", "avx512_bf16"}
SKYLAKE = {"avx2", "avx512f", "avx512bw"}
ARM = {"fp", "asimd"}


@pytest.mark.parametrize(
    ("flags", "native"), [(SAPPHIRE_RAPIDS, True), (ZEN4, True), ({"amx_bf16"}, True), (SKYLAKE, False), (ARM, False), (set(), False)]
)  # fmt: skip
def test_cpu_bf16_detection_from_flags(flags, native):
    assert cpu_supports_bf16(flags) is native


def test_cpu_flags_reads_this_machine():
    flags = cpu_flags()
    assert isinstance(flags, set)
    assert cpu_supports_bf16() is cpu_supports_bf16(flags)


def test_cpu_flags_falls_back_to_proc_cpuinfo(monkeypatch, tmp_path):
    import torch

    def unavailable():
        raise RuntimeError("no cpuinfo in this torch build")

    monkeypatch.setattr(torch.cpu, "get_capabilities", unavailable, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    monkeypatch.setattr(precision, "Path", lambda _: cpuinfo)
    assert {"avx512f", "avx512_bf16"} <= cpu_flags()
    assert cpu_supports_bf16()


@pytest.mark.parametrize(
    ("setting", "device", "flags", "expected"),
    [("on", "cpu", SKYLAKE, True), ("off", "cpu", SAPPHIRE_RAPIDS, False), ("auto", "cpu", SAPPHIRE_RAPIDS, True),
     ("auto", "cpu", ZEN4, True), ("auto", "cpu", SKYLAKE, False), ("auto", "cpu", ARM, False)],
)  # fmt: skip
def test_resolve_bf16(setting, device, flags, expected):
    assert resolve_bf16(setting, device, flags) is expected


def test_auto_on_cuda_follows_the_gpu(monkeypatch):
    monkeypatch.setattr(precision, "cuda_supports_bf16", lambda: True)
    assert resolve_bf16("auto", "cuda:1", set()) is True
    monkeypatch.setattr(precision, "cuda_supports_bf16", lambda: False)
    assert resolve_bf16("auto", "cuda", SAPPHIRE_RAPIDS) is False


def test_bad_setting():
    with pytest.raises(ConfigError, match="--bf16"):
        resolve_bf16("yes", "cpu", set())
    with pytest.raises(ConfigError, match="--bf16 must be one of auto, on, off"):
        TrainConfig(bf16="fp16").validate()


def test_default_is_auto():
    assert TrainConfig().bf16 == "auto"
    assert parse_train_args(["--device", "cpu"]).bf16 == "auto"


@pytest.mark.parametrize("setting", ["on", "off"])
def test_flag_maps_to_trl_bf16_with_use_cpu(setting):
    # transformers accepts bf16=True on a CPU only together with use_cpu=True (accelerate then autocasts).
    args = trl_args(parse_train_args(["--device", "cpu", "--bf16", setting]), "cpu")
    assert args.use_cpu is True
    assert args.bf16 is (setting == "on")
    assert args.mixed_precision == ("bf16" if setting == "on" else "no")


def test_auto_maps_to_what_this_cpu_supports(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: set(SAPPHIRE_RAPIDS))
    assert trl_args(TrainConfig(device="cpu"), "cpu").bf16 is True
    monkeypatch.setattr(precision, "cpu_flags", lambda: set(SKYLAKE))
    assert trl_args(TrainConfig(device="cpu"), "cpu").bf16 is False


def test_without_autocast_runs_the_original_forward_and_restores_the_wrapper():
    """accelerate's `prepare` with bf16 wraps `forward` in autocast and keeps the original as `_original_forward`
    (accelerate/accelerator.py, `prepare_model`); the held-out curve must generate through the original."""
    from types import MethodType

    import torch

    from rl4rec.policy.precision import without_autocast

    torch.manual_seed(0)
    model = torch.nn.Linear(64, 64)
    x = torch.randn(4, 64)
    plain = model(x)
    model._original_forward = model.forward
    model.forward = MethodType(torch.autocast("cpu", dtype=torch.bfloat16)(model.forward.__func__), model)
    wrapped = model.forward
    assert model(x).dtype == torch.bfloat16  # the training's precision
    with without_autocast(model) as same:
        assert same is model
        out = model(x)
        assert out.dtype == torch.float32 and torch.equal(out, plain)
    assert model.forward is wrapped and model(x).dtype == torch.bfloat16  # training keeps its autocast
    bare = torch.nn.Linear(2, 2)  # a model accelerate never wrapped passes through untouched
    with without_autocast(bare):
        assert "forward" not in vars(bare)
