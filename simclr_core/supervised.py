"""Supervised training on a few labels: the baseline SimCLR must beat, and fine-tuning a SimCLR encoder.

The network is the book's CIFAR ResNet-18 f with one linear layer on top, trained with cross-entropy on
`labels_per_class` labelled training images of every class. From scratch, every weight starts random. Fine-tuning
(`init` = a SimCLR run folder) starts f from the pre-trained encoder under a fresh linear layer, and lets the
encoder learn `encoder_lr_scale` (0.1) times as fast as the layer: the random layer's first, large gradients
would otherwise overwrite the features that make fine-tuning worth doing. The rest is pre-training's: the same
augmentation recipe applied on the device, AdamW with a cosine schedule, bf16 where the hardware has it, and
a budget in steps or seconds. A run folder holds checkpoints/latest.pt and logs/supervised_results.json; a
run is short (seconds to minutes) and is saved once, at the end.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .augment import AugmentationParams
from .batch_augment import BatchAugmentation
from .config import Config
from .data import ImageSet, balanced_indices, labelled_indices, load_split
from .engine import BUDGET_MARGIN, CHANNELS_LAST_DEVICES, load_model, median_step_seconds
from .model import CifarResNet18
from .optim import lr_factor
from .probe import extract_features
from .resume import checkpoint_config
from .runtime import choose_precision, machine_description, pick_device, seed_everything
from .storage import RunPaths, load_checkpoint, load_json, save_checkpoint, save_json

TRAIN_ACCURACY_IMAGES = 2000  # training accuracy is measured on at most this many labelled images (time)


@dataclass
class SupervisedConfig:
    data: str = dataclasses.field(default_factory=lambda: Config().data)  # Config's default
    data_root: str = "data"
    labels_per_class: int = 100
    label_seed: int = 0
    test_subset: int = 0
    width: int = 64
    init: str = ""
    steps: int = 500
    time_budget: float = 0.0
    batch_size: int = 128
    lr: float = 1e-3
    encoder_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    crop_min_scale: float = 0.3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

    def validate(self) -> SupervisedConfig:
        """Raise ValueError naming the first bad field and what to do; return self when fine."""
        for name in ("labels_per_class", "width", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"supervised config field {name}={getattr(self, name)} must be at least 1")
        for name in ("lr", "encoder_lr_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"supervised config field {name}={getattr(self, name)} must be > 0")
        for name in ("test_subset", "time_budget", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"supervised config field {name}={getattr(self, name)} must not be negative")
        if not 0 < self.crop_min_scale <= 1:
            raise ValueError(f"supervised config field crop_min_scale={self.crop_min_scale} must lie in (0, 1]")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"supervised config field precision={self.precision!r}: use 'auto', 'bf16' or 'fp32'")
        if self.init and not RunPaths(self.init).checkpoint.is_file():
            raise ValueError(f"init={self.init!r} holds no SimCLR checkpoint (checkpoints/latest.pt): train one "
                             f"with `python -m simclr_core train --out {self.init}`, or leave init empty to "
                             f"train from scratch")
        if self.init and checkpoint_config(self.init).width != self.width:
            raise ValueError(f"the SimCLR run in {self.init} has width {checkpoint_config(self.init).width}, this "
                             f"run asks for width={self.width}: fine-tune with the run's width (--width)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# One line of help for each field whose meaning differs from the SimCLR Config's field of that name (the
# others, such as data, seed, device and precision, share config.FIELD_HELP); `supervised --help` shows them
SUPERVISED_FIELD_HELP: dict[str, str] = {
    "labels_per_class": "labelled training images of each class",
    "label_seed": "which labelled images (data.labelled_indices): the budgets of one seed are nested",
    "test_subset": "0 = the whole test split; else a class-balanced subset of that many images",
    "width": "of the ResNet-18; fine-tuning needs the pre-trained run's width",
    "init": "a SimCLR run folder whose encoder is fine-tuned; empty trains from scratch",
    "steps": "optimizer steps, when there is no time budget",
    "time_budget": "> 0: seconds for the whole run (evaluation included); it decides the steps",
    "batch_size": "images per step, drawn with replacement: 10 labelled images or 50,000 alike",
    "lr": "AdamW's learning rate, for the linear layer and (from scratch) the encoder",
    "encoder_lr_scale": "fine-tuning: the pre-trained encoder's learning rate is lr times this",
}


class Classifier(nn.Module):
    """x -> class logits: the encoder f, then one linear layer on h = f(x)."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.encoder = CifarResNet18(width)
        self.classifier = nn.Linear(self.encoder.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))


