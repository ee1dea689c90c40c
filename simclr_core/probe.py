"""The linear probe: how linearly separable are the classes in a frozen encoder's features?

The encoder never changes (no gradients, BatchNorm in eval mode); only a single linear layer is trained
on its features of the training split and tested on the test split. Running the same probe on a
randomly initialised encoder of the same architecture tells how much of the accuracy pre-training earned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .augment import normalize
from .config import Config
from .data import ImageSet, load_split
from .engine import load_model
from .model import SimCLRModel
from .resume import checkpoint_config
from .runtime import pick_device, seed_everything
from .storage import RunLock, RunPaths, save_json


@torch.no_grad()
def extract_features(encoder: nn.Module, images: ImageSet, device: torch.device | str = "cpu",
                     batch_size: int = 512) -> torch.Tensor:
    """h = f(x) for every image, (N, D) on the CPU, with the encoder frozen in eval mode."""
    encoder.eval().requires_grad_(False)
    to_input = normalize()
    chunks = [encoder(to_input(images.images[i:i + batch_size]).to(device)).cpu()
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)


@dataclass
class ProbeResult:
    train_loss: list[float]  # mean cross-entropy over each epoch
    train_accuracy: float
    test_accuracy: float


def train_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                       epochs: int = 100, lr: float = 1e-3, batch_size: int = 512, seed: int = 0) -> ProbeResult:
    """Fit one linear layer on (train_x, train_y) with Adam; report its accuracies.

    Features are standardised with the training split's mean and std first: an affine map, so the probe
    stays linear, but Adam converges in the same number of epochs whatever the feature scale.
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    torch.manual_seed(seed)
    classifier = nn.Linear(train_x.shape[1], num_classes)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=generator)
        total = 0.0
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            loss = F.cross_entropy(classifier(train_x[batch]), train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(order))
    with torch.no_grad():
        train_accuracy = (classifier(train_x).argmax(1) == train_y).float().mean().item()
        test_accuracy = (classifier(test_x).argmax(1) == test_y).float().mean().item()
    return ProbeResult(losses, train_accuracy, test_accuracy)


def load_encoder(checkpoint_path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, Config]:
    """The trained encoder f of a checkpoint (the head g is dropped), with the config it was trained with."""
    model, cfg = load_model(checkpoint_path, device)
    return model.encoder, cfg


def pixel_features(images: ImageSet) -> torch.Tensor:
    """Raw pixels as features (N, 3072): what a linear classifier can do with no encoder at all."""
    return normalize()(images.images).flatten(1)


def random_encoder(cfg: Config, device: torch.device | str = "cpu") -> nn.Module:
    """The same architecture at its (seeded) random initialisation: the probe's baseline."""
    seed_everything(cfg.seed)
    return SimCLRModel(cfg.width, cfg.proj_dim).encoder.to(device)


def probe_encoders(encoders: dict[str, nn.Module], train_set: ImageSet, test_set: ImageSet, cfg: Config,
                   device: torch.device | str = "cpu", progress: bool = True) -> dict[str, ProbeResult]:
    """Run the same linear probe on each named encoder's frozen features."""
    results = {}
    for name, encoder in tqdm(encoders.items(), desc="linear probe", disable=not progress):
        train_x = extract_features(encoder, train_set, device)
        test_x = extract_features(encoder, test_set, device)
        results[name] = train_linear_probe(train_x, train_set.labels, test_x, test_set.labels,
                                           cfg.probe_epochs, cfg.probe_lr, cfg.probe_batch_size, cfg.seed)
    return results


def run_probe(out: str = ".", overrides: dict[str, Any] | None = None, progress: bool = True) -> dict[str, Any]:
    """Probe the checkpoint in `out` against a random-init encoder; write and return the probe log.

    `overrides` changes probe settings (or the data) of the config stored in the checkpoint.
    """
    paths = RunPaths(out)
    cfg = checkpoint_config(out, overrides)  # fails, naming the file, when there is no run to probe
    with RunLock(out):  # one writer a run folder: not while it is being trained
        device = pick_device(cfg.device)
        trained, _ = load_encoder(str(paths.checkpoint), device)
        train_set = load_split(cfg.data, "train", cfg.data_root, cfg.probe_train_subset, cfg.seed)
        test_set = load_split(cfg.data, "test", cfg.data_root)
        results = probe_encoders({"simclr": trained, "random": random_encoder(cfg, device)},
                                 train_set, test_set, cfg, device, progress)
        log = {"config": cfg.to_dict(), "train_images": len(train_set), "test_images": len(test_set),
               **{name: asdict(result) for name, result in results.items()}}
        save_json(paths.probe_log, log)
        return log
