"""Contrastive pre-training: the loop, the SSL metrics, the checkpoints and the log.

Read top to bottom: build the two-view loader, the model and the optimizer (AdamW as the seed); for every
batch embed both views, take NT-Xent, step; every `eval_every` epochs measure loss, p_pos and top-1 on
held-out views; every `save_every` epochs (and at the end) write `checkpoints/latest.pt` and `logs/ssl_results.json`.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .augment import SSLAugmentation, recipe_params, simclr_transform
from .batch_augment import DeviceTwoViewLoader
from .config import Config, describe_preset
from .data import ImageSet, load_split
from .loss import contrastive_loss, contrastive_metrics, simclr_logits_targets
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
from .runtime import choose_precision, machine_description, pick_device, seed_everything
from .storage import RunLock, RunPaths, load_checkpoint, save_checkpoint, save_json

CHANNELS_LAST_DEVICES = ("cpu", "cuda")  # measured here: 18% faster steps on the CPU (bench notes in README)


def two_view_loader(images: ImageSet, cfg: Config, shuffle: bool, seed: int, device: torch.device,
                    world: distributed.Distributed = distributed.SINGLE_PROCESS) -> DataLoader | DeviceTwoViewLoader:
    """Batches of (view 1, view 2), from the fast on-device pipeline or the reference per-image one.

    Under torchrun each process gets its shard: batch_size / world_size images of every global batch.
    """
    params = recipe_params(cfg.augmentation_steps, cfg.crop_min_scale, cfg.train_resolution)
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
    """Mean loss (NT-Xent, or DCL for `loss="dcl"`: the two are not comparable), p_pos and top-1 over
    `cfg.eval_batches` batches of held-out views.

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
            totals["loss"] += contrastive_loss(logits, targets, cfg.loss == "dcl").item()
            for name, value in contrastive_metrics(logits, targets).items():
                totals[name] += value
            batches += 1
            if batches == cfg.eval_batches:
                break
    model.train()
    return {name: total / batches for name, total in totals.items()}


CALIBRATION_STEPS = (2, 5)  # steps a time budget runs untimed (kernel set-up), then timed
# plan for 90% of the budget: on shared machines some epochs take 25% longer than the calibration promised
# (measured on a 2-core AMD EPYC: 9.6 s an epoch mostly, 12.6 s at worst), and checkpoints take time too
BUDGET_MARGIN = 0.90


