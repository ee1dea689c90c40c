"""Contrastive pre-training: the loop, the SSL metrics, the checkpoints and the log.

Read top to bottom: build the two-view loader, the model and AdamW; for every batch embed both views,
take NT-Xent, step; every `eval_every` epochs measure loss, p_pos and top-1 on held-out views; every
`save_every` epochs (and at the end) write `checkpoints/latest.pt` and `logs/ssl_results.json`.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from .augment import AugmentationParams, SSLAugmentation, simclr_transform
from .batch_augment import DeviceTwoViewLoader
from .config import Config
from .data import ImageSet, load_split
from .loss import contrastive_metrics, nt_xent, simclr_logits_targets
from .model import SimCLRModel
from .runtime import pick_device, seed_everything
from .storage import RunPaths, load_checkpoint, load_json, save_checkpoint, save_json


def two_view_loader(images: ImageSet, cfg: Config, shuffle: bool, seed: int,
                    device: torch.device) -> DataLoader | DeviceTwoViewLoader:
    """Batches of (view 1, view 2), from the fast on-device pipeline or the reference per-image one."""
    params = AugmentationParams(crop_scale=(cfg.crop_min_scale, 1.0))
    if cfg.pipeline == "fast":
        return DeviceTwoViewLoader(images.images, cfg.batch_size, params, seed, device, shuffle)
    return DataLoader(SSLAugmentation(images, simclr_transform(params)), batch_size=cfg.batch_size,
                      shuffle=shuffle, drop_last=True, num_workers=cfg.num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))


def embed_pairs(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """z for both views; on CUDA the network runs in bfloat16 and channels_last, the loss stays in float32."""
    x1, x2 = (x.to(device, non_blocking=True) for x in (x1, x2))
    if device.type == "cuda":
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        z = model(torch.cat([x1, x2]))  # one pass: both views share the BatchNorm statistics
    return z[:len(x1)].float(), z[len(x1):].float()


@torch.no_grad()
def evaluate_ssl(model: SimCLRModel, images: ImageSet, cfg: Config, device: torch.device) -> dict[str, float]:
    """Mean NT-Xent loss, p_pos and top-1 over `cfg.eval_batches` batches of held-out views.

    The views are drawn from a fixed seed, so every evaluation of a run sees the same images and crops,
    and the training run's random stream is left untouched.
    """
    model.eval()
    totals = {"loss": 0.0, "p_pos": 0.0, "top1": 0.0}
    batches = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        for x1, x2 in two_view_loader(images, cfg, shuffle=False, seed=cfg.seed + 1, device=device):
            logits, targets = simclr_logits_targets(*embed_pairs(model, x1, x2, device), cfg.temperature)
            totals["loss"] += torch.nn.functional.cross_entropy(logits, targets).item()
            for name, value in contrastive_metrics(logits, targets).items():
                totals[name] += value
            batches += 1
            if batches == cfg.eval_batches:
                break
    model.train()
    return {name: total / batches for name, total in totals.items()}


def train_ssl(cfg: Config, out: str = ".", progress: bool = True,
              train_set: ImageSet | None = None, eval_set: ImageSet | None = None) -> dict[str, Any]:
    """Pre-train a SimCLR model as `cfg` says; return the log that is also written to `out`.

    `train_set` / `eval_set` default to the configured dataset's train / test split.
    """
    cfg.validate()
    paths = RunPaths(out)
    paths.check_writable()
    device = pick_device(cfg.device)
    if train_set is None:
        train_set = load_split(cfg.data, "train", cfg.data_root, cfg.train_subset, cfg.seed)
    if eval_set is None:
        eval_set = load_split(cfg.data, "test", cfg.data_root)
    for name, images in (("training", train_set), ("evaluation", eval_set)):
        if len(images) < cfg.batch_size:
            raise ValueError(f"the {name} set has {len(images)} images, fewer than batch_size="
                             f"{cfg.batch_size}: lower --batch-size or use more images")

    seed_everything(cfg.seed)
    model = SimCLRModel(cfg.width, cfg.proj_dim).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    forward = torch.compile(model) if cfg.compile else model
    train_loader = two_view_loader(train_set, cfg, shuffle=True, seed=cfg.seed, device=device)
    total_steps = cfg.epochs * len(train_loader)
    schedule = (lambda step: 0.5 * (1 + math.cos(math.pi * step / total_steps))) \
        if cfg.lr_schedule == "cosine" else (lambda step: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    log: dict[str, Any] = {"config": cfg.to_dict(), "device": str(device), "train_images": len(train_set),
                           "step_loss": [], "epochs": [], "evals": [], "train_seconds": 0.0,
                           "finished": False}

    def save(epoch: int) -> None:
        save_checkpoint(paths.checkpoint, {"config": cfg.to_dict(), "epoch": epoch,
                                           "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                           "scheduler": scheduler.state_dict()})
        save_json(paths.ssl_log, log)

    bar = tqdm(total=total_steps, desc="SimCLR pre-training", unit="step", disable=not progress)
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        epoch_loss = 0.0
        for x1, x2 in train_loader:
            loss = nt_xent(*embed_pairs(forward, x1, x2, device), cfg.temperature)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} at step {bar.n + 1} (epoch {epoch}); the last good "
                    f"checkpoint is {paths.checkpoint}: lower --lr or raise --temperature and retrain")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.item()
            log["step_loss"].append(round(loss.item(), 5))
            bar.update()
            bar.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        log["train_seconds"] = round(time.perf_counter() - start, 2)
        log["epochs"].append({"epoch": epoch, "loss": epoch_loss / len(train_loader),
                              "lr": scheduler.get_last_lr()[0], "seconds": log["train_seconds"]})
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            log["evals"].append({"epoch": epoch, **evaluate_ssl(model, eval_set, cfg, device)})
        log["finished"] = epoch == cfg.epochs
        if epoch % cfg.save_every == 0 or epoch == cfg.epochs:
            save(epoch)
    bar.close()
    log["peak_memory_mb"] = peak_memory_mb(device)
    save_json(paths.ssl_log, log)
    return log


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: allocated GPU memory on CUDA, resident set size on the CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[SimCLRModel, Config]:
    """The model saved in a checkpoint, with the config it was trained with."""
    state = load_checkpoint(checkpoint)
    cfg = Config.from_dict(state["config"])
    model = SimCLRModel(cfg.width, cfg.proj_dim)
    model.load_state_dict(state["model"])
    return model.to(device), cfg


def load_or_train(cfg: Config, out: str = ".", progress: bool = True) -> tuple[SimCLRModel, dict[str, Any]]:
    """Reuse the finished run in `out` if it was trained with exactly `cfg`; else train it now.

    This lets every notebook run alone: the first one that needs the encoder trains it, the rest reuse it.
    """
    paths = RunPaths(out)
    if paths.checkpoint.is_file() and paths.ssl_log.is_file():
        log = load_json(paths.ssl_log)
        if log.get("finished") and log["config"] == cfg.to_dict():
            return load_model(paths.checkpoint, pick_device(cfg.device))[0], log
    log = train_ssl(cfg, out, progress)
    return load_model(paths.checkpoint, pick_device(cfg.device))[0], log
