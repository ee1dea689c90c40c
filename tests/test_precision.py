"""bfloat16 autocast: which hardware gets it and why, that it really runs, and that it computes what float32 does."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import simclr_core.runtime as runtime
from simclr_core.model import SimCLRModel, embed_pairs
from simclr_core.runtime import choose_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("amx, avx512_bf16, expected", [
    (True, True, (True, "bf16: this CPU has AMX")),  # Intel Sapphire Rapids and later
    (False, True, (True, "bf16: this CPU has AVX512-BF16")),  # AMD Zen 4, Intel Cooper Lake
    (False, False, (False, "fp32: this CPU has no bf16 matrix instructions (neither AMX nor AVX512-BF16)")),
])
def test_auto_precision_per_cpu_capability(monkeypatch: pytest.MonkeyPatch, amx: bool, avx512_bf16: bool,
                                           expected: tuple[bool, str]) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert choose_precision("auto", CPU) == expected


@pytest.mark.parametrize("native, expected", [(True, True), (False, False)])
def test_auto_precision_on_cuda_follows_native_bf16(monkeypatch: pytest.MonkeyPatch, native: bool,
                                                    expected: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native)
    assert choose_precision("auto", torch.device("cuda"))[0] is expected


@pytest.mark.parametrize("speedup, expected", [(1.6, True), (1.05, False), (0.7, False)])
def test_auto_precision_on_mps_is_measured(monkeypatch: pytest.MonkeyPatch, speedup: float, expected: bool) -> None:
    monkeypatch.setattr(runtime, "bf16_speedup", lambda device: speedup)
    use, reason = choose_precision("auto", torch.device("mps"))
    assert use is expected and f"measured bf16 {speedup:.2f}x" in reason


def test_forced_precision_wins_over_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert choose_precision("fp32", CPU) == (False, "fp32: set by the precision option")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert choose_precision("bf16", CPU)[0]


def test_the_speedup_is_float32_seconds_over_bf16_seconds_of_a_real_step(monkeypatch: pytest.MonkeyPatch) -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    dtypes: list[torch.dtype] = []
    net[0].register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    assert runtime.probe_step_seconds(net, torch.randn(2, 3, 8, 8), True, repeats=1) > 0
    assert dtypes == [torch.bfloat16] * 2 and net[0].weight.grad is not None  # timed in bf16, backward included
    timings = {False: 3.0, True: 1.5}
    monkeypatch.setattr(runtime, "probe_step_seconds", lambda net, x, bf16, repeats: timings[bf16])
    assert runtime.bf16_speedup(CPU, repeats=1) == 2.0


def test_bf16_embeddings_stay_close_to_float32_and_convolutions_run_in_bf16() -> None:
    torch.manual_seed(0)
    model = SimCLRModel(width=16).eval()
    seen: list[torch.dtype] = []
    model.encoder.conv1.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    x1, x2 = torch.randn(2, 32, 3, 32, 32)
    with torch.no_grad():
        exact = embed_pairs(model, x1, x2, CPU, bf16=False)
        rounded = embed_pairs(model, x1, x2, CPU, bf16=True)
    assert seen == [torch.float32, torch.bfloat16]  # autocast really changed what the convolutions compute
    for a, b in zip(exact, rounded, strict=True):
        assert b.dtype == torch.float32  # the loss always sees float32
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
        assert cosine.min() > 0.99, cosine.min()  # bf16 keeps 8 bits of mantissa: close, not equal
        assert not torch.equal(a, b)


@pytest.mark.slow
def test_training_log_records_the_precision_used_and_why(cifar_train, cifar_test, tmp_path) -> None:
    from simclr_core.config import make_config
    from simclr_core.engine import train_ssl

    logs = {}
    for precision in ("fp32", "bf16"):
        cfg = make_config("smoke", data="cifar10", epochs=1, precision=precision)
        logs[precision] = train_ssl(cfg, str(tmp_path / precision), progress=False, train_set=cifar_train,
                                    eval_set=cifar_test)
        log = logs[precision]
        assert log["precision"] == precision and log["precision_reason"].startswith(precision)
        assert all(math.isfinite(loss) for loss in log["step_loss"])
    assert logs["fp32"]["step_loss"][0] != logs["bf16"]["step_loss"][0]  # the two really computed differently
