"""Contrastive pre-training: the loop, the SSL metrics, the checkpoints and the log.

Read top to bottom: build the two-view loader, the model and the optimizer (AdamW as the seed); for every
batch embed both views, take NT-Xent, step; every `eval_every` epochs measure loss, p_pos and top-1 on
held-out views; every `save_every` epochs (and at the end) write `checkpoints/latest.pt` and `logs/ssl_results.json`.
"""

from __future__ import annotations

import contextlib
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

from . import distributed
from .augment import AugmentationParams, SSLAugmentation, simclr_transform
from .batch_augment import DeviceTwoViewLoader
from .config import Config, describe_preset
from .data import ImageSet, load_split
from .loss import contrastive_metrics, simclr_logits_targets
from .model import SimCLRModel
from .optim import lr_factor, make_optimizer
from .resume import (
    TrainingStopped,
    capture_rng,
    check_resumable,
    check_same_config,
    refuse_to_replace,
    restore_rng,
    stop_requests,
    stored_run_log,
)
from .runtime import pick_device, seed_everything, uses_bf16
from .storage import RunLock, RunPaths, load_checkpoint, save_checkpoint, save_json

CHANNELS_LAST_DEVICES = ("cpu", "cuda")  # measured here: 18% faster steps on the CPU (bench notes in README)


def two_view_loader(images: ImageSet, cfg: Config, shuffle: bool, seed: int, device: torch.device,
                    world: distributed.Distributed = distributed.SINGLE_PROCESS) -> DataLoader | DeviceTwoViewLoader:
    """Batches of (view 1, view 2), from the fast on-device pipeline or the reference per-image one.

    Under torchrun each process gets its shard: batch_size / world_size images of every global batch.
    """
    params = AugmentationParams(crop_scale=(cfg.crop_min_scale, 1.0))
    if cfg.pipeline == "fast":
        return DeviceTwoViewLoader(images.images, cfg.batch_size // world.world_size, params, seed, device,
                                   shuffle, world.rank, world.world_size)
    return DataLoader(SSLAugmentation(images, simclr_transform(params)), batch_size=cfg.batch_size,
                      shuffle=shuffle, drop_last=True, num_workers=cfg.num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))


