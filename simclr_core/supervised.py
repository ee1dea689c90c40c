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
from .budget import StepClock, TimeBudget, median_step_seconds
from .config import Config, augmentation_steps
from .data import ImageSet, balanced_indices, labelled_indices, load_split
from .knobs import knob, knob_fields, shared, validate_knobs
from .model import CifarResNet18, load_model, memory_format
from .optim import lr_factor
from .probe import budget_weight_decay, extract_features, linear_probe_layer
from .resume import checkpoint_config
from .runtime import choose_precision, machine_description, pick_device, seed_everything
from .storage import RunPaths, load_checkpoint, save_checkpoint, save_json

TRAIN_ACCURACY_IMAGES = 2000  # training accuracy is measured on at most this many labelled images (time)
VALIDATION_SEED = 1_000_003  # the validation images are the same for every run, whatever its label seed
MIN_BUDGET_STEPS = 20  # a time budget that leaves fewer steps than this is refused, not reported as a result
PROBE_HEAD = dict(steps=100, weight_decay=Config().probe_weight_decay)  # LP-FT's head: the book's probe


SHARED = knob_fields(Config)  # the SimCLR config's knobs, which this config reuses where the meaning is the same


@dataclass
class SupervisedConfig:
    """A supervised run: the labels it trains on, where it starts from, and the knobs it shares with `Config`."""

    data: str = shared(SHARED["data"])
    data_root: str = shared(SHARED["data_root"])
    labels_per_class: int = knob(100, "labelled training images of each class", at_least=1)
    label_seed: int = knob(0, "which labelled images (data.labelled_indices): the budgets of one seed are nested")
    validation_per_class: int = knob(0, "hold this many images of each class out of the training split for "
                                        "validation (labelled images come from the rest); 0: no validation",
                                     at_least=0)
    test_subset: int = knob(0, "0 = the whole test split; else a class-balanced subset of that many images",
                            at_least=0)
    width: int = shared(SHARED["width"], help="of the ResNet-18; fine-tuning needs the pre-trained run's width")
    init: str = knob("", "a SimCLR run folder whose encoder is fine-tuned; empty trains from scratch")
    head: str = knob("random", "fine-tuning's linear layer: random (a fresh one) or probe (the frozen features' "
                               "probe first: LP-FT)", choices=("random", "probe"))
    steps: int = shared(SHARED["steps"], 500, "optimizer steps, when there is no time budget")
    time_budget: float = shared(SHARED["time_budget"], help="> 0: seconds for the whole run (head fit and "
                                                             "evaluation included); it decides the steps")
    batch_size: int = shared(SHARED["batch_size"], help="images per step, drawn with replacement: 10 labelled "
                                                         "images or 50,000 alike")
    lr: float = shared(SHARED["lr"], 1e-3, "AdamW's learning rate, for the linear layer and (from scratch) the "
                                           "encoder")
    encoder_lr_scale: float = knob(0.1, "fine-tuning: the pre-trained encoder's learning rate is lr times this",
                                   above=0)
    weight_decay: float = shared(SHARED["weight_decay"])
    augmentations: str = shared(SHARED["augmentations"], help="comma-separated steps of the SimCLR recipe applied "
                                                               "to the labelled images (crop, flip, jitter, gray, "
                                                               "blur); crop,flip is the usual supervised choice; "
                                                               "'' for none")
    crop_min_scale: float = shared(SHARED["crop_min_scale"])
    seed: int = shared(SHARED["seed"])
    device: str = shared(SHARED["device"])
    precision: str = shared(SHARED["precision"])

    def validate(self) -> SupervisedConfig:
        """Raise ValueError naming the first bad field and what to do; return self when fine."""
        for name in ("steps", "batch_size"):  # shared knobs whose range here is narrower than in `Config`
            if getattr(self, name) < 1:
                raise ValueError(f"supervised config field {name}={getattr(self, name)} must be at least 1")
        validate_knobs(self, "supervised config")
        try:
            augmentation_steps(self.augmentations)
        except ValueError as error:
            raise ValueError(f"supervised config field {error}, or '' for none") from None
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
        return recipe_params(augmentation_steps(self.augmentations), self.crop_min_scale)


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
    train_set = load_split(cfg.data, "train", cfg.data_root) if train_set is None else train_set
    test_set = load_split(cfg.data, "test", cfg.data_root, cfg.test_subset) if test_set is None else test_set
    labelled, validation = split_labelled(train_set, cfg)
    scored = {"train": labelled.subset(balanced_indices(labelled.labels, TRAIN_ACCURACY_IMAGES, seed=0)),
              "validation": validation, "test": test_set}
    budget = TimeBudget(cfg.time_budget, cfg.steps if not cfg.time_budget else sys.maxsize)
    bf16, precision_reason = choose_precision(cfg.precision, device)
    model, encoder_lr = initial_classifier(cfg, len(train_set.classes), labelled, len(train_set), device, bf16)
    model = model.to(device, memory_format=memory_format(device))
    optimizer = torch.optim.AdamW([{"params": model.encoder.parameters(), "lr": encoder_lr},
                                   {"params": model.classifier.parameters(), "lr": cfg.lr}],
                                  weight_decay=cfg.weight_decay)
    log: dict[str, Any] = {"config": cfg.to_dict(), "init_config": pretrained_config(cfg), "device": str(device),
                           "precision": "bf16" if bf16 else "fp32", "precision_reason": precision_reason,
                           "machine": machine_description(), "finished": False, "train_images": len(labelled),
                           "validation_images": len(validation) if validation else 0, "test_images": len(test_set)}
    if budget.limited:
        _plan(budget, model, optimizer, labelled, scored, cfg, device, bf16)
        log["budget"] = budget.record
    losses = _fit(model, optimizer, labelled, cfg, budget, device, bf16, progress)
    log["total_steps"] = budget.total_steps
    log["step_loss"] = [round(value, 5) for value in losses]
    if not all(math.isfinite(value) for value in log["step_loss"]):
        raise FloatingPointError(f"the loss diverged ({log['step_loss'][-1]} at the last step): lower --lr")
    for split, images in scored.items():
        log[f"{split}_accuracy"] = accuracy(model, images, device, bf16) if images is not None else None
    log["train_accuracy_images"] = len(scored["train"])
    log["train_seconds"] = round(budget.elapsed(), 2)
    log["finished"] = True
    save_checkpoint(paths.checkpoint, {"config": cfg.to_dict(), "log": log, "model": model.state_dict()})
    save_json(paths.supervised_log, log)
    return log


