"""The optimizers and the learning-rate schedule: LARS's layer-wise scaling, the parameter groups, warm-up."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simclr_core.model import SimCLRModel
from simclr_core.optim import LARS, lr_factor, make_optimizer, split_decay_groups


def test_lars_step_matches_the_formula_by_hand() -> None:
    weight = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    bias = nn.Parameter(torch.tensor([1.0]))
    weight.grad, bias.grad = torch.tensor([0.6, 0.8]), torch.tensor([0.5])  # ||g|| = 1
    optimizer = LARS([{"params": [weight], "weight_decay": 0.0, "adapt": True},
                      {"params": [bias], "weight_decay": 0.0, "adapt": False}], lr=2.0, momentum=0.9, trust=1e-3)
    optimizer.step()
    # adapted: the step is lr * trust * ||w|| / ||g|| * g = 2 * 0.005 * g; plain: lr * g
    torch.testing.assert_close(weight.detach(), torch.tensor([3.0 - 0.006, 4.0 - 0.008]))
    torch.testing.assert_close(bias.detach(), torch.tensor([0.0]))
    optimizer.step()  # momentum: velocity = 0.9 * previous + new
    torch.testing.assert_close(bias.detach(), torch.tensor([-1.0 - 0.9 * 1.0]))


def test_lars_step_size_ignores_the_gradient_scale() -> None:
    """The point of LARS: a layer whose gradient is 1000x larger moves by the same amount."""
    steps = []
    for scale in (1.0, 1000.0):
        torch.manual_seed(0)
        layer = nn.Linear(8, 8, bias=False)
        before = layer.weight.detach().clone()
        layer.weight.grad = scale * torch.randn(8, 8)
        LARS(layer.parameters(), lr=1.0).step()
        steps.append(layer.weight.detach() - before)
    torch.testing.assert_close(steps[0], steps[1])
    assert steps[0].norm() / before.norm() == pytest.approx(1e-3, rel=1e-4)


def test_weight_decay_skips_biases_and_batchnorm() -> None:
    model = SimCLRModel(width=8)
    decayed, plain = split_decay_groups(model, 1e-6)
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert (decayed["weight_decay"], plain["weight_decay"]) == (1e-6, 0.0)
    for name in ("adamw", "sgd", "lars"):
        optimizer = make_optimizer(model, name, lr=0.1, weight_decay=1e-6, momentum=0.9)
        assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_warmup_then_cosine() -> None:
    factors = [lr_factor(step, total_steps=100, warmup_steps=10, schedule="cosine") for step in range(100)]
    assert factors[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert factors[10] == 1.0 and factors[55] == pytest.approx(0.5) and factors[-1] < 1e-3
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    # without warm-up it is the plain half cosine over the whole run
    assert lr_factor(25, 100, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(50, 100, 10, "constant") == 1.0


def test_lars_run_warms_up_then_decays_and_learns(cifar_train, cifar_test, tmp_path) -> None:
    from simclr_core.config import make_config
    from simclr_core.engine import train_ssl

    cfg = make_config("smoke", data="cifar10", optimizer="lars", lr=0.6, weight_decay=1e-6, warmup_epochs=1,
                      lr_schedule="cosine", epochs=4)
    log = train_ssl(cfg, str(tmp_path), progress=False, train_set=cifar_train, eval_set=cifar_test)
    steps = len(cifar_train) // cfg.batch_size
    lrs = [epoch["lr"] for epoch in log["epochs"]]  # the rate the next step would use
    assert lrs[0] == pytest.approx(0.6) and lrs[1] == pytest.approx(0.6 * lr_factor(2 * steps, 4 * steps, steps,
                                                                                       "cosine"))
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0.0, abs=1e-9)
    losses = [epoch["loss"] for epoch in log["epochs"]]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0] - 0.1, losses
