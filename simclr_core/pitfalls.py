"""Ways to get SimCLR slightly wrong, each the correct code with one thing changed (bench/pretraining.py measures
their cost).

The mistakes are the ones users of public SimCLR code report most. Two of them are
legitimate choices elsewhere and are config fields (`stem="imagenet"`, `head`); these are not, so no config field
or command-line flag selects them: the book and bench/pretraining.py import them, pass them to `train_ssl` (its
`build` and `make_loss` arguments) or call them in place of the probe's functions, and tests/test_pitfalls.py
proves that each differs from the correct path in exactly the way its name says.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed
from .augment import normalize
from .config import Config
from .data import ImageSet
from .engine import LossFunction
from .loss import contrastive_loss, nt_xent
from .model import SimCLRModel, build_model, memory_format
from .probe import encode


def logits_targets_unmasked(z1: torch.Tensor, z2: torch.Tensor,
                            temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`loss.simclr_logits_targets` without its mask: every view is a candidate for its own partner, and the
    most similar one (itself, similarity 1)."""
    z = torch.cat([z1, z2], dim=0)
    n, b = z.shape[0], z1.shape[0]
    logits = z @ z.T / temperature  # the diagonal is left in
    return logits, (torch.arange(n, device=z.device) + b) % n


def logits_targets_off_by_one(z1: torch.Tensor, z2: torch.Tensor,
                              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`loss.simclr_logits_targets` with the positive's index one too far: each view is told that a view of
    the *next* image in the batch is its partner."""
    z = torch.cat([z1, z2], dim=0)
    n, b = z.shape[0], z1.shape[0]
    logits = (z @ z.T).masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf")) / temperature
    return logits, (torch.arange(n, device=z.device) + b + 1) % n


def unmasked_loss(cfg: Config, world: distributed.Distributed) -> LossFunction:
    """A `make_loss` for `train_ssl`: NT-Xent from `logits_targets_unmasked` (one process)."""
    return lambda z1, z2: contrastive_loss(*logits_targets_unmasked(z1, z2, cfg.temperature))


def off_by_one_loss(cfg: Config, world: distributed.Distributed) -> LossFunction:
    """A `make_loss` for `train_ssl`: NT-Xent from `logits_targets_off_by_one` (one process)."""
    return lambda z1, z2: contrastive_loss(*logits_targets_off_by_one(z1, z2, cfg.temperature))


def local_loss(cfg: Config, world: distributed.Distributed) -> LossFunction:
    """A `make_loss` for `train_ssl` under torchrun: NT-Xent over this process's own images only, the other
    processes' embeddings never gathered: each view sees 2B/N - 2 negatives instead of 2B - 2."""
    return lambda z1, z2: nt_xent(z1, z2, cfg.temperature)


class UnnormalisedSimCLR(SimCLRModel):
    """`SimCLRModel` without the final `normalize`: the loss sees dot products g(f(x_i)) . g(f(x_j)), not cosine
    similarities, at the same temperature."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def build_unnormalised(cfg: Config, device: torch.device) -> SimCLRModel:
    """A `build` for `train_ssl`: `model.build_model`, returning an `UnnormalisedSimCLR`."""
    model = build_model(cfg, device)
    unnormalised = UnnormalisedSimCLR(cfg.width, cfg.proj_dim, cfg.head, cfg.stem)
    unnormalised.load_state_dict(model.state_dict())
    return unnormalised.to(device, memory_format=memory_format(device))


def extract_features_in_train_mode(encoder: nn.Module, images: ImageSet, device: torch.device | str = "cpu",
                                   batch_size: int = 128, bf16: bool = False) -> torch.Tensor:
    """`probe.extract_features` with BatchNorm in training mode (the missing `eval()`): each batch is normalised
    with its own statistics, so an image's features depend on the other images in its batch. (A copy of the
    encoder runs, so the caller's running statistics are not updated.)"""
    return encode(copy.deepcopy(encoder).train(), images, device, batch_size, bf16)


def minibatch_probe(encoder: nn.Module, train: ImageSet, test: ImageSet, epochs: int = 1, batch_size: int = 256,
                    lr: float = 1e-3, trainable_backbone: bool = False, device: torch.device | str = "cpu",
                    bf16: bool = False, seed: int = 0) -> tuple[float, nn.Module]:
    """Test accuracy of a linear layer trained with Adam on minibatches of un-augmented images through `encoder`.

    With `trainable_backbone=False` it is a linear probe (the encoder frozen in eval mode, as the book's L-BFGS
    probe, only slower); `True` is the mistake: the encoder's weights are in the optimizer and train in training
    mode, so the "probe" fine-tunes the whole network on the labels and no longer measures the frozen features.
    Returns the test accuracy and the encoder as the probe left it (a copy: the caller's is not changed).
    """
    device = torch.device(device)
    encoder = copy.deepcopy(encoder).to(device)
    encoder.requires_grad_(trainable_backbone)
    generator = torch.Generator().manual_seed(seed)
    layer = nn.Linear(encoder.feature_dim, len(train.classes)).to(device)
    parameters = list(layer.parameters()) + (list(encoder.parameters()) if trainable_backbone else [])
    optimizer = torch.optim.Adam(parameters, lr=lr)
    to_input = normalize()
    for _ in range(epochs):
        encoder.train(trainable_backbone)
        for chosen in torch.randperm(len(train), generator=generator).split(batch_size):
            x = to_input(train.images[chosen]).to(device).contiguous(memory_format=memory_format(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = layer(encoder(x).float())
            loss = F.cross_entropy(logits.float(), train.labels[chosen].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predictions = layer(encode(encoder.eval(), test, device, batch_size, bf16).to(device)).argmax(1).cpu()
    return (predictions == test.labels).float().mean().item(), encoder
