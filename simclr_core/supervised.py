"""Supervised training on a few labels: the baseline SimCLR must beat, and fine-tuning a SimCLR encoder.

The network is the book's CIFAR ResNet-18 f with one linear layer on top, trained with cross-entropy on
`labels_per_class` labelled training images of every class, with AdamW and a cosine schedule, augmented on
the device (the `augmentations` of the recipe: the SimCLR views, or milder ones), in bf16 where the hardware
has it, for a budget in steps or seconds. Three starting points:

- from scratch (`init` empty): every weight random;
- naive fine-tuning (`init` = a SimCLR run folder, `head="random"`): the pre-trained encoder under a fresh random
  layer, the encoder at `encoder_lr_scale` times the layer's learning rate. The random layer's first gradients are
  large and point anywhere: they reach the encoder and distort the features that made fine-tuning worth doing;
- LP-FT (`head="probe"`, Kumar et al. 2022): the layer starts as the linear probe fitted on the frozen features of
  the labelled images, so the first gradients already point somewhere useful and the features move less.

`validation_per_class` > 0 holds that many images of every class out of the training split (always the same
ones) and draws the labelled images from the rest: hyper-parameters are chosen on validation accuracy, never on
the test set. A run folder holds checkpoints/latest.pt and logs/supervised_results.json; a run is short
(seconds to minutes) and is saved once, at the end.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .augment import AugmentationParams, recipe_params
from .batch_augment import BatchAugmentation
from .budget import TimeBudget, median_step_seconds
from .config import RECIPE_STEPS, Config, default_precision
from .data import ImageSet, balanced_indices, labelled_indices, load_split
from .model import CifarResNet18, load_model, memory_format
from .optim import lr_factor
from .probe import budget_weight_decay, extract_features, linear_probe_layer
from .resume import checkpoint_config
from .runtime import choose_precision, machine_description, pick_device, seed_everything
from .storage import RunPaths, load_checkpoint, load_json, save_checkpoint, save_json

TRAIN_ACCURACY_IMAGES = 2000  # training accuracy is measured on at most this many labelled images (time)
VALIDATION_SEED = 1_000_003  # the validation images are the same for every run, whatever its label seed
MIN_BUDGET_STEPS = 20  # a time budget that leaves fewer steps than this is refused, not reported as a result
REPLAN_AFTER = 0.1  # share of the first plan's steps after which a budgeted run plans again from real steps
PROBE_HEAD = dict(steps=100, weight_decay=Config().probe_weight_decay)  # LP-FT's head: the book's probe


@dataclass
class SupervisedConfig:
    data: str = dataclasses.field(default_factory=lambda: Config().data)  # Config's default
    data_root: str = "data"
    labels_per_class: int = 100
    label_seed: int = 0
    validation_per_class: int = 0
    test_subset: int = 0
    width: int = 64
    init: str = ""
    head: str = "random"
    steps: int = 500
    time_budget: float = 0.0
    batch_size: int = 128
    lr: float = 1e-3
    encoder_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    augmentations: str = ",".join(RECIPE_STEPS)
    crop_min_scale: float = 0.3
    seed: int = 0
    device: str = "auto"
    precision: str = dataclasses.field(default_factory=default_precision)

    def validate(self) -> SupervisedConfig:
        """Raise ValueError naming the first bad field and what to do; return self when fine."""
        for name in ("labels_per_class", "width", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"supervised config field {name}={getattr(self, name)} must be at least 1")
        for name in ("lr", "encoder_lr_scale"):
            if getattr(self, name) <= 0:
                raise ValueError(f"supervised config field {name}={getattr(self, name)} must be > 0")
        for name in ("validation_per_class", "test_subset", "time_budget", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"supervised config field {name}={getattr(self, name)} must not be negative")
        if not 0 < self.crop_min_scale <= 1:
            raise ValueError(f"supervised config field crop_min_scale={self.crop_min_scale} must lie in (0, 1]")
        steps = [step.strip() for step in self.augmentations.split(",") if step.strip()]
        if set(steps) - set(RECIPE_STEPS):
            raise ValueError(f"supervised config field augmentations={self.augmentations!r}: give a comma-separated "
                             f"choice of {', '.join(RECIPE_STEPS)} (for instance 'crop,flip'), or '' for none")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"supervised config field precision={self.precision!r}: use 'auto', 'bf16' or 'fp32'")
        if self.head not in ("random", "probe"):
            raise ValueError(f"supervised config field head={self.head!r}: use 'random' (a fresh linear layer) or "
                             f"'probe' (the linear probe of the frozen features first: LP-FT)")
        if self.head == "probe" and not self.init:
            raise ValueError("head='probe' fits the linear probe on a pre-trained encoder's features: give --init "
                             "a SimCLR run folder, or use head='random' to train from scratch")
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

    def augmentation_params(self) -> AugmentationParams:
        steps = [step.strip() for step in self.augmentations.split(",") if step.strip()]
        return recipe_params(steps, self.crop_min_scale)


# One line of help for each field whose meaning differs from the SimCLR Config's field of that name (the
# others, such as data, seed, device and precision, share config.FIELD_HELP); `supervised --help` shows them
SUPERVISED_FIELD_HELP: dict[str, str] = {
    "labels_per_class": "labelled training images of each class",
    "label_seed": "which labelled images (data.labelled_indices): the budgets of one seed are nested",
    "validation_per_class": "hold this many images of each class out of the training split for validation "
                            "(labelled images come from the rest); 0: no validation",
    "test_subset": "0 = the whole test split; else a class-balanced subset of that many images",
    "width": "of the ResNet-18; fine-tuning needs the pre-trained run's width",
    "init": "a SimCLR run folder whose encoder is fine-tuned; empty trains from scratch",
    "head": "fine-tuning's linear layer: random (a fresh one) or probe (the frozen features' probe first: LP-FT)",
    "steps": "optimizer steps, when there is no time budget",
    "time_budget": "> 0: seconds for the whole run (head fit and evaluation included); it decides the steps",
    "batch_size": "images per step, drawn with replacement: 10 labelled images or 50,000 alike",
    "lr": "AdamW's learning rate, for the linear layer and (from scratch) the encoder",
    "encoder_lr_scale": "fine-tuning: the pre-trained encoder's learning rate is lr times this",
    "augmentations": "comma-separated steps of the SimCLR recipe applied to the labelled images (crop, flip, "
                     "jitter, blur); crop,flip is the usual supervised choice",
}


class Classifier(nn.Module):
    """x -> class logits: the encoder f, then one linear layer on h = f(x)."""

    def __init__(self, width: int, num_classes: int):
        super().__init__()
        self.encoder = CifarResNet18(width)
        self.classifier = nn.Linear(self.encoder.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))


def supervised_step(model: Classifier, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                    bf16: bool = False) -> torch.Tensor:
    """One optimisation step of cross-entropy on a labelled batch; returns the loss, still on the device."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def labelled_batches(images: ImageSet, batch_size: int, params: AugmentationParams, seed: int,
                     device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless (augmented images, labels) batches, the images drawn with replacement and kept on `device`."""
    pixels, labels = images.images.to(device), images.labels.to(device)
    augment = BatchAugmentation(params, seed, device)
    picks = torch.Generator(device=device).manual_seed(seed + 1)  # a stream apart from the augmentation's
    while True:
        chosen = torch.randint(len(labels), (batch_size,), generator=picks, device=device)
        yield augment(pixels[chosen]).contiguous(memory_format=memory_format(device)), labels[chosen]


def split_labelled(train_set: ImageSet, cfg: SupervisedConfig) -> tuple[ImageSet, ImageSet | None]:
    """The run's labelled images and its validation images (None without validation), disjoint."""
    if not cfg.validation_per_class:
        return train_set.subset(labelled_indices(train_set, cfg.labels_per_class, cfg.label_seed)), None
    held_out = labelled_indices(train_set, cfg.validation_per_class, VALIDATION_SEED)
    rest = torch.ones(len(train_set), dtype=torch.bool)
    rest[held_out] = False
    pool = train_set.subset(rest.nonzero().squeeze(1))
    return pool.subset(labelled_indices(pool, cfg.labels_per_class, cfg.label_seed)), train_set.subset(held_out)


