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

RECIPE_STEPS = ("crop", "flip", "jitter", "gray", "blur")  # the augmentation recipe's steps, in order (augment.py)
# The seed's recipe: every step but random grayscale, which SimCLR's paper adds (p = 0.2) and the seed leaves out.
SEED_AUGMENTATIONS = "crop,flip,jitter,blur"

DATA_ENV_VAR = "SIMCLR_DATA"  # overrides the default of `Config.data`, e.g. a local ImageFolder copy
PRECISION_ENV_VAR = "SIMCLR_PRECISION"  # overrides the default of `precision`: fp32 makes a bf16 machine a laptop


def _default_data() -> str:
    return os.environ.get(DATA_ENV_VAR, "cifar10")


def default_precision() -> str:
    return os.environ.get(PRECISION_ENV_VAR, "auto")


@dataclass
class Config:
    # data: "cifar10" (torchvision, downloaded into data_root) or a folder with train/ and test/ class folders
    data: str = dataclasses.field(default_factory=_default_data)
    data_root: str = "data"
    train_subset: int = 0  # 0 = the whole training split; else a class-balanced subset of that many images
    # > 0: this many training images (class-balanced, the same for every seed) become a validation split that
    # stands in for the test split everywhere in the run (held-out views, online k-NN, the probe's score), so
    # choices made on it never look at the test images; pre-training and the probe's training never see them
    holdout: int = 0
    # model
    width: int = 64  # base channels of the ResNet-18 (64 = torchvision's); features are 8 * width wide
    proj_dim: int = 128
    head: str = "mlp"  # the projection head g: "mlp" (SimCLR's), "linear" or "none" (the loss sees h)
    stem: str = "cifar"  # "cifar" (3x3, stride 1, no max-pool) or "imagenet" (torchvision's 7x7/2 + max-pool)
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
    # "constant" (the reference), "cosine" (decay to 0 over the run) or "wsd" (constant, then a linear decay
    # to 0 over the last 20%: a long run stopped before its decay continues as any shorter run would, optim.py)
    lr_schedule: str = "constant"
    warmup_epochs: int = 0  # linear warm-up of the learning rate before the schedule; large batches need it
    temperature: float = 0.2
    loss: str = "nt_xent"  # "nt_xent" (SimCLR's, the default) or "dcl" (decoupled: no positive in the denominator)
    crop_min_scale: float = 0.3  # RandomResizedCrop keeps between this share and all of the image
    # the steps of the recipe that make the views, comma-separated; leave one out to see what it contributes
    augmentations: str = SEED_AUGMENTATIONS
    # side of the training views: below 32 the crops are resized to fewer pixels (a step costs about
    # (train_resolution / 32)^2 as much); the probe always sees the full 32x32 images
    train_resolution: int = 32
    # > 0: progressive resizing: views of this side for the first 80% of the steps (a "wsd" run's stable
    # phase), then train_resolution, so the network ends on the resolution it is probed at
    start_resolution: int = 0
    # "fast": whole batches augmented on the training device (batch_augment.py); "reference": per-image
    # torchvision transforms in a DataLoader, as the seed does it
    pipeline: str = "fast"
    # bookkeeping
    eval_every: int = 2  # epochs between SSL metric evaluations (loss, p_pos, top-1 on held-out views)
    eval_batches: int = 40
    # online k-NN at every evaluation: a weighted 20-NN vote on h = f(x) of `knn_queries` test images against a
    # bank of `knn_bank` training images (both fixed, class-balanced; 0 = off): whether the features separate
    # classes, which the loss cannot say
    knn_bank: int = 1000
    knn_queries: int = 500
    save_every: int = 10  # epochs between checkpoint + log writes (always also at the end)
    # steps between reading the loss back from the device (log, NaN check, stop signals, time budget):
    # 0 = every step on the CPU, where it costs nothing, every 20 on GPUs, where each read stalls the device
    sync_every: int = 0
    seed: int = 0
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    num_workers: int = 0  # DataLoader worker processes for the reference pipeline's per-image augmentation
    # "auto": bfloat16 autocast where the device multiplies bf16 natively (CUDA from Ampere on, CPUs with AMX or
    # AVX512-BF16; measured on MPS), else float32; "bf16" or "fp32" force one. The loss is always float32.
    precision: str = dataclasses.field(default_factory=default_precision)
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
        for name in ["train_subset", "holdout", "probe_train_subset", "knn_bank", "knn_queries", "num_workers",
                     "weight_decay", "warmup_epochs", "steps", "time_budget", "sync_every", "probe_weight_decay"]:
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
        if self.start_resolution and not 8 <= self.start_resolution <= 32:
            raise ValueError(f"config field start_resolution={self.start_resolution} must be 0 (off) or lie in "
                             f"[8, 32]")
        if self.start_resolution and (self.pipeline != "fast" or self.time_budget):
            raise ValueError("config field start_resolution needs pipeline='fast' and no time_budget (a budget "
                             "times its steps at one resolution): set --start-resolution 0, or train for --steps")
        if not 0 < self.crop_min_scale <= 1:
            raise ValueError(f"config field crop_min_scale={self.crop_min_scale} must lie in (0, 1]")
        unknown = set(self.augmentation_steps) - set(RECIPE_STEPS)
        if unknown or not self.augmentation_steps:
            raise ValueError(f"config field augmentations={self.augmentations!r}: give a comma-separated choice of "
                             f"{', '.join(RECIPE_STEPS)} (for instance 'crop,flip,jitter')")
        for name, allowed in FIELD_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"config field {name}={getattr(self, name)!r}: use {_one_of(allowed)}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"config field momentum={self.momentum} must lie in [0, 1) (typical: 0.9)")
        if self.warmup_epochs >= self.epochs and not self.steps:
            raise ValueError(f"config field warmup_epochs={self.warmup_epochs} must be below epochs={self.epochs}: "
                             "the warm-up is the start of the run, not all of it")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ValueError(f"config field device={self.device!r}: use auto, cpu, cuda, cuda:N or mps")
        if self.data != "cifar10" and not os.path.isdir(self.data):
            raise ValueError(f"config field data={self.data!r} is neither 'cifar10' nor an existing folder: "
                             f"pass --data cifar10, or the path of a folder holding train/ and test/ "
                             f"class folders (or set {DATA_ENV_VAR})")
        return self

    @property
    def augmentation_steps(self) -> tuple[str, ...]:
        """`augmentations` as a tuple of step names: "crop,flip" -> ("crop", "flip")."""
        return tuple(step.strip() for step in self.augmentations.split(",") if step.strip())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)