def labelled_batches(images: ImageSet, batch_size: int, params: AugmentationParams, seed: int,
                     device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (augmented images, labels) batches, the images drawn with replacement and kept on `device`."""
    pixels, labels = images.images.to(device), images.labels.to(device)
    augment = BatchAugmentation(params, seed, device)
    picks = torch.Generator(device=device).manual_seed(seed + 1)  # a stream apart from the augmentation's
    layout = torch.channels_last if device.type in CHANNELS_LAST_DEVICES else torch.contiguous_format
    while True:
        chosen = torch.randint(len(labels), (batch_size,), generator=picks, device=device)
        yield augment(pixels[chosen]).contiguous(memory_format=layout), labels[chosen]


@torch.inference_mode()
def accuracy(model: Classifier, images: ImageSet, device: torch.device, bf16: bool) -> float:
    """Top-1 accuracy on un-augmented `images`, in eval mode (BatchNorm's running statistics)."""
    features = extract_features(model.encoder, images, device, bf16=bf16)
    predictions = model.classifier(features.to(device)).argmax(1).cpu()
    return (predictions == images.labels).float().mean().item()


def pretrained_config(cfg: SupervisedConfig) -> dict[str, Any] | None:
    """The config of the SimCLR run fine-tuning starts from (None from scratch): part of a run's identity."""
    return checkpoint_config(cfg.init).to_dict() if cfg.init else None


def initial_classifier(cfg: SupervisedConfig, num_classes: int) -> tuple[Classifier, float]:
    """The network a run starts from (seeded; fine-tuning: the pre-trained encoder under a fresh linear
    layer), and the encoder's learning rate."""
    seed_everything(cfg.seed)
    model = Classifier(cfg.width, num_classes)
    if not cfg.init:
        return model, cfg.lr
    pretrained, _ = load_model(RunPaths(cfg.init).checkpoint)
    model.encoder.load_state_dict(pretrained.encoder.state_dict())
    return model, cfg.lr * cfg.encoder_lr_scale


def train_supervised(cfg: SupervisedConfig, out: str = ".", progress: bool = True, train_set: ImageSet | None = None,
                     test_set: ImageSet | None = None) -> dict[str, Any]:
    """Train a classifier as `cfg` says, on its labelled subset of `train_set`; return the log written to `out`.

    `train_set` / `test_set` default to the configured dataset's train split / (subset of the) test split.
    """
    cfg.validate()
    paths = RunPaths(out)
    paths.check_writable()
    device = pick_device(cfg.device)
    if train_set is None:
        train_set = load_split(cfg.data, "train", cfg.data_root)
    if test_set is None:
        test_set = load_split(cfg.data, "test", cfg.data_root, cfg.test_subset)
    labelled = train_set.subset(labelled_indices(train_set, cfg.labels_per_class, cfg.label_seed))

    start = time.perf_counter()  # a time budget counts from here: set-up, calibration, steps and evaluation
    bf16, precision_reason = choose_precision(cfg.precision, device)
    model, encoder_lr = initial_classifier(cfg, len(train_set.classes))
    model = model.to(device)
    if device.type in CHANNELS_LAST_DEVICES:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([{"params": model.encoder.parameters(), "lr": encoder_lr},
                                   {"params": model.classifier.parameters(), "lr": cfg.lr}],
                                  weight_decay=cfg.weight_decay)
    params = AugmentationParams(crop_scale=(cfg.crop_min_scale, 1.0))

    def train_step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    log: dict[str, Any] = {"config": cfg.to_dict(), "init_config": pretrained_config(cfg), "device": str(device),
                           "precision": "bf16" if bf16 else "fp32", "precision_reason": precision_reason,
                           "machine": machine_description(), "finished": False, "train_images": len(labelled),
                           "test_images": len(test_set)}
    total_steps, stop_at = cfg.steps, math.inf
    if cfg.time_budget:
        calibration = labelled_batches(labelled, cfg.batch_size, params, cfg.seed + 2, device)
        step_seconds = median_step_seconds(lambda: train_step(*next(calibration)), model, optimizer)
        eval_seconds = (len(test_set) + min(len(labelled), TRAIN_ACCURACY_IMAGES)) / cfg.batch_size * step_seconds / 3
        stop_at = cfg.time_budget - eval_seconds  # a forward pass costs about a third of a training step
        total_steps = max(1, int(BUDGET_MARGIN * (stop_at - (time.perf_counter() - start)) / step_seconds))
        log["budget"] = {"seconds": cfg.time_budget, "calibrated_step_seconds": round(step_seconds, 4),
                         "planned_steps": total_steps}
    log["total_steps"] = total_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, 0, "cosine"))

    model.train()
    losses = []
    batches = labelled_batches(labelled, cfg.batch_size, params, cfg.seed, device)
    for step in tqdm(range(total_steps), desc="supervised training", unit="step", disable=not progress):
        losses.append(train_step(*next(batches)))
        scheduler.step()
        if time.perf_counter() - start > stop_at and step + 1 < total_steps:
            log["budget"]["stopped_early_at_step"] = step + 1  # the machine slowed down: end the run here
            break
    log["step_loss"] = [round(value, 5) for value in torch.stack(losses).tolist()]
    if not all(math.isfinite(value) for value in log["step_loss"]):
        raise FloatingPointError(f"the loss diverged ({log['step_loss'][-1]} at the last step): lower --lr")
    shown = labelled.subset(balanced_indices(labelled.labels, TRAIN_ACCURACY_IMAGES, seed=0))
    log["train_accuracy"] = accuracy(model, shown, device, bf16)
    log["train_accuracy_images"] = len(shown)
    log["test_accuracy"] = accuracy(model, test_set, device, bf16)
    log["train_seconds"] = round(time.perf_counter() - start, 2)
    log["finished"] = True
    save_checkpoint(paths.checkpoint, {"config": cfg.to_dict(), "log": log, "model": model.state_dict()})
    save_json(paths.supervised_log, log)
    return log