@torch.inference_mode()
def accuracy(model: Classifier, images: ImageSet, device: torch.device, bf16: bool) -> float:
    """Top-1 accuracy on un-augmented `images`, in eval mode (BatchNorm's running statistics)."""
    features = extract_features(model.encoder, images, device, bf16=bf16)
    predictions = model.classifier(features.to(device)).argmax(1).cpu()
    return (predictions == images.labels).float().mean().item()


def pretrained_config(cfg: SupervisedConfig) -> dict[str, Any] | None:
    """The config of the SimCLR run fine-tuning starts from (None from scratch): part of a run's identity."""
    return checkpoint_config(cfg.init).to_dict() if cfg.init else None


def initial_classifier(cfg: SupervisedConfig, num_classes: int, labelled: ImageSet | None = None,
                       all_images: int = 0, device: torch.device | str = "cpu",
                       bf16: bool = False) -> tuple[Classifier, float]:
    """The network a run starts from (seeded), and the encoder's learning rate. Fine-tuning loads the pre-trained
    encoder; with `head="probe"` the layer is the linear probe fitted on the frozen features of `labelled`, with
    the book's probe penalty for that many of `all_images` (`budget_weight_decay`)."""
    seed_everything(cfg.seed)
    model = Classifier(cfg.width, num_classes)
    if not cfg.init:
        return model, cfg.lr
    pretrained, _ = load_model(RunPaths(cfg.init).checkpoint)
    model.encoder.load_state_dict(pretrained.encoder.state_dict())
    if cfg.head == "probe":
        assert labelled is not None, "LP-FT fits its head on the labelled images"
        features = extract_features(model.encoder.to(device), labelled, device, bf16=bf16)
        penalty = budget_weight_decay(PROBE_HEAD["weight_decay"], all_images, len(labelled))
        model.classifier = linear_probe_layer(features, labelled.labels, num_classes, PROBE_HEAD["steps"], penalty)
    return model, cfg.lr * cfg.encoder_lr_scale


