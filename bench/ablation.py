"""What the augmentations and the batch size each contribute on the quick preset: train, probe, store.

Every variant is the `quick` preset with one thing changed, trained for the same number of images (STEPS
batches of 128 by default) rather than for a time budget, so its probe accuracy depends on the recipe and not
on how fast or how busy the machine was. The variants:

- augmentations: crop only, colour only, crop + colour, and the full recipe (crop, flip, jitter, blur); the
  horizontal flip stays in every one of them, as it does in the SimCLR paper's ablation;
- batch size: 64 and 256 images a batch besides the recipe's 128, each seeing the same number of images
  (twice or half the steps) with AdamW's learning rate scaled by the square root of the batch ratio.

Each trained encoder gets the book's linear probe (all 50,000 training / 10,000 test images). Chapter 1
reads the augmentation rows of bench/results/ablation.json and chapter 4 the batch-size rows; a rerun
replaces the rows it recomputes. Usage (about 3 minutes a variant on a 2-core CPU):

    python bench/ablation.py --data data/cifar10-jpeg [--only NAME ...] [--steps 1000]
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from simclr_core.config import environment_default, make_config
from simclr_core.data import load_split
from simclr_core.engine import train_ssl
from simclr_core.probe import load_encoder, probe_encoders
from simclr_core.results import RowFile
from simclr_core.storage import RunPaths

VARIANTS: dict[str, dict[str, Any]] = {  # name -> the fields of the quick preset it changes
    "crop only": dict(augmentations="crop,flip"),
    "colour only": dict(augmentations="flip,jitter"),
    "crop + colour": dict(augmentations="crop,flip,jitter"),
    "full recipe": {},  # the book's: crop, flip, jitter, blur, batch 128
    "batch 64": dict(batch_size=64),
    "batch 256": dict(batch_size=256),
}
RESULTS = Path(__file__).parent / "results" / "ablation.json"


def variant_config(name: str, data: str, steps: int) -> dict[str, Any]:
    """The variant's overrides of `quick`, with the steps (and learning rate) that keep the images seen equal."""
    quick = make_config("quick", data=data)
    overrides = dict(VARIANTS[name])
    batch = overrides.get("batch_size", quick.batch_size)
    overrides.update(steps=steps * quick.batch_size // batch, time_budget=0.0)
    if batch != quick.batch_size:  # AdamW: the square-root rule
        overrides["lr"] = quick.lr * math.sqrt(batch / quick.batch_size)
    return overrides


def run_variant(name: str, data: str, steps: int) -> dict[str, Any]:
    overrides = variant_config(name, data, steps)
    cfg = make_config("quick", data=data, save_every=1000, **overrides)
    out = tempfile.mkdtemp(prefix="ablation-")
    try:
        log = train_ssl(cfg, out)
        encoder, _ = load_encoder(str(RunPaths(out).checkpoint))
        train_set, test_set = load_split(data, "train", cfg.data_root), load_split(data, "test", cfg.data_root)
        probe = probe_encoders({"simclr": encoder}, train_set, test_set, cfg)["simclr"]
    finally:
        shutil.rmtree(out)
    return {"overrides": overrides, "augmentations": cfg.augmentations, "batch_size": cfg.batch_size,
            "steps": log["total_steps"], "images_seen": log["total_steps"] * cfg.batch_size,
            "train_seconds": log["train_seconds"], "precision": log["precision"],
            "simclr_test_accuracy": round(probe.test_accuracy, 4), "probe_train_images": len(train_set),
            "test_images": len(test_set)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--only", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=1000, help="steps of the batch-128 variants")
    args = parser.parse_args()
    for name in args.only:  # a rerun replaces the rows it makes again
        RowFile(RESULTS).record("ablation", name, lambda name=name: run_variant(name, args.data, args.steps),
                                args.data, redo=True)


if __name__ == "__main__":
    main()
