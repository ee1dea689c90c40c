"""Every knob of a run as one plain dataclass, plus the named presets.

A run is fully described by a `Config`; checkpoints store it, logs store it, the command line edits it. Each knob
is declared once (knobs.py): its default, its line of help, its allowed values and its role, from which the rules
for continuing or reusing a stored run follow (`RESUME_MAY_CHANGE`, `REUSE_MAY_CHANGE`). Values are checked in
`Config.validate` before any work starts, so a typo fails in a second with a message that says what to change,
not after an hour of training.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

from .knobs import LENGTH, MACHINE, MONITOR, PROBE, knob, knob_fields, validate_knobs

RECIPE_STEPS = ("crop", "flip", "jitter", "gray", "blur")  # the augmentation recipe's steps, in order (augment.py)
# The seed's recipe: every step but random grayscale, which SimCLR's paper adds (p = 0.2) and the seed leaves out.
SEED_AUGMENTATIONS = "crop,flip,jitter,blur"


def augmentation_steps(text: str) -> tuple[str, ...]:
    """A comma-separated `augmentations` value as step names, "crop, flip" -> ("crop", "flip"); an unknown name
    raises ValueError."""
    steps = tuple(step.strip() for step in text.split(",") if step.strip())
    if set(steps) - set(RECIPE_STEPS):
        raise ValueError(f"augmentations={text!r}: give a comma-separated choice of {', '.join(RECIPE_STEPS)} "
                         f"(for instance 'crop,flip,jitter')")
    return steps


@dataclass
class Config:
    """Every knob of a SimCLR run; the defaults are the reference's (the seed's) numbers."""

    # data
    data: str = knob("cifar10", "'cifar10' (torchvision, downloaded into --data-root) or a folder holding train/ and "
                                "test/ class folders; $SIMCLR_DATA sets it on the command line and in the chapters")
    data_root: str = knob("data", "where --data cifar10 is stored and downloaded to; offline, put "
                                  "cifar-10-python.tar.gz here")
    train_subset: int = knob(0, "train on a class-balanced subset of this many images (0: the whole training split)",
                             at_least=0)
    holdout: int = knob(0, "hold out this many training images (class-balanced, the same for every seed) as a "
                           "validation split that replaces the test split in the run's evaluations and probe, so "
                           "that choices never look at the test images (0: none)", at_least=0)
    # model
    width: int = knob(64, "base channels of the ResNet-18 (64 is torchvision's); features are 8 x width wide",
                      at_least=1)
    proj_dim: int = knob(128, "size of the projection head's output z, the vectors NT-Xent compares", at_least=1)
    head: str = knob("mlp", "projection head g: mlp (SimCLR's two layers), linear (one layer) or none (the loss "
                            "sees h)", choices=("mlp", "linear", "none"))
    stem: str = knob("cifar", "first layers of the ResNet: cifar (3x3, stride 1) or imagenet (7x7 stride 2 + "
                              "max-pool: wrong on 32x32)", choices=("cifar", "imagenet"))
    # how long
    epochs: int = knob(100, "passes over the training images (an upper bound when --steps or --time-budget is set)",
                       LENGTH, at_least=1)
    steps: int = knob(0, "optimizer steps of the run (0: epochs x steps an epoch); --steps N repeats a budgeted run "
                         "exactly", LENGTH, at_least=0)
    # a budget's plan fixes the steps and the schedule fitted to them, so it is part of what was trained
    time_budget: float = knob(0.0, "seconds of training, evaluations included (0: none): as many steps as fit, "
                                   "measured on the first few, the schedule fitted to them", at_least=0)
    # contrastive training
    batch_size: int = knob(128, "images a step; each view has the other 2 x batch - 2 views as negatives")
    optimizer: str = knob("adamw", "adamw (the reference), sgd (Nesterov momentum) or lars (layer-wise rates, for "
                                   "large batches)", choices=("adamw", "sgd", "lars"))
    lr: float = knob(3e-4, "peak learning rate", above=0)
    weight_decay: float = knob(1e-4, "weight decay", at_least=0)
    momentum: float = knob(0.9, "momentum of sgd and lars (adamw ignores it)", at_least=0, below=1)
    lr_schedule: str = knob("constant", "constant (the reference), cosine (decays to 0 over the run) or wsd "
                                        "(constant, then a linear decay to 0 over the last fifth: a long run "
                                        "stopped before its decay continues as any shorter run would)",
                            choices=("constant", "cosine", "wsd"))
    warmup_epochs: int = knob(0, "epochs of linear learning-rate warm-up before the schedule; large batches need it",
                              at_least=0)
    temperature: float = knob(0.2, "NT-Xent temperature T: lower sharpens the softmax over the negatives", above=0)
    loss: str = knob("nt_xent", "nt_xent (SimCLR's loss) or dcl (decoupled contrastive loss: the positive left out "
                                "of the denominator)", choices=("nt_xent", "dcl"))
    crop_min_scale: float = knob(0.3, "smallest share of the image a random crop keeps", above=0, at_most=1)
    augmentations: str = knob(SEED_AUGMENTATIONS, "comma-separated steps of the recipe that make the views (crop, "
                                                  "flip, jitter, gray, blur; leave one out to see what it "
                                                  "contributes; the seed's recipe has no gray, SimCLR's paper has)")
    train_resolution: int = knob(32, "side of the training views in pixels, 8 to 32 (16: a step costs a third; the "
                                     "probe always sees 32x32)", at_least=8, at_most=32)
    start_resolution: int = knob(0, "progressive resizing: views of this side for the first four fifths of the "
                                    "steps (a wsd run's stable phase), then --train-resolution (0: off)",
                                 at_least=0, at_most=32)
    pipeline: str = knob("fast", "fast (whole batches augmented on the training device) or reference (per-image "
                                 "torchvision transforms in a DataLoader, as the seed)", choices=("fast", "reference"))
    seed: int = knob(0, "seed of every random draw: the same seed on the same machine repeats a run exactly")
    sync_bn: bool = knob(False, "true: under torchrun, BatchNorm statistics over the global batch")
    # what is measured and saved along the way
    eval_every: int = knob(2, "epochs between measurements of held-out loss, p_pos and top-1", MONITOR, at_least=1)
    eval_batches: int = knob(40, "batches of held-out views a measurement uses", MONITOR, at_least=1)
    knn_bank: int = knob(1000, "labelled training images of the online k-NN's bank at every evaluation (0: no "
                               "k-NN): whether the features separate classes, which the loss cannot say",
                         MONITOR, at_least=0)
    knn_queries: int = knob(500, "held-out images the online k-NN classifies at every evaluation (0: no k-NN)",
                            MONITOR, at_least=0)
    save_every: int = knob(10, "epochs between checkpoint and log writes (always also at the end)", MONITOR,
                           at_least=1)
    # where and how the arithmetic runs
    sync_every: int = knob(0, "steps between reading the loss back from the device (0: every step on a CPU, where "
                              "it costs nothing, 20 on GPUs, where each read stalls the device)", MACHINE,
                           at_least=0)
    device: str = knob("auto", "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps", MACHINE)
    num_workers: int = knob(0, "DataLoader worker processes of the reference pipeline", MACHINE, at_least=0)
    precision: str = knob("auto", "auto (bf16 where this hardware multiplies it natively, else fp32), bf16 or fp32; "
                                  "the loss is always fp32; $SIMCLR_PRECISION sets it on the command line and in "
                                  "the chapters", MACHINE, choices=("auto", "bf16", "fp32"))
    compile: bool = knob(False, "true: torch.compile the model (minutes of compilation; pays off on long GPU runs)",
                         MACHINE)
    # the linear probe: multinomial logistic regression on standardised frozen features, full-batch L-BFGS
    probe_steps: int = knob(100, "L-BFGS iterations of the linear probe (full batch, on cached features)", PROBE,
                            at_least=1)
    probe_weight_decay: float = knob(1e-4, "L2 penalty on the linear probe's weights", PROBE, at_least=0)
    probe_train_subset: int = knob(0, "train the probe on a class-balanced subset of this many images (0: the whole "
                                      "split)", PROBE, at_least=0)

    def validate(self) -> Config:
        """Raise ValueError naming the first bad field and what to do about it; return self when fine."""
        if self.batch_size < 2:
            raise ValueError(f"config field batch_size={self.batch_size} must be at least 2: "
                             "NT-Xent needs other images in the batch as negatives")
        validate_knobs(self)
        if 0 < self.start_resolution < 8:
            raise ValueError(f"config field start_resolution={self.start_resolution} must be 0 (off) or lie in "
                             f"[8, 32]")
        if self.start_resolution and (self.pipeline != "fast" or self.time_budget):
            raise ValueError("config field start_resolution needs pipeline='fast' and no time_budget (a budget "
                             "times its steps at one resolution): set --start-resolution 0, or train for --steps")
        try:
            if not augmentation_steps(self.augmentations):
                raise ValueError(f"augmentations={self.augmentations!r}: give a comma-separated choice of "
                                 f"{', '.join(RECIPE_STEPS)}")
        except ValueError as error:
            raise ValueError(f"config field {error}") from None
        if self.warmup_epochs >= self.epochs and not self.steps:
            raise ValueError(f"config field warmup_epochs={self.warmup_epochs} must be below epochs={self.epochs}: "
                             "the warm-up is the start of the run, not all of it")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise ValueError(f"config field device={self.device!r}: use auto, cpu, cuda, cuda:N or mps")
        if self.data != "cifar10" and not os.path.isdir(self.data):
            raise ValueError(f"config field data={self.data!r} is neither 'cifar10' nor an existing folder: "
                             f"pass --data cifar10, or the path of a folder holding train/ and test/ "
                             f"class folders (or set {ENVIRONMENT['data']})")
        return self

    @property
    def augmentation_steps(self) -> tuple[str, ...]:
        """`augmentations` as a tuple of step names: "crop,flip" -> ("crop", "flip")."""
        return augmentation_steps(self.augmentations)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields: {sorted(known)}")
        return cls(**values)


# What may differ between a stored run and the config that asks for it, by role (knobs.py): a run continued with
# --resume may train longer, on another machine, measuring and saving on another rhythm; a finished run reused as
# it is (`load_or_train`, the bench scripts) must match in everything but the probe that reads it afterwards.
RESUME_MAY_CHANGE = frozenset({LENGTH, MACHINE, MONITOR, PROBE})
REUSE_MAY_CHANGE = frozenset({PROBE})
# The fields whose default the environment sets where a config is made from the command line or a chapter
# (`from_environment`); never in the dataclass, so that `Config()` is the same in every shell.
ENVIRONMENT = {"data": "SIMCLR_DATA", "precision": "SIMCLR_PRECISION"}
BOOK_SCALE_ENV_VAR = "SIMCLR_BOOK_SCALE"  # the chapters' run length: see `scaled` and `book_scale`


def from_environment() -> dict[str, str]:
    """The config fields set by the environment ($SIMCLR_DATA, $SIMCLR_PRECISION), for the command line and the
    chapters to apply over a preset."""
    return {name: os.environ[variable] for name, variable in ENVIRONMENT.items() if os.environ.get(variable)}


def environment_default(name: str) -> Any:
    """The value of field `name` the environment sets, else the field's default: a chapter's or script's default."""
    return from_environment().get(name, knob_fields(Config)[name].default)


def book_scale() -> float:
    """$SIMCLR_BOOK_SCALE (default 1): how long the chapters' run is, as a share of the preset's (`scaled`)."""
    return float(os.environ.get(BOOK_SCALE_ENV_VAR) or 1)


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