def evaluation_seconds(model: Classifier, images: ImageSet, count: int, device: torch.device, bf16: bool) -> float:
    """Seconds to evaluate `count` images, from timing the forward pass on two batches of `images`."""
    sample = images.subset(torch.arange(min(len(images), 256)))
    accuracy(model, sample, device, bf16)  # set-up
    start = time.perf_counter()
    accuracy(model, sample, device, bf16)
    return (time.perf_counter() - start) * count / len(sample)


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
    labelled, validation = split_labelled(train_set, cfg)
    shown = labelled.subset(balanced_indices(labelled.labels, TRAIN_ACCURACY_IMAGES, seed=0))

    budget = TimeBudget(cfg.time_budget, cfg.steps if not cfg.time_budget else sys.maxsize)
    bf16, precision_reason = choose_precision(cfg.precision, device)
    model, encoder_lr = initial_classifier(cfg, len(train_set.classes), labelled, len(train_set), device, bf16)
    model = model.to(device, memory_format=memory_format(device))
    optimizer = torch.optim.AdamW([{"params": model.encoder.parameters(), "lr": encoder_lr},
                                   {"params": model.classifier.parameters(), "lr": cfg.lr}],
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, budget.total_steps, 0,
                                                                                    "cosine"))
    params = cfg.augmentation_params()
    log: dict[str, Any] = {"config": cfg.to_dict(), "init_config": pretrained_config(cfg), "device": str(device),
                           "precision": "bf16" if bf16 else "fp32", "precision_reason": precision_reason,
                           "machine": machine_description(), "finished": False, "train_images": len(labelled),
                           "validation_images": len(validation) if validation else 0, "test_images": len(test_set)}
    if budget.limited:
        calibration = labelled_batches(labelled, cfg.batch_size, params, cfg.seed + 2, device)
        step_seconds = median_step_seconds(lambda: supervised_step(model, optimizer, *next(calibration), bf16),
                                           model, optimizer)
        evaluated = len(test_set) + len(shown) + (len(validation) if validation else 0)
        budget.plan(step_seconds, evaluation_seconds(model, test_set, evaluated, device, bf16), sys.maxsize,
                    MIN_BUDGET_STEPS, "supervised run")
        log["budget"] = budget.record

    model.train()
    losses = []
    batches = labelled_batches(labelled, cfg.batch_size, params, cfg.seed, device)
    replan_at = max(MIN_BUDGET_STEPS, int(REPLAN_AFTER * budget.total_steps)) if budget.limited else 0
    bar = tqdm(total=budget.total_steps, desc="supervised training", unit="step", disable=not progress)
    loop_start = time.perf_counter()
    while len(losses) < budget.total_steps:
        losses.append(supervised_step(model, optimizer, *next(batches), bf16))
        scheduler.step()
        bar.update()
        if len(losses) == replan_at and replan_at < budget.total_steps:  # real steps time better than calibration
            bar.total = budget.replan(len(losses), (time.perf_counter() - loop_start) / len(losses), sys.maxsize,
                                      sys.maxsize)
        if budget.exceeded() and len(losses) < budget.total_steps:
            budget.stop_early(len(losses))
    bar.close()
    log["total_steps"] = budget.total_steps
    log["step_loss"] = [round(value, 5) for value in torch.stack(losses).tolist()]
    if not all(math.isfinite(value) for value in log["step_loss"]):
        raise FloatingPointError(f"the loss diverged ({log['step_loss'][-1]} at the last step): lower --lr")
    log["train_accuracy"] = accuracy(model, shown, device, bf16)
    log["train_accuracy_images"] = len(shown)
    log["validation_accuracy"] = accuracy(model, validation, device, bf16) if validation else None
    log["test_accuracy"] = accuracy(model, test_set, device, bf16)
    log["train_seconds"] = round(budget.elapsed(), 2)
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
