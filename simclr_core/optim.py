"""How the weights move: the optimizer (AdamW as the seed, SGD or LARS as large-batch SimCLR runs) and the
learning-rate schedule (optional linear warm-up, then constant, cosine decay, or warm-up-stable-decay)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose update of each weight tensor is rescaled to `trust * ||w|| / ||grad||`
    (You et al., 2017), so every layer moves by a similar fraction of its own size whatever its gradient's
    scale. SimCLR uses it for batches of 512 and more, where one global learning rate is either too slow for
    some layers or unstable for others. Parameter groups with `adapt=False` (biases, BatchNorm, see
    `split_decay_groups`) take plain SGD steps, as in the SimCLR paper."""

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust,
                                      adapt=True))

    @torch.no_grad()
    def step(self, closure: None = None) -> None:
        for group in self.param_groups:
            for weight in group["params"]:
                if weight.grad is None:
                    continue
                update = weight.grad.add(weight, alpha=group["weight_decay"])
                if group["adapt"]:
                    weight_norm, update_norm = torch.linalg.vector_norm(weight), torch.linalg.vector_norm(update)
                    ratio = torch.where((weight_norm > 0) & (update_norm > 0),
                                        group["trust"] * weight_norm / update_norm, 1.0)
                    update = update * ratio
                velocity = self.state[weight].setdefault("velocity", torch.zeros_like(weight))
                velocity.mul_(group["momentum"]).add_(update)
                weight.add_(velocity, alpha=-group["lr"])


def split_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weights (conv and linear matrices) get weight decay and LARS scaling; biases and BatchNorm
    parameters (1-d tensors) get neither: shrinking a BatchNorm scale only fights the normalisation."""
    matrices = [p for p in model.parameters() if p.ndim > 1]
    vectors = [p for p in model.parameters() if p.ndim <= 1]
    return [{"params": matrices, "weight_decay": weight_decay, "adapt": True},
            {"params": vectors, "weight_decay": 0.0, "adapt": False}]


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float,
                   momentum: float) -> torch.optim.Optimizer:
    """"adamw" is the seed's (weight decay on every parameter); "sgd" and "lars" exclude biases and norms."""
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    groups = split_decay_groups(model, weight_decay)
    if name == "sgd":
        for group in groups:
            group.pop("adapt")
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    return LARS(groups, lr=lr, momentum=momentum)


DECAY_SHARE = 0.2  # the last share of a "wsd" run's steps, where its learning rate decays linearly to 0


def decay_start(total_steps: int) -> int:
    """The first step of a "wsd" run's decay. Before it, a run of any length takes the same steps at the same
    rate, so one long run stopped at step `decay_start(n)` and decayed from there is the run of n steps."""
    return total_steps - round(DECAY_SHARE * total_steps)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """The share of the base learning rate used at `step` (0-based): linear warm-up from 1/warmup_steps to 1,
    then 1 ("constant"), a half cosine from 1 to 0 over the remaining steps ("cosine"), or 1 until
    `decay_start` and a straight line to 0 over the last `DECAY_SHARE` of the run ("wsd": warm-up, stable,
    decay)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "wsd":
        start = decay_start(total_steps)
        return 1.0 if step < start else (total_steps - step) / (total_steps - start)
    return 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / max(1, total_steps - warmup_steps)))
