"""What the two equal-compute experiments, bench/payoff.py and bench/when_it_pays.py, share: the supervised side's
clock (what a supervised step, the evaluation of one image and LP-FT's head cost on this machine, and the seconds
<-> steps of a run at those costs) and the SimCLR side's probe on a few labels.

A supervised run is defined by its steps; its compute is its steps on this clock plus its evaluations, so what it
learns cannot depend on how busy the machine was while it trained.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from simclr_core.budget import median_step_seconds
from simclr_core.config import make_config
from simclr_core.data import ImageSet, labelled_indices
from simclr_core.model import memory_format
from simclr_core.probe import budget_weight_decay, extract_features, train_linear_probe
from simclr_core.runtime import pick_device, uses_bf16
from simclr_core.supervised import (
    TRAIN_ACCURACY_IMAGES,
    SupervisedConfig,
    evaluation_seconds,
    initial_classifier,
    labelled_batches,
    supervised_step,
)


def measure_clock(init: str, width: int, train: ImageSet, test: ImageSet) -> dict[str, Any]:
    """This machine's seconds for a supervised step (batch 128), for evaluating one image, and for LP-FT's head
    (a linear probe on the features of `init`'s encoder) on all labels."""
    cfg = SupervisedConfig(width=width, init=init, head="probe", labels_per_class=5000)
    device = pick_device(cfg.device)
    bf16 = uses_bf16(cfg.precision, device)
    start = time.perf_counter()
    model, _ = initial_classifier(cfg, len(train.classes), train, len(train), device, bf16)
    head_seconds = time.perf_counter() - start
    model = model.to(device, memory_format=memory_format(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = labelled_batches(train, cfg.batch_size, cfg.augmentation_params(), 0, device)
    step_seconds = median_step_seconds(lambda: supervised_step(model, optimizer, *next(batches), bf16), model,
                                       optimizer, (5, 21))
    sample = test.subset(torch.arange(min(2000, len(test))))
    image_seconds = evaluation_seconds(model, sample, len(sample), device, bf16) / len(sample)
    return {"batch_size": cfg.batch_size, "step_seconds": round(step_seconds, 4),
            "image_seconds": round(image_seconds, 6),
            "head_seconds_all_labels": round(head_seconds, 1), "precision": "bf16" if bf16 else "fp32"}


class Clock:
    """Seconds <-> steps of a supervised run, at the costs `measure_clock` stored in `row`."""

    def __init__(self, row: dict[str, Any], train_images: int):
        self.row, self.train_images = row, train_images

    def overhead(self, cfg: SupervisedConfig, test_images: int, classes: int = 10) -> float:
        """Seconds a run spends besides its steps: its evaluations and (LP-FT) its head."""
        labelled = cfg.labels_per_class * classes
        evaluated = test_images + min(labelled, TRAIN_ACCURACY_IMAGES) + cfg.validation_per_class * classes
        head = self.row["head_seconds_all_labels"] * labelled / self.train_images if cfg.head == "probe" else 0.0
        return evaluated * self.row["image_seconds"] + head

    def steps(self, cfg: SupervisedConfig, seconds: float, test_images: int, classes: int = 10) -> int:
        steps = int((seconds - self.overhead(cfg, test_images, classes)) / self.row["step_seconds"])
        if steps < 1:
            raise ValueError(f"{seconds:.0f} s leave no step after {self.overhead(cfg, test_images):.0f} s of "
                             f"evaluation")
        return steps

    def seconds(self, cfg: SupervisedConfig, test_images: int, classes: int = 10) -> float:
        return round(cfg.steps * self.row["step_seconds"] + self.overhead(cfg, test_images, classes), 1)


def probe_accuracy(encoder: torch.nn.Module, train: ImageSet, test: ImageSet, per_class: int, seed: int,
                   device: str = "auto", precision: str = "auto") -> float:
    """The book's linear probe on `encoder`'s frozen features of `per_class` labelled images a class (`seed`),
    scored on `test`, with the quick preset's probe settings and its penalty scaled to the labels."""
    chosen = labelled_indices(train, per_class, seed)
    torch_device = pick_device(device)
    bf16 = uses_bf16(precision, torch_device)
    train_x = extract_features(encoder, train.subset(chosen), torch_device, bf16=bf16)
    test_x = extract_features(encoder, test, torch_device, bf16=bf16)
    quick = make_config("quick")
    return train_linear_probe(train_x, train.labels[chosen], test_x, test.labels, quick.probe_steps,
                              budget_weight_decay(quick.probe_weight_decay, len(train), len(chosen))).test_accuracy


def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row chosen on validation."""
    return max(rows, key=lambda row: row["validation_accuracy"])