def median_step_seconds(train_step: Callable[[], torch.Tensor], model: nn.Module, optimizer: torch.optim.Optimizer,
                        steps: tuple[int, int] = CALIBRATION_STEPS) -> float:
    """Median seconds of `train_step` (which returns its loss), timed on a few steps whose effect is then undone
    (weights, BatchNorm statistics, optimizer state): untimed warm-up steps first, then the timed ones."""
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    warmup, timed = steps
    times = []
    for _ in range(warmup + timed):
        start = time.perf_counter()
        train_step().item()  # wait for the device
        times.append(time.perf_counter() - start)
    model.load_state_dict(saved_model)
    optimizer.load_state_dict(saved_optimizer)
    optimizer.zero_grad(set_to_none=True)
    return sorted(times[warmup:])[timed // 2]


def calibrate_step_seconds(forward: nn.Module, model: SimCLRModel, optimizer: torch.optim.Optimizer,
                           loader: DataLoader | DeviceTwoViewLoader, cfg: Config, device: torch.device,
                           bf16: bool, world: distributed.Distributed,
                           steps: tuple[int, int] = CALIBRATION_STEPS) -> float:
    """Median seconds of a pre-training step, measured on a few steps whose effect is then undone.

    The views come from `loader`, a loader of their own, so the run that follows is the one `--steps N` would
    train: a budget only chooses N. Under torchrun every process plans for the slowest.
    """
    batches = itertools.chain.from_iterable(itertools.repeat(loader))  # a small set: its next epoch

    def train_step() -> torch.Tensor:
        x1, x2 = next(batches)
        loss = distributed.global_nt_xent(*embed_pairs(forward, x1, x2, device, bf16), cfg.temperature, world,
                                          cfg.loss == "dcl")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    seconds = median_step_seconds(train_step, model, optimizer, steps)
    return distributed.max_over_processes(seconds, world, device)


def budget_steps(budget: float, spent: float, step_seconds: float, eval_seconds: float, steps_per_epoch: int,
                 cfg: Config) -> int:
    """How many steps fit in what is left of `budget` seconds, evaluations included (never fewer than 1).

    An evaluation follows every `eval_every` epochs and the last step: n steps cost
    n * step_seconds + (n / (steps_per_epoch * eval_every) + 1) * eval_seconds.
    """
    available = BUDGET_MARGIN * (budget - spent) - eval_seconds
    per_step = step_seconds + eval_seconds / (steps_per_epoch * cfg.eval_every)
    return max(1, int(available / per_step))


def sync_interval(cfg: Config, device: torch.device) -> int:
    """Steps between host-device synchronisations: each one stalls an accelerator's queue."""
    return cfg.sync_every or (1 if device.type == "cpu" else 20)


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

    start = time.perf_counter()  # a time budget counts from here: set-up, calibration, steps and evaluations
    bf16, precision_reason = choose_precision(cfg.precision, device)
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
    steps_per_epoch = len(train_loader)

    this_run = {"config": cfg.to_dict(), "device": str(device), "precision": "bf16" if bf16 else "fp32",
                "precision_reason": precision_reason, "machine": machine_description(),
                "finished": False}  # what a resumed run states afresh
    log: dict[str, Any] = {**this_run, "train_images": len(train_set), "steps_per_epoch": steps_per_epoch,
                           "step_loss": [], "epochs": [], "evals": [], "train_seconds": 0.0}
    total_steps = cfg.steps or cfg.epochs * steps_per_epoch
    first_epoch, skip_steps, carried_loss = 1, 0, 0.0
    if saved is not None:
        log = {**saved["log"], **this_run}
        if cfg.time_budget:  # the plan the budget made when the run started
            total_steps = log["total_steps"]
        first_epoch, skip_steps, carried_loss = saved["epoch"] + 1, saved["step_in_epoch"], saved["epoch_loss"]
    elif cfg.time_budget:
        calibration = two_view_loader(train_set, cfg, shuffle=True, seed=cfg.seed + 2, device=device, world=world)
        step_seconds = calibrate_step_seconds(forward, model, optimizer, calibration, cfg, device, bf16, world)
        eval_start = time.perf_counter()
        if world.is_main:  # measured once: an evaluation's cost depends on the device far more than a step's
            evaluate_ssl(model, eval_set, cfg, device, bf16)
        eval_seconds = distributed.max_over_processes(time.perf_counter() - eval_start, world, device)
        planned = budget_steps(cfg.time_budget, time.perf_counter() - start, step_seconds, eval_seconds,
                               steps_per_epoch, cfg)
        total_steps = min(total_steps, planned)
        log["budget"] = {"seconds": cfg.time_budget, "calibrated_step_seconds": round(step_seconds, 4),
                         "evaluation_seconds": round(eval_seconds, 3), "planned_steps": planned}
    log["total_steps"] = total_steps
    if cfg.warmup_epochs * steps_per_epoch >= total_steps:
        raise ValueError(f"warmup_epochs={cfg.warmup_epochs} ({cfg.warmup_epochs * steps_per_epoch} steps) covers "
                         f"the whole run of {total_steps} steps: lower --warmup-epochs or train longer")
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, cfg.warmup_epochs * steps_per_epoch, cfg.lr_schedule))
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
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
        print(start_banner(cfg, out, str(device), this_run["precision_reason"], len(train_set), len(eval_set),
                           log), flush=True)
    bar = tqdm(total=total_steps, initial=len(log["step_loss"]), desc="SimCLR pre-training", unit="step",
               disable=not (progress and world.is_main))
    start -= log["train_seconds"]
    every = sync_interval(cfg, device)
    step = len(log["step_loss"])
    epoch = first_epoch
    with stop_requests() as stop:
        replan = bool(cfg.time_budget) and saved is None  # once, after the first epoch of a new budget run
        loop_start = time.perf_counter()
        while step < total_steps:
            model.train()
            epoch_rng = capture_rng(train_loader)
            batches = iter(train_loader)
            for _ in range(skip_steps):  # resuming mid-epoch: redraw the steps already taken, unused
                next(batches)
            step_in_epoch, epoch_loss = skip_steps, carried_loss
            skip_steps, carried_loss = 0, 0.0
            unread: list[torch.Tensor] = []  # losses still on the device
            for x1, x2 in batches:
                z1, z2 = embed_pairs(forward, x1, x2, device, bf16)
                loss = distributed.global_nt_xent(z1, z2, cfg.temperature, world, cfg.loss == "dcl")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step, step_in_epoch = step + 1, step_in_epoch + 1
                unread.append(loss.detach())
                if len(unread) < every and step < total_steps and step_in_epoch < steps_per_epoch:
                    continue
                values = distributed.mean_over_processes(torch.stack(unread), world).tolist()  # the global loss
                unread.clear()
                for offset, value in enumerate(values):
                    if not math.isfinite(value):
                        raise FloatingPointError(
                            f"the loss became {value} at step {step - len(values) + offset + 1} (epoch {epoch}); "
                            f"the last good checkpoint is {paths.checkpoint}: lower --lr or raise --temperature "
                            f"and retrain")
                epoch_loss += sum(values)
                log["step_loss"].extend(round(value, 5) for value in values)
                bar.update(len(values))
                bar.set_postfix(epoch=epoch, loss=f"{values[-1]:.3f}")
                over_budget = bool(cfg.time_budget) and time.perf_counter() - start > cfg.time_budget
                if distributed.any_process(over_budget, world, device) and step < total_steps:
                    log["budget"]["stopped_early_at_step"] = step  # the machine slowed down: end the run here
                    total_steps = log["total_steps"] = step
                if distributed.any_process(bool(stop), world, device):
                    log["train_seconds"] = round(time.perf_counter() - start, 2)
                    save(epoch - 1, step_in_epoch, epoch_loss, epoch_rng)
                    bar.close()
                    raise TrainingStopped(
                        f"stopped by {stop[0] if stop else 'another process'} at step {step} (epoch {epoch}); "
                        f"checkpoint saved to {paths.checkpoint}. Resume with: "
                        f"python -m simclr_core train --resume --out {out}")
                if step >= total_steps:
                    break
            if replan and step < total_steps:  # a whole epoch of real steps times them better than calibration
                replan = False
                step_seconds = distributed.max_over_processes((time.perf_counter() - loop_start) / step, world, device)
                fits = step + budget_steps(cfg.time_budget, time.perf_counter() - start, step_seconds,
                                           log["budget"]["evaluation_seconds"], steps_per_epoch, cfg)
                total_steps = log["total_steps"] = max(step + 1, min(cfg.steps or cfg.epochs * steps_per_epoch, fits))
                log["budget"].update(measured_step_seconds=round(step_seconds, 4), replanned_steps=total_steps)
                bar.total = total_steps
                bar.refresh()
            done = step >= total_steps
            log["train_seconds"] = round(time.perf_counter() - start, 2)
            reached = epoch - 1 + step_in_epoch / steps_per_epoch  # a run may end mid-epoch
            reached = epoch if step_in_epoch == steps_per_epoch else round(reached, 3)
            log["epochs"].append({"epoch": reached,
                                  "loss": epoch_loss / step_in_epoch, "lr": scheduler.get_last_lr()[0],
                                  "seconds": log["train_seconds"]})
            if world.is_main and (epoch % cfg.eval_every == 0 or done):
                log["evals"].append({"epoch": reached,
                                     **evaluate_ssl(model, eval_set, cfg, device, bf16)})
                log["train_seconds"] = round(time.perf_counter() - start, 2)
            log["finished"] = done
            log["peak_memory_mb"] = peak_memory_mb(device)
            if epoch % cfg.save_every == 0 or done:
                save(epoch, 0, 0.0, capture_rng(train_loader))
            epoch += 1
    bar.close()
    return log


