"""The linear probe: how linearly separable are the classes in a frozen encoder's features?

The encoder never changes (no gradients, BatchNorm in eval mode); only a single linear layer is trained
on its features of the training split and tested on the test split. Running the same probe on a
randomly initialised encoder of the same architecture tells how much of the accuracy pre-training earned.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .augment import normalize
from .config import Config
from .data import ImageSet, labelled_indices, load_split, training_images
from .model import SimCLRModel, load_model, memory_format
from .resume import checkpoint_config
from .runtime import machine_description, pick_device, seed_everything, uses_bf16
from .storage import RunLock, RunPaths, load_tensor, save_json, save_tensor


@torch.inference_mode()
def extract_features(encoder: nn.Module, images: ImageSet, device: torch.device | str = "cpu",
                     batch_size: int = 128, bf16: bool = False) -> torch.Tensor:
    """h = f(x) for every image, (N, D) float32 on the CPU, with the encoder frozen in eval mode (its mode is
    given back afterwards).

    Small batches keep a layer's activations in a CPU's cache: on a 2-core AMD EPYC (bf16), 10,000 images took
    3.6 s in batches of 128 and 6.1 s in batches of 1024 (bench/probe_speed.py).

    With `bf16` the convolutions run in bfloat16 (autocast), twice as fast on hardware that has it; the
    features then agree with float32 ones to about 3 significant digits, which a linear probe does not notice.
    """
    was_training = encoder.training
    features = encode(encoder.eval(), images, device, batch_size, bf16)
    encoder.train(was_training)
    return features


@torch.no_grad()
def encode(encoder: nn.Module, images: ImageSet, device: torch.device | str = "cpu", batch_size: int = 128,
           bf16: bool = False) -> torch.Tensor:
    """`encoder` applied to every normalised image, batch by batch, in whatever mode it is in; (N, D) on the CPU."""
    device = torch.device(device)
    to_input = normalize()
    chunks = []
    for i in range(0, len(images), batch_size):
        x = to_input(images.images[i:i + batch_size]).to(device).contiguous(memory_format=memory_format(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            chunks.append(encoder(x).float().cpu())
    return torch.cat(chunks)


def _digest(*tensors: torch.Tensor) -> str:
    sha = hashlib.sha1()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()[:16]


def cached_features(encoder: nn.Module, images: ImageSet, cache: Path | None, device: torch.device | str = "cpu",
                    bf16: bool = False) -> torch.Tensor:
    """`extract_features`, stored in the folder `cache` under a name made from the encoder's weights, the
    images and the precision: probing the same checkpoint again (another chapter, another label budget)
    reads the file instead of running the encoder over 60,000 images again."""
    if cache is None:
        return extract_features(encoder, images, device, bf16=bf16)
    weights = _digest(*encoder.state_dict().values())
    path = cache / f"{weights}-{_digest(images.images)}-{'bf16' if bf16 else 'fp32'}.pt"
    if path.is_file():
        return load_tensor(path)
    features = extract_features(encoder, images, device, bf16=bf16)
    save_tensor(path, features)
    return features


@dataclass
class ProbeResult:
    train_loss: list[float]  # the training objective (cross-entropy + L2 penalty) at each evaluation by L-BFGS
    train_accuracy: float
    test_accuracy: float


def train_linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                       steps: int = 100, weight_decay: float = 1e-4) -> ProbeResult:
    """Fit a multinomial logistic regression on (train_x, train_y) with full-batch L-BFGS; report accuracies.

    Features are standardised with the training split's mean and std first (an affine map, so the probe stays
    linear), which makes the problem well conditioned: L-BFGS converges in about a hundred passes over the
    features, where minibatch Adam needed 60 epochs of 100 batches. Starting from zero weights, the result is
    deterministic. `weight_decay` adds (weight_decay / 2) * ||W||^2 to the mean cross-entropy.
    """
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    classifier, losses = _fit_logistic_regression(train_x, train_y, num_classes, steps, weight_decay)
    with torch.no_grad():
        train_accuracy = (classifier(train_x).argmax(1) == train_y).float().mean().item()
        test_accuracy = (classifier(test_x).argmax(1) == test_y).float().mean().item()
    return ProbeResult(losses, train_accuracy, test_accuracy)


def linear_probe_layer(train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, steps: int = 100,
                       weight_decay: float = 1e-4) -> nn.Linear:
    """The linear probe of `train_linear_probe` as a layer on the raw features (its standardisation folded into
    the weights): the head that fine-tuning can start from instead of a random one (LP-FT)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    standardised, _ = _fit_logistic_regression((train_x - mean) / std, train_y, num_classes, steps, weight_decay)
    layer = nn.Linear(train_x.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.copy_(standardised.weight / std)
        layer.bias.copy_(standardised.bias - layer.weight @ mean)
    return layer


def _fit_logistic_regression(x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int,
                             weight_decay: float) -> tuple[nn.Linear, list[float]]:
    """Full-batch L-BFGS from zero weights; the objective's value at each of its evaluations."""
    classifier = nn.Linear(x.shape[1], num_classes)
    nn.init.zeros_(classifier.weight)
    nn.init.zeros_(classifier.bias)
    optimizer = torch.optim.LBFGS(classifier.parameters(), lr=1, max_iter=steps, history_size=20,
                                  line_search_fn="strong_wolfe")
    losses: list[float] = []

    def objective() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(classifier(x), y) + weight_decay / 2 * classifier.weight.square().sum()
        loss.backward()
        losses.append(loss.item())
        return loss

    optimizer.step(objective)  # one call runs up to `steps` iterations, building its curvature history
    return classifier, losses


def label_efficiency(train_x: torch.Tensor, train_set: ImageSet, test_x: torch.Tensor, test_y: torch.Tensor,
                     seeds_per_budget: dict[int, int], steps: int = 100,
                     weight_decay: float = 1e-4) -> dict[int, list[float]]:
    """Linear-probe test accuracy with N labelled images per class, for every N in `seeds_per_budget`, once per
    labelled subset (seeds 0, 1, ...): few labels make a noisy score, so several subsets show its spread.

    `train_x` holds the features of all of `train_set`; each probe trains on the rows of its subset, with
    `weight_decay` (the full split's penalty) scaled by `budget_weight_decay`.
    """
    accuracies: dict[int, list[float]] = {}
    for per_class, seeds in seeds_per_budget.items():
        accuracies[per_class] = []
        for seed in range(seeds):
            chosen = labelled_indices(train_set, per_class, seed)
            result = train_linear_probe(train_x[chosen], train_set.labels[chosen], test_x, test_y, steps,
                                        budget_weight_decay(weight_decay, len(train_set), len(chosen)))
            accuracies[per_class].append(result.test_accuracy)
    return accuracies


def load_encoder(checkpoint_path: str, device: torch.device | str = "cpu") -> tuple[nn.Module, Config]:
    """The trained encoder f of a checkpoint (the head g is dropped), with the config it was trained with."""
    model, cfg = load_model(checkpoint_path, device)
    return model.encoder, cfg


def pixel_features(images: ImageSet) -> torch.Tensor:
    """Raw pixels as features (N, 3072): what a linear classifier can do with no encoder at all."""
    return normalize()(images.images).flatten(1)


CACHE_ENV_VAR = "SIMCLR_CACHE"


def shared_cache() -> Path:
    """Where features that do not depend on a run are kept, for every run on this machine: those of the random-init
    encoder, the same for every run of one architecture and seed (the file names say which weights, images and
    precision). $SIMCLR_CACHE, else ~/.cache/simclr-book/features."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path.home() / ".cache" / "simclr-book" / "features")


def random_model(cfg: Config, device: torch.device | str = "cpu") -> SimCLRModel:
    """The same model, encoder and head, at its (seeded) random initialisation."""
    seed_everything(cfg.seed)
    return SimCLRModel(cfg.width, cfg.proj_dim, cfg.head, cfg.stem).to(device)


def random_encoder(cfg: Config, device: torch.device | str = "cpu") -> nn.Module:
    """The same architecture's encoder at its (seeded) random initialisation: the probe's baseline."""
    return random_model(cfg, device).encoder


def budget_weight_decay(weight_decay: float, all_images: int, labelled_images: int) -> float:
    """The probe's L2 penalty for a labelled subset: `weight_decay` scaled by all_images / labelled_images.

    The penalty is a prior on the weights and the cross-entropy is a mean over the images, so keeping the
    prior's strength fixed as labels get fewer means raising the per-image weight: 100 labels per class, probed
    with the full split's 1e-4, overfit so much that they scored no better than 25 (a real run: 0.36 and 0.35;
    scaled, 0.42 and 0.36). With all the images it is the full probe's penalty.
    """
    return weight_decay * all_images / labelled_images


def probe_encoders(encoders: dict[str, nn.Module], train_set: ImageSet, test_set: ImageSet, cfg: Config,
                   device: torch.device | str = "cpu", progress: bool = True,
                   cache: Path | dict[str, Path] | None = None,
                   labelled: torch.Tensor | None = None) -> dict[str, ProbeResult]:
    """Run the same linear probe on each named encoder's frozen features (kept in `cache` when given: one folder,
    or a folder for each encoder's name).

    `labelled` (indices into `train_set`) trains the probe on those images only, with the penalty of
    `budget_weight_decay`; the features are still computed (and cached) for the whole `train_set`, so every
    label budget reuses one cache file.
    """
    bf16 = uses_bf16(cfg.precision, torch.device(device))
    train_y = train_set.labels if labelled is None else train_set.labels[labelled]
    weight_decay = budget_weight_decay(cfg.probe_weight_decay, len(train_set), len(train_y))
    results = {}
    for name, encoder in tqdm(encoders.items(), desc="linear probe", disable=not progress):
        encoder.requires_grad_(False)  # the probe's encoder is frozen: no gradient reaches it
        folder = cache.get(name) if isinstance(cache, dict) else cache
        train_x = cached_features(encoder, train_set, folder, device, bf16)
        test_x = cached_features(encoder, test_set, folder, device, bf16)
        results[name] = train_linear_probe(train_x if labelled is None else train_x[labelled], train_y, test_x,
                                           test_set.labels, cfg.probe_steps, weight_decay)
    return results


def run_probe(out: str = ".", overrides: dict[str, Any] | None = None, progress: bool = True,
              labels_per_class: int = 0, label_seed: int = 0) -> dict[str, Any]:
    """Probe the checkpoint in `out` against a random-init encoder; write and return the probe log.

    `overrides` changes probe settings (or the data) of the config stored in the checkpoint. Features are
    cached in `out`/features, so a second probe of the same checkpoint takes seconds; the random-init encoder's
    in `shared_cache()`, so they are computed once per machine, data and architecture. `labels_per_class` > 0
    trains the probes on that many labelled images of each class (drawn with `label_seed`) and writes its own
    log, `probe_results_{N}_per_class_seed{S}.json`, next to the full probe's.
    """
    paths = RunPaths(out)
    cfg = checkpoint_config(out, overrides)  # fails, naming the file, when there is no run to probe
    with RunLock(out):  # one writer a run folder: not while it is being trained
        device = pick_device(cfg.device)
        trained, _ = load_encoder(str(paths.checkpoint), device)
        train_set, validation = training_images(cfg.data, cfg.data_root, cfg.probe_train_subset, cfg.seed,
                                                cfg.holdout)
        test_set = load_split(cfg.data, "test", cfg.data_root)
        labelled = labelled_indices(train_set, labels_per_class, label_seed) if labels_per_class else None
        start = time.perf_counter()
        encoders = {"simclr": trained, "random": random_encoder(cfg, device)}
        caches = {"simclr": paths.features, "random": shared_cache()}
        results = probe_encoders(encoders, train_set, test_set, cfg, device, progress, caches, labelled)
        log = {"config": cfg.to_dict(), "train_images": len(train_set) if labelled is None else len(labelled),
               "labels_per_class": labels_per_class, "label_seed": label_seed, "test_images": len(test_set),
               "precision": "bf16" if uses_bf16(cfg.precision, device) else "fp32",
               "machine": machine_description(), **{name: asdict(result) for name, result in results.items()}}
        if validation is not None:  # the score choices are made on; the test score above is for reporting
            on_validation = probe_encoders(encoders, train_set, validation, cfg, device, progress, caches, labelled)
            log["validation"] = {name: result.test_accuracy for name, result in on_validation.items()}
            log["validation_images"] = len(validation)
        log["probe_seconds"] = round(time.perf_counter() - start, 2)
        save_json(paths.probe_log if labelled is None else
                  paths.probe_log.with_name(f"probe_results_{labels_per_class}_per_class_seed{label_seed}.json"), log)
        return log