# One line per field for `--help` (tests check that every field has one).
FIELD_HELP: dict[str, str] = {
    "data": f"'cifar10' (torchvision, downloaded into --data-root) or a folder holding train/ and test/ "
            f"class folders; ${DATA_ENV_VAR} sets the default",
    "data_root": "where --data cifar10 is stored and downloaded to; offline, put cifar-10-python.tar.gz here",
    "train_subset": "train on a class-balanced subset of this many images (0: the whole training split)",
    "holdout": "hold out this many training images as a validation split that replaces the test split in "
               "the run's evaluations and probe (0: none)",
    "width": "base channels of the ResNet-18 (64 is torchvision's); features are 8 x width wide",
    "proj_dim": "size of the projection head's output z, the vectors NT-Xent compares",
    "head": "projection head g: mlp (SimCLR's two layers), linear (one layer) or none (the loss sees h)",
    "stem": "first layers of the ResNet: cifar (3x3, stride 1) or imagenet (7x7 stride 2 + max-pool: wrong on 32x32)",
    "epochs": "passes over the training images (an upper bound when --steps or --time-budget is set)",
    "steps": "optimizer steps of the run (0: epochs x steps an epoch); --steps N repeats a budgeted run exactly",
    "time_budget": "seconds of training, evaluations included (0: none): as many steps as fit, the schedule "
                   "fitted to them",
    "batch_size": "images a step; each view has the other 2 x batch - 2 views as negatives",
    "optimizer": "adamw (the reference), sgd (Nesterov momentum) or lars (layer-wise rates, for large batches)",
    "lr": "peak learning rate",
    "weight_decay": "weight decay",
    "momentum": "momentum of sgd and lars (adamw ignores it)",
    "lr_schedule": "constant (the reference), cosine (decays to 0 over the run) or wsd (constant, then a "
                   "linear decay over the last fifth)",
    "warmup_epochs": "epochs of linear learning-rate warm-up before the schedule; large batches need it",
    "temperature": "NT-Xent temperature T: lower sharpens the softmax over the negatives",
    "loss": "nt_xent (SimCLR's loss) or dcl (decoupled contrastive loss: the positive left out of the denominator)",
    "crop_min_scale": "smallest share of the image a random crop keeps",
    "augmentations": "comma-separated steps of the recipe that make the views (crop, flip, jitter, gray, blur; "
                     "the seed's recipe leaves out gray, SimCLR's paper has it)",
    "train_resolution": "side of the training views in pixels, 8 to 32 (16: a step costs a third; the probe "
                        "always sees 32x32)",
    "start_resolution": "progressive resizing: views of this side for the first four fifths of the steps, "
                        "then --train-resolution (0: off)",
    "pipeline": "fast (whole batches augmented on the training device) or reference (per-image torchvision "
                "transforms, as the seed)",
    "eval_every": "epochs between measurements of held-out loss, p_pos and top-1",
    "eval_batches": "batches of held-out views a measurement uses",
    "knn_bank": "labelled training images of the online k-NN's bank at every evaluation (0: no k-NN)",
    "knn_queries": "test images the online k-NN classifies at every evaluation (0: no k-NN)",
    "save_every": "epochs between checkpoint and log writes (always also at the end)",
    "sync_every": "steps between reading the loss back from the device (0: every step on a CPU, 20 on GPUs)",
    "seed": "seed of every random draw: the same seed on the same machine repeats a run exactly",
    "device": "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps",
    "num_workers": "DataLoader worker processes of the reference pipeline",
    "precision": f"auto (bf16 where this hardware runs it fast, else fp32), bf16 or fp32; the loss is always fp32; "
                 f"${PRECISION_ENV_VAR} sets the default",
    "compile": "true: torch.compile the model (minutes of compilation; pays off on long GPU runs)",
    "sync_bn": "true: under torchrun, BatchNorm statistics over the global batch",
    "probe_steps": "L-BFGS iterations of the linear probe (full batch, on cached features)",
    "probe_weight_decay": "L2 penalty on the linear probe's weights",
    "probe_train_subset": "train the probe on a class-balanced subset of this many images (0: the whole split)",
}
# The allowed values of the fields that take a name; `validate` and the command line's choices both read them.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("adamw", "sgd", "lars"),
    "lr_schedule": ("constant", "cosine", "wsd"),
    "pipeline": ("fast", "reference"),
    "precision": ("auto", "bf16", "fp32"),
    "loss": ("nt_xent", "dcl"),
    "head": ("mlp", "linear", "none"),
    "stem": ("cifar", "imagenet"),
}