def embed_pairs(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, device: torch.device,
                bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """z for both views, channels_last (faster convolutions on CPUs and GPUs); with `bf16` the network runs
    in bfloat16 (autocast) while the loss stays in float32."""
    x1, x2 = (x.to(device, non_blocking=True) for x in (x1, x2))
    if device.type in CHANNELS_LAST_DEVICES:
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        z = model(torch.cat([x1, x2]))  # one pass: both views share the BatchNorm statistics
    return z[:len(x1)].float(), z[len(x1):].float()


@torch.no_grad()
def evaluate_ssl(model: SimCLRModel, images: ImageSet, cfg: Config, device: torch.device,
                 bf16: bool = False) -> dict[str, float]:
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
            logits, targets = simclr_logits_targets(*embed_pairs(model, x1, x2, device, bf16), cfg.temperature)
            totals["loss"] += torch.nn.functional.cross_entropy(logits, targets).item()
            for name, value in contrastive_metrics(logits, targets).items():
                totals[name] += value
            batches += 1
            if batches == cfg.eval_batches:
                break
    model.train()
    return {name: total / batches for name, total in totals.items()}


def hold_run_folder(out: str, wait: bool = False) -> contextlib.AbstractContextManager[Any]:
    """The run folder's one-writer lock (`RunLock`), taken by the main process only: under torchrun the
    other processes never write."""
    return RunLock(out, wait) if distributed.setup().is_main else contextlib.nullcontext()


def train_ssl(cfg: Config, out: str = ".", progress: bool = True, train_set: ImageSet | None = None,
              eval_set: ImageSet | None = None, resume: bool = False, overwrite: bool = False,
              announce: bool = False) -> dict[str, Any]:
    """Pre-train a SimCLR model as `cfg` says; return the log that is also written to `out`.

    `train_set` / `eval_set` default to the configured dataset's train / test split. With `resume`, the run
    continues from `out`/checkpoints/latest.pt (weights, optimizer, schedule, log and every random state),
    and ends where an uninterrupted run would have. A folder that already holds a run is refused unless
    `resume` or `overwrite` says what to do with it, and one process at a time trains into a folder: a
    second one fails at once, naming the first. `announce` prints what is about to run (`start_banner`).
    """
    with hold_run_folder(out):
        if not resume and distributed.setup().is_main:
            refuse_to_replace(out, overwrite)
        return _train_ssl(cfg, out, progress, train_set, eval_set, resume, announce)


def _train_ssl(cfg: Config, out: str, progress: bool, train_set: ImageSet | None, eval_set: ImageSet | None,
               resume: bool, announce: bool) -> dict[str, Any]:
    """`train_ssl`'s work, with the run folder held."""
    cfg.validate()
    world = distributed.setup()
    if world.world_size > 1 and (cfg.batch_size % world.world_size or cfg.pipeline != "fast"):
        raise ValueError(f"under torchrun with {world.world_size} processes, batch_size={cfg.batch_size} (the "
                         f"global batch) must divide evenly among them, and the pipeline must be 'fast'")
    paths = RunPaths(out)
    if world.is_main:
        paths.check_writable()
    saved = load_checkpoint(paths.checkpoint) if resume else None
    if saved is not None:
        check_resumable(Config.from_dict(saved["config"]), cfg, paths.checkpoint)
    device = pick_device(cfg.device)
    if device.type == "cuda" and world.world_size > 1:
        device = torch.device("cuda", world.local_rank)
    if train_set is None:
        train_set = load_split(cfg.data, "train", cfg.data_root, cfg.train_subset, cfg.seed)
    if eval_set is None:
        eval_set = load_split(cfg.data, "test", cfg.data_root)
    for name, images in (("training", train_set), ("evaluation", eval_set)):
        if len(images) < cfg.batch_size:
            raise ValueError(f"the {name} set has {len(images)} images, fewer than batch_size="
                             f"{cfg.batch_size}: lower --batch-size or use more images")

    bf16 = uses_bf16(cfg.precision, device)
    seed_everything(cfg.seed)
    model = SimCLRModel(cfg.width, cfg.proj_dim).to(device)
    if device.type in CHANNELS_LAST_DEVICES:
        model = model.to(memory_format=torch.channels_last)
    if world.world_size > 1 and cfg.sync_bn:  # BatchNorm statistics over the global batch, as one process
        model = distributed.use_global_batch_norm(model)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    forward: nn.Module = model
    if world.world_size > 1:
        forward = nn.parallel.DistributedDataParallel(model, device_ids=None if device.index is None
                                                      else [device.index])
    forward = torch.compile(forward) if cfg.compile else forward
    train_loader = two_view_loader(train_set, cfg, shuffle=True, seed=cfg.seed, device=device, world=world)
    total_steps = cfg.epochs * len(train_loader)
    warmup_steps = cfg.warmup_epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, cfg.lr_schedule))

    this_run = {"config": cfg.to_dict(), "device": str(device), "precision": "bf16" if bf16 else "fp32",
                "finished": False}  # what a resumed run states afresh
    log: dict[str, Any] = {**this_run, "train_images": len(train_set), "step_loss": [], "epochs": [],
                           "evals": [], "train_seconds": 0.0}
    first_epoch, skip_steps, carried_loss = 1, 0, 0.0
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        log = {**saved["log"], **this_run}
        first_epoch, skip_steps, carried_loss = saved["epoch"] + 1, saved["step_in_epoch"], saved["epoch_loss"]
        restore_rng(saved["rng"], train_loader)

    def save(completed_epochs: int, step_in_epoch: int, epoch_loss: float, rng: dict[str, Any]) -> None:
        """A checkpoint at a step boundary: resuming replays the epoch's random draws up to that step."""
        if not world.is_main:
            return
        save_checkpoint(paths.checkpoint, {
            "config": cfg.to_dict(), "epoch": completed_epochs, "step_in_epoch": step_in_epoch,
            "epoch_loss": epoch_loss, "rng": rng, "log": log, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
        save_json(paths.ssl_log, log)

    if world.is_main and saved is None:  # a new run: nothing of the folder's earlier run may outlive it
        for stale in paths.written_files():
            stale.unlink(missing_ok=True)
    if announce and world.is_main:
        print(start_banner(cfg, out, str(device), this_run["precision"], len(train_set), len(eval_set),
                           len(train_loader), len(log["step_loss"])), flush=True)
    bar = tqdm(total=total_steps, initial=len(log["step_loss"]), desc="SimCLR pre-training", unit="step",
               disable=not (progress and world.is_main))
    start = time.perf_counter() - log["train_seconds"]
    with stop_requests() as stop:
        for epoch in range(first_epoch, cfg.epochs + 1):
            model.train()
            epoch_rng = capture_rng(train_loader)
            batches = iter(train_loader)
            for _ in range(skip_steps):  # resuming mid-epoch: redraw the steps already taken, unused
                next(batches)
            step_in_epoch, epoch_loss = skip_steps, carried_loss
            skip_steps, carried_loss = 0, 0.0
            for x1, x2 in batches:
                z1, z2 = embed_pairs(forward, x1, x2, device, bf16)
                loss = distributed.global_nt_xent(z1, z2, cfg.temperature, world)
                value = distributed.mean_over_processes(loss.item(), world, device)  # the global batch's loss
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"the loss became {value} at step {len(log['step_loss']) + 1} (epoch {epoch}); the last good "
                        f"checkpoint is {paths.checkpoint}: lower --lr or raise --temperature and retrain")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step_in_epoch += 1
                epoch_loss += value
                log["step_loss"].append(round(value, 5))
                bar.update()
                bar.set_postfix(epoch=epoch, loss=f"{value:.3f}")
                if distributed.any_process(bool(stop), world, device):
                    log["train_seconds"] = round(time.perf_counter() - start, 2)
                    save(epoch - 1, step_in_epoch, epoch_loss, epoch_rng)
                    bar.close()
                    raise TrainingStopped(
                        f"stopped by {stop[0] if stop else 'another process'} at step {len(log['step_loss'])} "
                        f"(epoch {epoch}); checkpoint saved to "
                        f"{paths.checkpoint}. Resume with: python -m simclr_core train --resume --out {out}")
            log["train_seconds"] = round(time.perf_counter() - start, 2)
            log["epochs"].append({"epoch": epoch, "loss": epoch_loss / len(train_loader),
                                  "lr": scheduler.get_last_lr()[0], "seconds": log["train_seconds"]})
            if world.is_main and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                log["evals"].append({"epoch": epoch, **evaluate_ssl(model, eval_set, cfg, device, bf16)})
            log["finished"] = epoch == cfg.epochs
            log["peak_memory_mb"] = peak_memory_mb(device)
            if epoch % cfg.save_every == 0 or epoch == cfg.epochs:
                save(epoch, 0, 0.0, capture_rng(train_loader))
    bar.close()
    log["finished"] = len(log["epochs"]) >= cfg.epochs
    return log


def start_banner(cfg: Config, out: str, device: str, precision: str, train_images: int, eval_images: int,
                 steps_per_epoch: int, steps_done: int) -> str:
    """Two lines that say what is about to run and where it goes, before the first step."""
    data = f"{cfg.data} in {cfg.data_root}" if cfg.data == "cifar10" else cfg.data
    resumed = f", resuming after step {steps_done:,}" if steps_done else ""
    return (f"training: {describe_preset(cfg.to_dict())} on {device} in {precision}; data {data}: "
            f"{train_images:,} training images, {eval_images:,} held-out\n"
            f"{cfg.epochs} epochs x {steps_per_epoch:,} steps of {cfg.batch_size} images = "
            f"{cfg.epochs * steps_per_epoch:,} steps{resumed}; output in {out}")


def seconds_per_step(cfg: Config, device: torch.device, timed_steps: int = 1) -> float:
    """Measured wall time of one training step of `cfg` on `device` (augmentation, forward, NT-Xent, backward,
    optimizer step), on random images, after one warm-up step; the global random state is left as it was.
    Evaluations are not included: they add a few percent to long runs."""
    images = torch.randint(0, 256, ((timed_steps + 1) * cfg.batch_size, 3, 32, 32), dtype=torch.uint8)
    loader = two_view_loader(ImageSet(images, torch.zeros(len(images), dtype=torch.int64), ["random"]), cfg,
                             shuffle=False, seed=cfg.seed, device=device)
    bf16 = uses_bf16(cfg.precision, device)
    with torch.random.fork_rng(devices=[]):
        model = SimCLRModel(cfg.width, cfg.proj_dim).to(device)
        if device.type in CHANNELS_LAST_DEVICES:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
        for step, (x1, x2) in enumerate(loader):
            loss = distributed.global_nt_xent(*embed_pairs(model, x1, x2, device, bf16), cfg.temperature,
                                              distributed.SINGLE_PROCESS)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss.item()  # waits for the device to finish the step
            if step == 0:  # the first step pays for one-off set-up (memory, kernels): time the ones after it
                start = time.perf_counter()
    return (time.perf_counter() - start) / timed_steps


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
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(f"the weights in {checkpoint} do not match its config (width={cfg.width}, "
                         f"proj_dim={cfg.proj_dim}): the file was edited or mixed up; retrain") from error
    return model.to(device), cfg


def load_or_train(cfg: Config, out: str = ".", progress: bool = True) -> tuple[SimCLRModel, dict[str, Any]]:
    """Reuse the finished run in `out` if it was trained with exactly `cfg` (continue it if it was
    interrupted); train it now if `out` holds no run; refuse if it holds a run of another config.

    This lets every notebook run alone: the first one that needs the encoder trains it, the rest reuse it.
    A second process that asks while the first is training (two notebooks open side by side) waits for it.
    """
    paths = RunPaths(out)
    with hold_run_folder(out, wait=True):
        log = stored_run_log(out)
        if log is not None:
            check_same_config(log, cfg, out)
        if log is None or not log["finished"]:
            log = train_ssl(cfg, out, progress, resume=log is not None)
    return load_model(paths.checkpoint, pick_device(cfg.device))[0], log
