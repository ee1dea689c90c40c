"""Multi-crop at equal time: does adding small local crops to SimCLR's two views pay on a CPU budget?

A prototype outside the engine (it is not a training option of the package): the `quick` preset's network, data,
optimizer and two 16x16 views, plus K local crops per image (5-30% of the area, resized to LOCAL_SIDE pixels)
that are each contrasted with both global views by NT-Xent; the loss is the mean over all view pairs. K = 0 is
plain SimCLR trained by this same loop, so the two rows differ only in the local crops. Each variant times a few
steps, then trains as many as fit in `--seconds` with a cosine schedule fitted to them, and gets the book's
linear probe (all 50,000 training / 10,000 test images). Results go to bench/results/multicrop.json. Usage:

    python bench/multicrop.py --data data/cifar10-jpeg [--local-crops 0 2] [--seconds 265]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from simclr_core.augment import AugmentationParams, recipe_params
from simclr_core.batch_augment import BatchAugmentation
from simclr_core.config import environment_default, make_config
from simclr_core.data import load_split
from simclr_core.engine import train_step
from simclr_core.loss import nt_xent
from simclr_core.model import SimCLRModel
from simclr_core.optim import lr_factor, make_optimizer
from simclr_core.probe import probe_encoders
from simclr_core.results import RowFile
from simclr_core.runtime import seed_everything

LOCAL_SIDE = 8
LOCAL_SCALE = (0.05, 0.3)
TIMING_STEPS = (3, 10)  # warm-up, then timed; at learning rate 0 they move no weight (Adam and BN see them)
RESULTS = Path(__file__).parent / "results" / "multicrop.json"


def run(data: str, local_crops: int, seconds: float) -> dict:
    cfg = make_config("quick", data=data)
    seed_everything(cfg.seed)
    train = load_split(data, "train", cfg.data_root, cfg.train_subset, cfg.seed)
    model = SimCLRModel(cfg.width, cfg.proj_dim).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    global_views = BatchAugmentation(recipe_params(cfg.augmentation_steps, cfg.crop_min_scale,
                                                   cfg.train_resolution), seed=cfg.seed)
    local_views = BatchAugmentation(AugmentationParams(crop_scale=LOCAL_SCALE, output_size=LOCAL_SIDE),
                                    seed=cfg.seed + 1)
    order = torch.Generator().manual_seed(cfg.seed)

    def batches() -> Iterator[torch.Tensor]:
        while True:
            shuffled = torch.randperm(len(train), generator=order)
            for start in range(0, len(train) - cfg.batch_size + 1, cfg.batch_size):
                yield train.images[shuffled[start:start + cfg.batch_size]]

    def embed(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x.contiguous(memory_format=torch.channels_last)).float()

    def step(images: torch.Tensor, lr_scale: float) -> float:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * lr_scale

        def multi_crop_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
            """NT-Xent of the two global views, and of each local crop against both of them, averaged."""
            losses = [nt_xent(z1, z2, cfg.temperature)]
            if local_crops:
                local = embed(torch.cat([local_views(images) for _ in range(local_crops)])).chunk(local_crops)
                losses += [nt_xent(z, zl, cfg.temperature) for zl in local for z in (z1, z2)]
            return sum(losses) / len(losses)

        return train_step(model, optimizer, global_views(images), global_views(images), multi_crop_loss,
                          torch.device("cpu"), bf16=True).item()

    stream = batches()
    model.train()
    warm, timed = TIMING_STEPS
    for _ in range(warm):
        step(next(stream), 0.0)
    start = time.perf_counter()
    for _ in range(timed):
        step(next(stream), 0.0)
    total = int(seconds / ((time.perf_counter() - start) / timed))
    start = time.perf_counter()
    for i in range(total):
        step(next(stream), lr_factor(i, total, 0, "cosine"))
    train_seconds = time.perf_counter() - start
    full, test = load_split(data, "train", cfg.data_root), load_split(data, "test", cfg.data_root)
    probe = probe_encoders({"simclr": model.encoder}, full, test, cfg, progress=False)["simclr"]
    return {"local_crops": local_crops, "local_side": LOCAL_SIDE, "local_scale": LOCAL_SCALE, "steps": total,
            "planned_seconds": seconds, "train_seconds": round(train_seconds, 1),
            "simclr_test_accuracy": round(probe.test_accuracy, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--local-crops", type=int, nargs="*", default=[0, 2])
    parser.add_argument("--seconds", type=float, default=265.0, help="training time each variant plans for")
    args = parser.parse_args()
    for local_crops in args.local_crops:  # a rerun is another sample: it replaces nothing and is always made
        RowFile(RESULTS).record("multicrop", f"{local_crops} local crops, {args.seconds:g} s",
                                lambda n=local_crops: run(args.data, n, args.seconds), args.data, redo=True)


if __name__ == "__main__":
    main()
