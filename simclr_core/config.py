"""Every knob of a run as one plain dataclass, plus the named presets.

A run is fully described by a `Config`; checkpoints store it, logs store it, the command line edits it.
Values are checked in `Config.validate` before any work starts, so a typo fails in a second with a
message that says what to change, not after an hour of training.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

DATA_ENV_VAR = "SIMCLR_DATA"  # overrides the default of `Config.data`, e.g. a local ImageFolder copy


def _default_data() -> str:
    return os.environ.get(DATA_ENV_VAR, "cifar10")


@dataclass
class Config:
    # data: "cifar10" (torchvision, downloaded into data_root) or a folder with train/ and test/ class folders
    data: str = dataclasses.field(default_factory=_default_data)
    data_root: str = "data"
    train_subset: int = 0  # 0 = the whole training split; else a class-balanced subset of that many images
    # model
    width: int = 64  # base channels of the ResNet-18 (64 = torchvision's); features are 8 * width wide
    proj_dim: int = 128
    # contrastive training
    epochs: int = 100
    steps: int = 0  # optimizer steps of the run; 0 = epochs * steps per epoch (then a run may end mid-epoch)
    # seconds of training (steps and evaluations); > 0: as many steps as fit, measured on the first few, with
    # the learning-rate schedule fitted to them; epochs (or steps) is then an upper bound
    time_budget: float = 0.0
    batch_size: int = 128
    optimizer: str = "adamw"  # "adamw" (the reference), "sgd" (momentum, Nesterov) or "lars" (optim.py)
    lr: float = 3e-4
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd and lars only
    lr_schedule: str = "constant"  # "constant" (the reference) or "cosine" (decay to 0 over the run)
    warmup_epochs: int = 0  # linear warm-up of the learning rate before the schedule; large batches need it
    temperature: float = 0.2
    crop_min_scale: float = 0.3  # RandomResizedCrop keeps between this share and all of the image
    # side of the training views: below 32 the crops are resized to fewer pixels (a step costs about
    # (train_resolution / 32)^2 as much); the probe always sees the full 32x32 images
    train_resolution: int = 32
    # "fast": whole batches augmented on the training device (batch_augment.py); "reference": per-image
    # torchvision transforms in a DataLoader, as the seed does it
    pipeline: str = "fast"
    # bookkeeping
    eval_every: int = 2  # epochs between SSL metric evaluations (loss, p_pos, top-1 on held-out views)
    eval_batches: int = 40
    save_every: int = 10  # epochs between checkpoint + log writes (always also at the end)
    # steps between reading the loss back from the device (log, NaN check, stop signals, time budget):
    # 0 = every step on the CPU, where it costs nothing, every 20 on GPUs, where each read stalls the device
    sync_every: int = 0
    seed: int = 0
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    num_workers: int = 0  # DataLoader worker processes for the reference pipeline's per-image augmentation
    # "auto": bfloat16 autocast where the device multiplies bf16 natively (CUDA from Ampere on, CPUs with AMX or
    # AVX512-BF16; measured on MPS), else float32; "bf16" or "fp32" force one. The loss is always float32.
    precision: str = "auto"
    compile: bool = False  # torch.compile the model (CUDA; minutes of compilation pay off on long runs)
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch (SimCLR's global BN)
    # linear probe: multinomial logistic regression on standardised frozen features, full-batch L-BFGS
    probe_steps: int = 100  # L-BFGS iterations (each one pass over the cached features, plus line search)
    probe_weight_decay: float = 1e-4  # L2 penalty on the probe's weights (keeps 3,072 pixel inputs honest)
    probe_train_subset: int = 0  # 0 = the whole training split

    def validate(self) -> Config:
        """Raise ValueError naming the first bad field and what to do about it; return self when fine."""
        positive = ["width", "proj_dim", "epochs", "eval_every", "eval_batches", "save_every", "probe_steps"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"config field {name}={getattr(self, name)} must be at least 1")
        for name in ["train_subset", "probe_train_subset", "num_workers", "weight_decay", "warmup_epochs", "steps",
                     "time_budget", "sync_every", "probe_weight_decay"]:
            if getattr(self, name) < 0:
                raise ValueError(f"config field {name}={getattr(self, name)} must not be negative")
        if self.batch_size < 2:
            raise ValueError(f"config field batch_size={self.batch_size} must be at least 2: "
                             "NT-Xent needs other images in the batch as negatives")
        if self.temperature <= 0:
            raise ValueError(f"config field temperature={self.temperature} must be > 0 (typical: 0.1 to 0.5)")
        if self.lr <= 0:
            raise ValueError(f"config field lr={self.lr} must be > 0 (the reference uses 3e-4 with AdamW)")
        if not 8 <= self.train_resolution <= 32:
            raise ValueError(f"config field train_resolution={self.train_resolution} must lie in [8, 32]: "
                             "the views are crops of 32x32 images, resized to this side")
        if not 0 < self.crop_min_scale <= 1:
            raise ValueError(f"config field crop_min_scale={self.crop_min_scale} must lie in (0, 1]")
        if self.pipeline not in ("fast", "reference"):
            raise ValueError(f"config field pipeline={self.pipeline!r}: use 'fast' or 'reference'")
        if self.optimizer not in ("adamw", "sgd", "lars"):
            raise ValueError(f"config field optimizer={self.optimizer!r}: use 'adamw', 'sgd' or 'lars'")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"config field momentum={self.momentum} must lie in [0, 1) (typical: 0.9)")
        if self.warmup_epochs >= self.epochs and not self.steps:
            raise ValueError(f"config field warmup_epochs={self.warmup_epochs} must be below epochs={self.epochs}: "
                             "the warm-up is the start of the run, not all of it")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"config field precision={self.precision!r}: use 'auto', 'bf16' or 'fp32'")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"config field lr_schedule={self.lr_schedule!r}: use 'constant' or 'cosine'")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ValueError(f"config field device={self.device!r}: use auto, cpu, cuda, cuda:N or mps")
        if self.data != "cifar10" and not os.path.isdir(self.data):
            raise ValueError(f"config field data={self.data!r} is neither 'cifar10' nor an existing folder: "
                             f"pass --data cifar10, or the path of a folder holding train/ and test/ "
                             f"class folders (or set {DATA_ENV_VAR})")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)


# Presets are overrides of the defaults above, which are the reference's numbers.
PRESETS: dict[str, dict[str, Any]] = {
    # The seed's configuration exactly: ResNet-18, AdamW 3e-4, batch 128, T=0.2, 100 epochs. Needs a GPU.
    "reference": {},
    # Sized for a 2-core CPU: a half-width ResNet-18 on a class-balanced 10k subset, trained for 5 minutes of wall
    # clock on any machine (the schedule fitted to the steps that fit), on 16x16 views: a third of the cost of a
    # 32x32 step, so three times the steps, which beat full resolution at equal time (bench/time_to_accuracy.py).
    # A short run learns more with a sharper softmax, hence T = 0.05. Its probe uses the whole training split.
    "quick": dict(width=32, train_subset=10_000, batch_size=128, lr=1e-3, lr_schedule="cosine", epochs=100,
                  time_budget=300, train_resolution=16, temperature=0.05, eval_every=1, eval_batches=8,
                  save_every=2),
    # Tuned for one GPU, after strong public CIFAR-10 SimCLR runs: batch 512, LARS with SimCLR's square-root
    # rule for short runs (lr = 0.075 * sqrt(batch) = 1.7), weight decay 1e-6 on weights only, 5 warm-up
    # epochs, then cosine. Sized for about 5 minutes on an H100; not yet run on a GPU here (see README).
    "fast": dict(batch_size=512, optimizer="lars", lr=1.7, weight_decay=1e-6, warmup_epochs=5,
                 lr_schedule="cosine", epochs=50, eval_every=5, eval_batches=10, save_every=10),
    # A few seconds: for tests and for checking that everything is wired before a long run.
    "smoke": dict(width=8, train_subset=512, batch_size=64, lr=2e-3, epochs=3, eval_every=1, eval_batches=2,
                  save_every=1, probe_steps=30, probe_train_subset=512),
}


def make_config(preset: str = "reference", **overrides: Any) -> Config:
    """The preset's config with `overrides` applied, validated."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return Config.from_dict({**PRESETS[preset], **overrides}).validate()