def load_classifier(out: str, device: torch.device | str = "cpu") -> tuple[Classifier, SupervisedConfig]:
    """The classifier saved by `train_supervised` in `out`, with its config."""
    state = load_checkpoint(RunPaths(out).checkpoint)
    cfg = SupervisedConfig(**state["config"])
    model = Classifier(cfg.width, state["model"]["classifier.weight"].shape[0])
    model.load_state_dict(state["model"])
    return model.to(device), cfg


def load_or_train_supervised(cfg: SupervisedConfig, out: str, progress: bool = True, train_set: ImageSet | None = None,
                             test_set: ImageSet | None = None) -> tuple[Classifier, dict[str, Any]]:
    """Reuse the finished run in `out` if it was trained with exactly `cfg` from the same SimCLR run; else
    train it now (from the start: runs are short and keep no mid-run checkpoints). The sets are as in
    `train_supervised`: pass them to load the data once for many runs."""
    paths = RunPaths(out)
    if paths.checkpoint.is_file() and paths.supervised_log.is_file():
        log = load_json(paths.supervised_log)
        if log.get("finished") and log["config"] == cfg.to_dict() and log["init_config"] == pretrained_config(cfg):
            return load_classifier(out, pick_device(cfg.device))[0], log
    log = train_supervised(cfg, out, progress, train_set, test_set)
    return load_classifier(out, pick_device(cfg.device))[0], log
