"""Device choice, seeding, and global BatchNorm in a single process: the parts of a run that no training
test pins down, because a wrong answer still trains."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from simclr_core import runtime
from simclr_core.batch_augment import two_view_loader
from simclr_core.config import make_config
from simclr_core.data import ImageSet
from simclr_core.distributed import GlobalBatchNorm2d, use_global_batch_norm
from simclr_core.model import SimCLRModel
from simclr_core.runtime import pick_device, seed_everything


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"),
                                                 (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool,
                                             expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device("auto") == torch.device(expected)
    assert pick_device("cpu") == torch.device("cpu")  # a named device is taken as given, whatever is there
    assert pick_device("cuda:1") == torch.device("cuda", 1)


def _synthetic_images(n: int = 32) -> ImageSet:
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    return ImageSet(images, torch.arange(n) % 10, [str(c) for c in range(10)])


def _start_of_run(seed: int) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor], float, float]:
    """What a run starts from, built as train_ssl builds it: initial weights, first batch, host draws."""
    cfg = make_config("smoke", data="cifar10", batch_size=8, seed=seed)
    seed_everything(cfg.seed)
    weights = SimCLRModel(cfg.width, cfg.proj_dim).state_dict()
    host_draws = random.random(), float(np.random.rand())
    loader = two_view_loader(_synthetic_images(), cfg, shuffle=True, seed=cfg.seed, device=torch.device("cpu"))
    return weights, next(iter(loader)), *host_draws


def test_same_seed_same_start_and_different_seed_different_start() -> None:
    weights, (x1, x2), py, npy = _start_of_run(3)
    torch.manual_seed(12345)  # whatever ran before must not matter
    random.seed(12345)
    np.random.seed(12345)
    again_weights, (y1, y2), again_py, again_npy = _start_of_run(3)
    assert all(torch.equal(weights[name], again_weights[name]) for name in weights)
    assert torch.equal(x1, y1) and torch.equal(x2, y2) and (py, npy) == (again_py, again_npy)

    other_weights, (z1, z2), other_py, other_npy = _start_of_run(4)
    assert not torch.equal(weights["encoder.conv1.weight"], other_weights["encoder.conv1.weight"])
    assert not torch.equal(x1, z1) and not torch.equal(x2, z2) and py != other_py and npy != other_npy


def test_global_batch_norm_alone_normalises_with_the_batch_and_tracks_running_statistics() -> None:
    """One process: the batch's own statistics in training, the running ones in evaluation."""
    norm = GlobalBatchNorm2d(2)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([2.0, 1.0]))
        norm.bias.copy_(torch.tensor([0.0, 1.0]))
    # channel 0 holds 1, 3 (mean 2, biased variance 1, unbiased 2); channel 1 holds 4, 4 (mean 4, variance 0)
    x = torch.tensor([[[[1.0]], [[4.0]]], [[[3.0]], [[4.0]]]])
    out = norm(x)
    torch.testing.assert_close(out[:, 0].flatten(), torch.tensor([-2.0, 2.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, 1].flatten(), torch.tensor([1.0, 1.0]))
    # running = 0.9 * initial + 0.1 * batch, with the unbiased variance
    torch.testing.assert_close(norm.running_mean, torch.tensor([0.2, 0.4]))
    torch.testing.assert_close(norm.running_var, torch.tensor([0.9 + 0.2, 0.9]))
    assert int(norm.num_batches_tracked) == 1

    norm.eval()
    before = norm.running_mean.clone()
    expected = (torch.tensor([1.0, 4.0]) - torch.tensor([0.2, 0.4])) / torch.tensor([1.1, 0.9]).add(1e-5).sqrt()
    expected = expected * torch.tensor([2.0, 1.0]) + torch.tensor([0.0, 1.0])
    torch.testing.assert_close(norm(x[:1]).flatten(), expected)
    assert torch.equal(norm.running_mean, before)  # evaluation leaves the statistics alone


def test_use_global_batch_norm_keeps_parameters_and_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()))
    model(torch.randn(8, 3, 6, 6))  # gives the BatchNorm non-trivial running statistics
    with torch.no_grad():
        model[1][0].weight.uniform_(0.5, 1.5)
    model.eval()
    probe = torch.randn(2, 3, 6, 6)
    expected = model(probe)
    state = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    converted = use_global_batch_norm(model)
    assert type(converted[1][0]) is GlobalBatchNorm2d
    assert all(torch.equal(state[name], tensor) for name, tensor in converted.state_dict().items())
    torch.testing.assert_close(converted(probe), expected)


def test_bf16_units_are_read_from_cpuinfo_when_torch_has_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cpu's feature probes are private: without them the CPU's flags decide, with the same answer."""
    with_probes = runtime.cpu_bf16_units()
    for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        monkeypatch.delattr(torch.cpu, probe, raising=False)
    if runtime._cpu_flags():  # Linux
        assert runtime.cpu_bf16_units() == with_probes
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx512f", "amx_tile"})
    assert runtime.cpu_bf16_units() == "AMX"
    monkeypatch.setattr(runtime, "_cpu_flags", set)
    assert runtime.cpu_bf16_units() == "none"
