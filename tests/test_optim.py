"""The optimizers and the learning-rate schedule: LARS's layer-wise scaling, the parameter groups, warm-up."""

from __future__ import annotations

import math
from collections import OrderedDict

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


def _tiny_model() -> nn.Module:
    """Every kind of parameter the split must sort: conv and linear weights and biases, BatchNorm scale and shift."""
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), bn=nn.BatchNorm2d(4), pool=nn.AdaptiveAvgPool2d(1),
                                     flat=nn.Flatten(), fc=nn.Linear(4, 2)))


def _names(model: nn.Module, params: list[nn.Parameter]) -> set[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_weight_decay_goes_to_conv_and_linear_weights_only() -> None:
    model = _tiny_model()
    decayed, plain = split_decay_groups(model, 1e-6)
    assert _names(model, decayed["params"]) == {"conv.weight", "fc.weight"}
    assert _names(model, plain["params"]) == {"conv.bias", "bn.weight", "bn.bias", "fc.bias"}
    assert (decayed["weight_decay"], decayed["adapt"]) == (1e-6, True)
    assert (plain["weight_decay"], plain["adapt"]) == (0.0, False)


def test_weight_decay_split_of_the_simclr_model_follows_the_module_kinds() -> None:
    """Sorted by what each parameter belongs to (not by its shape, as the implementation does)."""
    model = SimCLRModel(width=8)
    should_decay, should_not = set(), set()
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}"
            decays = isinstance(module, (nn.Conv2d, nn.Linear)) and name == "weight"
            assert decays or isinstance(module, (nn.Conv2d, nn.Linear, nn.BatchNorm2d)), full
            (should_decay if decays else should_not).add(full)
    decayed, plain = split_decay_groups(model, 1e-6)
    assert _names(model, decayed["params"]) == should_decay and _names(model, plain["params"]) == should_not
    assert "encoder.bn1.weight" in should_not and "head.net.0.weight" in should_decay  # the rule is not vacuous


@pytest.mark.parametrize("name, kind, decays", [
    ("adamw", torch.optim.AdamW, [0.1]),  # the seed's: one group, decay on every parameter
    ("sgd", torch.optim.SGD, [0.1, 0.0]),
    ("lars", LARS, [0.1, 0.0]),
])
def test_make_optimizer_builds_the_named_optimizer_with_its_groups(name: str, kind: type, decays: list[float]) -> None:
    model = _tiny_model()
    optimizer = make_optimizer(model, name, lr=0.05, weight_decay=0.1, momentum=0.8)
    assert type(optimizer) is kind
    assert [g["weight_decay"] for g in optimizer.param_groups] == decays
    assert all(g["lr"] == 0.05 for g in optimizer.param_groups)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    if name == "adamw":
        return
    assert _names(model, optimizer.param_groups[0]["params"]) == {"conv.weight", "fc.weight"}
    assert all(g["momentum"] == 0.8 for g in optimizer.param_groups)
    if name == "sgd":
        assert all(g["nesterov"] for g in optimizer.param_groups)
    else:
        assert [g["adapt"] for g in optimizer.param_groups] == [True, False]


def test_sgd_takes_nesterov_steps() -> None:
    """Nesterov's first step is lr * (1 + momentum) * d (plain momentum SGD: lr * d), d = grad + wd * w."""
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[3.0, 4.0]]))
        model.bias.copy_(torch.tensor([1.0]))
    model.weight.grad, model.bias.grad = torch.tensor([[0.6, 0.8]]), torch.tensor([0.5])
    make_optimizer(model, "sgd", lr=0.1, weight_decay=0.1, momentum=0.9).step()
    # weight: d = [0.6 + 0.3, 0.8 + 0.4] = [0.9, 1.2], step 0.1 * 1.9 * d; bias: no decay, step 0.1 * 1.9 * 0.5
    torch.testing.assert_close(model.weight.detach(), torch.tensor([[3.0 - 0.171, 4.0 - 0.228]]))
    torch.testing.assert_close(model.bias.detach(), torch.tensor([1.0 - 0.095]))


def test_lars_with_weight_decay_adapts_the_decayed_update() -> None:
    weight = nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    weight.grad = torch.tensor([0.8, -0.6])  # orthogonal to w, so decay changes the direction of the step
    LARS([weight], lr=2.0, momentum=0.9, weight_decay=0.5, trust=1e-3).step()
    # u = g + 0.5 w = [2.3, 1.4], ||u|| = sqrt(7.25); step = lr * trust * ||w|| / ||u|| * u
    step = 2.0 * 1e-3 * 5 / math.sqrt(7.25)
    torch.testing.assert_close(weight.detach(), torch.tensor([3.0 - step * 2.3, 4.0 - step * 1.4]))


def test_lars_zero_norm_guard() -> None:
    """A zero weight (e.g. a zero-initialised layer) takes a plain SGD step instead of never moving; a zero
    gradient leaves the weight as it is instead of turning it into NaN."""
    zero_weight = nn.Parameter(torch.zeros(2))
    zero_weight.grad = torch.tensor([0.6, 0.8])
    resting = nn.Parameter(torch.tensor([3.0, 4.0]))
    resting.grad = torch.zeros(2)
    LARS([zero_weight, resting], lr=0.5, momentum=0.9).step()
    torch.testing.assert_close(zero_weight.detach(), torch.tensor([-0.3, -0.4]))
    torch.testing.assert_close(resting.detach(), torch.tensor([3.0, 4.0]))


def test_warmup_then_cosine() -> None:
    factors = [lr_factor(step, total_steps=100, warmup_steps=10, schedule="cosine") for step in range(100)]
    assert factors[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert factors[10] == 1.0 and factors[55] == pytest.approx(0.5) and factors[-1] < 1e-3
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    # without warm-up it is the plain half cosine over the whole run
    assert lr_factor(25, 100, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(50, 100, 10, "constant") == 1.0


@pytest.mark.slow
def test_lars_run_warms_up_then_decays_and_learns(cifar_train, cifar_test, tmp_path) -> None:
    from simclr_core.config import make_config
    from simclr_core.engine import train_ssl

    cfg = make_config("smoke", data="cifar10", optimizer="lars", lr=0.6, weight_decay=1e-6, warmup_epochs=1,
                      lr_schedule="cosine", epochs=4)
    log = train_ssl(cfg, str(tmp_path), progress=False, train_set=cifar_train, eval_set=cifar_test)
    steps = len(cifar_train) // cfg.batch_size
    lrs = [epoch["lr"] for epoch in log["epochs"]]  # the rate the next step would use
    assert steps == 6
    # after epoch e the next step is 6 e; warm-up is steps 0-5, then a half cosine over the 18 steps left:
    # epoch 1 ends at the peak, then 0.5 * (1 + cos(pi * 6 / 18)) = 0.75, 0.5 * (1 + cos(2 pi / 3)) = 0.25, 0
    assert lrs == pytest.approx([0.6, 0.45, 0.15, 0.0], abs=1e-9)
    losses = [epoch["loss"] for epoch in log["epochs"]]
    assert all(math.isfinite(loss) for loss in losses) and losses[-1] < losses[0] - 0.1, losses