def _one_of(values: tuple[str, ...]) -> str:
    quoted = [repr(value) for value in values]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}"


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
                  knn_bank=100, knn_queries=50, save_every=1, probe_steps=30, probe_train_subset=512),
}


def make_config(preset: str = "reference", **overrides: Any) -> Config:
    """The preset's config with `overrides` applied, validated."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return Config.from_dict({**PRESETS[preset], **overrides}).validate()


BOOK_SCALE_ENV_VAR = "SIMCLR_BOOK_SCALE"  # the chapters' parameter cells read it: see `scaled`


def scaled(cfg: Config, factor: float) -> Config:
    """`cfg` made `factor` times as long: its time budget, or without one its steps (or epochs), times `factor`.

    The book's chapters apply $SIMCLR_BOOK_SCALE with it: 0.25 trains the run a machine four times slower would
    train in the full budget, so that one machine can check what the book says holds for a slower one.
    """
    if factor == 1:
        return cfg
    if cfg.time_budget:
        return dataclasses.replace(cfg, time_budget=cfg.time_budget * factor).validate()
    if cfg.steps:
        return dataclasses.replace(cfg, steps=max(1, round(cfg.steps * factor))).validate()
    return dataclasses.replace(cfg, epochs=max(1, round(cfg.epochs * factor))).validate()


def describe_changes(saved: dict[str, Any], wanted: dict[str, Any], names: list[str]) -> str:
    """'it was trained with width=8, this run asks for width=16' for the fields `names`."""
    was = ", ".join(f"{name}={saved.get(name)!r}" for name in names)
    now = ", ".join(f"{name}={wanted.get(name)!r}" for name in names)
    return f"it was trained with {was}, this run asks for {now}"


def describe_preset(config: dict[str, Any]) -> str:
    """Which preset a stored config was made from, and what was changed: "smoke preset with epochs=40".

    Checkpoints and logs store the config, not the preset's name; the closest preset (fewest changed
    fields, the data source aside) names it in messages.
    """
    def changed_from(name: str) -> dict[str, Any]:
        preset = Config.from_dict({**PRESETS[name], "data": config.get("data", "cifar10")}).to_dict()
        return {field: value for field, value in config.items()
                if field in preset and field not in ("data", "data_root") and preset[field] != value}

    changes = {name: changed_from(name) for name in PRESETS}
    closest = min(changes, key=lambda name: len(changes[name]))
    changed = ", ".join(f"{field}={value}" for field, value in changes[closest].items())
    return f"{closest} preset" + (f" with {changed}" if changed else "")