def _plan(budget: TimeBudget, model: Classifier, optimizer: torch.optim.Optimizer, labelled: ImageSet,
          scored: dict[str, ImageSet | None], cfg: SupervisedConfig, device: torch.device, bf16: bool) -> None:
    """Time a few steps (undone afterwards) and the final evaluations, and plan the steps that fit the budget."""
    calibration = labelled_batches(labelled, cfg.batch_size, cfg.augmentation_params(), cfg.seed + 2, device)
    step_seconds = median_step_seconds(lambda: supervised_step(model, optimizer, *next(calibration), bf16),
                                       model, optimizer)
    evaluated = sum(len(images) for images in scored.values() if images is not None)
    budget.plan(step_seconds, evaluation_seconds(model, scored["test"], evaluated, device, bf16), sys.maxsize,
                MIN_BUDGET_STEPS, "supervised run")


def _fit(model: Classifier, optimizer: torch.optim.Optimizer, labelled: ImageSet, cfg: SupervisedConfig,
         budget: TimeBudget, device: torch.device, bf16: bool, progress: bool) -> list[float]:
    """The training steps, with the cosine schedule fitted to the budget's steps (re-planned once, from the
    seconds the real steps took, and stopped early if the machine slowed down: budget.py's rules)."""
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, budget.total_steps, 0,
                                                                                    "cosine"))
    model.train()
    losses = []
    batches = labelled_batches(labelled, cfg.batch_size, cfg.augmentation_params(), cfg.seed, device)
    bar = tqdm(total=budget.total_steps, desc="supervised training", unit="step", disable=not progress)
    clock = StepClock()
    clock.start(0)
    while len(losses) < budget.total_steps:
        losses.append(supervised_step(model, optimizer, *next(batches), bf16))
        scheduler.step()
        bar.update()
        if budget.replan_due(len(losses)):
            clock.stop(len(losses))
            clock.start(len(losses))
            bar.total = budget.replan(len(losses), clock.seconds_per_step(), sys.maxsize, sys.maxsize)
        if budget.exceeded() and len(losses) < budget.total_steps:
            budget.stop_early(len(losses))
    bar.close()
    return torch.stack(losses).tolist()


def load_classifier(out: str, device: torch.device | str = "cpu") -> tuple[Classifier, SupervisedConfig]:
    """The classifier saved by `train_supervised` in `out`, with its config."""
    state = load_checkpoint(RunPaths(out).checkpoint)
    cfg = SupervisedConfig(**state["config"])
    model = Classifier(cfg.width, state["model"]["classifier.weight"].shape[0])
    model.load_state_dict(state["model"])
    return model.to(device), cfg