def start_banner(cfg: Config, out: str, device: str, precision: str, train_images: int, eval_images: int,
                 log: dict[str, Any]) -> str:
    """Two lines that say what is about to run and where it goes, before the first step."""
    data = f"{cfg.data} in {cfg.data_root}" if cfg.data == "cifar10" else cfg.data
    done, total, per_epoch = len(log["step_loss"]), log["total_steps"], log["steps_per_epoch"]
    resumed = f", resuming after step {done:,}" if done else ""
    plan = f"the {cfg.time_budget:g} s budget fits {total:,} steps" if cfg.time_budget else f"{total:,} steps"
    return (f"training: {describe_preset(cfg.to_dict())} on {device} in {precision}; data {data}: "
            f"{train_images:,} training images, {eval_images:,} held-out\n"
            f"{plan} of {cfg.batch_size} images ({total / per_epoch:.3g} epochs of {per_epoch:,} steps)"
            f"{resumed}; output in {out}")


def seconds_per_step(cfg: Config, device: torch.device) -> float:
    """Measured wall time of one training step of `cfg` on `device` (augmentation, forward, NT-Xent, backward,
    optimizer step), on random images; the global random state is left as it was. Evaluations are not
    included: they add a few percent to long runs."""
    warmup, timed = 1, 1  # the first step pays for one-off set-up (memory, kernels): time the one after it
    images = torch.randint(0, 256, ((warmup + timed) * cfg.batch_size, 3, 32, 32), dtype=torch.uint8)
    loader = two_view_loader(ImageSet(images, torch.zeros(len(images), dtype=torch.int64), ["random"]), cfg,
                             shuffle=False, seed=cfg.seed, device=device)
    with torch.random.fork_rng(devices=[]):
        model = SimCLRModel(cfg.width, cfg.proj_dim).to(device)
        if device.type in CHANNELS_LAST_DEVICES:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
        return calibrate_step_seconds(model, model, optimizer, loader, cfg, device,
                                      choose_precision(cfg.precision, device)[0], distributed.SINGLE_PROCESS,
                                      (warmup, timed))


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
