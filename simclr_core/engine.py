"""Contrastive pre-training: one SimCLR step, the loop that repeats it, and what a run of hours needs around it.

`train_step` is the whole of SimCLR's learning: embed both views of a batch in one pass, take NT-Xent, step the
optimizer. `train_ssl` runs it in a loop, read top to bottom in `_train_loop`:

1. `setup_run` makes everything the loop works with, as one `Run`: the checked config, device and precision,
   model, optimizer, loss, the two-view loader, the log, the run's length (`budget.TimeBudget`: with a time
   budget it times a few steps first) and the schedule; a resumed run restores all of it from its checkpoint,
   every random state included, and its `Position` says where to continue; a new run is evaluated once before
   its first step;
2. for every batch: `train_step`, then a schedule step; every `sync_every` steps the losses come back from the
   device (`PendingLosses`: the log, the NaN check), and the budget and stop signals (Ctrl-C, SIGTERM) are
   checked: a stop saves a checkpoint at that step and says how to resume;
3. once, after the first epoch of a budgeted run, the budget plans again from the seconds the real steps took;
4. `end_epoch`: the epoch's record, an evaluation every `eval_every` epochs (held-out loss, p_pos and top-1 of the
   contrastive task, and an online k-NN accuracy on the features: does the task teach classes?), a checkpoint
   and the log (`checkpoints/latest.pt`, `logs/ssl_results.json`) every `save_every` epochs and at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from . import distributed
from .analysis import weighted_knn_accuracy
from .augment import SSLAugmentation, recipe_params, simclr_transform
from .batch_augment import DeviceTwoViewLoader
from .budget import CALIBRATION_STEPS, TimeBudget, median_step_seconds
from .config import Config, describe_preset
from .data import ImageSet, balanced_indices, load_split, split_off_holdout
from .loss import contrastive_loss, contrastive_metrics, simclr_logits_targets
from .model import SimCLRModel, build_model, load_model, memory_format
from .optim import decay_start, lr_factor, make_optimizer
from .probe import extract_features
from .resume import TrainingStopped, capture_rng, check_resumable, restore_rng, stop_requests
from .runtime import choose_precision, machine_description, pick_device, seed_everything
from .storage import (
    RunLock,
    RunPaths,
    check_same_config,
    load_checkpoint,
    refuse_to_replace,
    save_checkpoint,
    save_json,
    stored_run_log,
)

Loader = DataLoader | DeviceTwoViewLoader
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossMaker = Callable[[Config, distributed.Distributed], LossFunction]
ModelBuilder = Callable[[Config, torch.device], SimCLRModel]


def two_view_loader(images: ImageSet, cfg: Config, shuffle: bool, seed: int, device: torch.device,
                    world: distributed.Distributed = distributed.SINGLE_PROCESS) -> Loader:
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


def view_side(cfg: Config, step: int, total_steps: int) -> int:
    """The side of the views at `step`: `start_resolution` before the decay (progressive resizing), else
    `train_resolution`."""
    if cfg.start_resolution and step < decay_start(total_steps):
        return cfg.start_resolution
    return cfg.train_resolution


def embed_pairs(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, device: torch.device,
                bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """z for both views, in the layout the device's convolutions prefer; with `bf16` the network runs in
    bfloat16 (autocast) while the loss stays in float32."""
    x1, x2 = (x.to(device, non_blocking=True).contiguous(memory_format=memory_format(device)) for x in (x1, x2))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        z = model(torch.cat([x1, x2]))  # one pass: both views share the BatchNorm statistics
    return z[:len(x1)].float(), z[len(x1):].float()


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x1: torch.Tensor, x2: torch.Tensor,
               loss_fn: LossFunction, device: torch.device, bf16: bool = False) -> torch.Tensor:
    """One optimisation step of SimCLR on a batch of B image pairs; returns the loss, still on the device."""
    z1, z2 = embed_pairs(model, x1, x2, device, bf16)  # (B, D) each: unit vectors z = normalize(g(f(x)))
    loss = loss_fn(z1, z2)  # NT-Xent: each of the 2B views picks its partner out of the other 2B - 1
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def objective(cfg: Config, world: distributed.Distributed = distributed.SINGLE_PROCESS) -> LossFunction:
    """The loss `cfg` names (NT-Xent, or DCL for `loss="dcl"`) at its temperature, over the global batch."""
    decoupled = cfg.loss == "dcl"
    return lambda z1, z2: distributed.global_nt_xent(z1, z2, cfg.temperature, world, decoupled)


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


def calibrate_step_seconds(run: Run, steps: tuple[int, int] = CALIBRATION_STEPS) -> float:
    """Median seconds of a pre-training step, measured on a few steps whose effect is then undone.

    The views come from a loader of their own, so the run that follows is the one `--steps N` would train.
    A set smaller than the calibration starts its next epoch. Under torchrun every process plans for the slowest.
    """
    loader = two_view_loader(run.train_set, run.cfg, shuffle=True, seed=run.cfg.seed + 2, device=run.device,
                             world=run.world)
    batches = itertools.chain.from_iterable(itertools.repeat(loader))
    seconds = median_step_seconds(lambda: train_step(run.forward, run.optimizer, *next(batches), run.loss_fn,
                                                     run.device, run.bf16), run.model, run.optimizer, steps)
    return distributed.max_over_processes(seconds, run.world, run.device)


def sync_interval(cfg: Config, device: torch.device) -> int:
    """Steps between host-device synchronisations: each one stalls an accelerator's queue."""
    return cfg.sync_every or (1 if device.type == "cpu" else 20)


KNN_K = 20  # neighbours that vote in the online k-NN (its bank is small)


@dataclass
class KnnMonitor:
    """A cheap, label-using view of the features during training: the weighted 20-NN accuracy (chapter 6's vote)
    of a fixed class-balanced subset of test images against a fixed class-balanced bank of training images."""

    bank: ImageSet
    queries: ImageSet

    @classmethod
    def of(cls, cfg: Config, train_set: ImageSet, eval_set: ImageSet) -> KnnMonitor | None:
        if not (cfg.knn_bank and cfg.knn_queries):
            return None
        return cls(train_set.subset(balanced_indices(train_set.labels, cfg.knn_bank, seed=0)),
                   eval_set.subset(balanced_indices(eval_set.labels, cfg.knn_queries, seed=0)))

    def accuracy(self, model: SimCLRModel, device: torch.device, bf16: bool) -> float:
        bank, queries = (extract_features(model.encoder, images, device, bf16=bf16)
                         for images in (self.bank, self.queries))
        return weighted_knn_accuracy(bank, self.bank.labels, queries, self.queries.labels, k=KNN_K)


def evaluate(run: Run) -> dict[str, float]:
    """One evaluation of a run: the held-out contrastive metrics, and the online k-NN accuracy when configured."""
    metrics = evaluate_ssl(run.model, run.eval_set, run.cfg, run.device, run.bf16)
    if run.knn is not None:
        metrics["knn"] = run.knn.accuracy(run.model, run.device, run.bf16)
    return metrics


@dataclass
class Position:
    """Where a run stands: epochs completed, steps taken in the next one and the sum of their losses.
    A checkpoint stores it (as three fields) and a resumed run starts from it."""

    epoch: int = 0
    step_in_epoch: int = 0
    epoch_loss: float = 0.0

    @classmethod
    def of_checkpoint(cls, saved: dict[str, Any]) -> Position:
        return cls(saved["epoch"], saved["step_in_epoch"], saved["epoch_loss"])


class PendingLosses:
    """Step losses still on the device, read back together every `every` steps: a read makes the host wait for
    the device, which stalls a GPU's queue (on a CPU it costs nothing, so there it happens every step)."""

    def __init__(self, every: int, world: distributed.Distributed):
        self.every, self.world, self.losses = every, world, []

    def add(self, loss: torch.Tensor) -> None:
        self.losses.append(loss)

    def due(self) -> bool:
        return len(self.losses) >= self.every

    def read(self, step: int, epoch: int, checkpoint: Path) -> list[float]:
        """The global loss of each pending step (the last is `step`); a non-finite one ends the run."""
        values = distributed.mean_over_processes(torch.stack(self.losses), self.world).tolist()
        self.losses.clear()
        for offset, value in enumerate(values):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the loss became {value} at step {step - len(values) + offset + 1} (epoch {epoch}); the last "
                    f"good checkpoint is {checkpoint}: lower --lr or raise --temperature and retrain")
        return values


@dataclass
class Run:
    """Everything the training loop works with, made once by `setup_run`."""

    cfg: Config
    out: str
    paths: RunPaths
    world: distributed.Distributed
    device: torch.device
    bf16: bool
    model: SimCLRModel
    forward: nn.Module  # the model as a step calls it: wrapped by DistributedDataParallel and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loss_fn: LossFunction
    train_set: ImageSet
    eval_set: ImageSet
    loader: Loader
    log: dict[str, Any]
    budget: TimeBudget
    position: Position
    resumed: bool
    knn: KnnMonitor | None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def save(self, position: Position, rng: dict[str, Any]) -> None:
        """A checkpoint at a step boundary (resuming replays the epoch's random draws up to it), and the log."""
        if not self.world.is_main:
            return
        self.log["total_steps"] = self.budget.total_steps
        save_checkpoint(self.paths.checkpoint, {
            "config": self.cfg.to_dict(), "epoch": position.epoch, "step_in_epoch": position.step_in_epoch,
            "epoch_loss": position.epoch_loss, "rng": rng, "log": self.log, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()})
        save_json(self.paths.ssl_log, self.log)


def load_sets(cfg: Config, train_set: ImageSet | None, eval_set: ImageSet | None) -> tuple[ImageSet, ImageSet]:
    """The configured training (sub)set and test split (with a holdout: the training split's rest and the
    validation split), unless given; each must hold at least one batch."""
    if cfg.holdout and (train_set is None or eval_set is None):
        rest, validation = split_off_holdout(load_split(cfg.data, "train", cfg.data_root), cfg.holdout)
        if train_set is None:
            train_set = rest.subset(balanced_indices(rest.labels, cfg.train_subset, cfg.seed))
        if eval_set is None:
            eval_set = validation
    if train_set is None:
        train_set = load_split(cfg.data, "train", cfg.data_root, cfg.train_subset, cfg.seed)
    if eval_set is None:
        eval_set = load_split(cfg.data, "test", cfg.data_root)
    for name, images in (("training", train_set), ("evaluation", eval_set)):
        if len(images) < cfg.batch_size:
            raise ValueError(f"the {name} set has {len(images)} images, fewer than batch_size="
                             f"{cfg.batch_size}: lower --batch-size or use more images")
    return train_set, eval_set


def setup_run(cfg: Config, out: str, train_set: ImageSet | None, eval_set: ImageSet | None, resume: bool,
              build: ModelBuilder = build_model, make_loss: LossMaker = objective) -> Run:
    """Check the config, load the data, build model, optimizer, loss and loader, decide the run's length (a time
    budget is calibrated here), and make the schedule; with `resume`, restore all of it from the checkpoint.
    `build` and `make_loss` make the model and the loss (`train_ssl` says when to pass others)."""
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
    train_set, eval_set = load_sets(cfg, train_set, eval_set)

    set_up_from = time.perf_counter()  # a time budget counts from here: set-up, calibration, steps, evaluations
    bf16, precision_reason = choose_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    model = build(cfg, device)
    if world.world_size > 1 and cfg.sync_bn:  # BatchNorm statistics over the global batch, as one process
        model = distributed.use_global_batch_norm(model)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    forward: nn.Module = model
    if world.world_size > 1:
        forward = nn.parallel.DistributedDataParallel(model, device_ids=None if device.index is None
                                                      else [device.index])
    forward = torch.compile(forward) if cfg.compile else forward
    loader = two_view_loader(train_set, cfg, shuffle=True, seed=cfg.seed, device=device, world=world)
    this_run = {"config": cfg.to_dict(), "device": str(device), "precision": "bf16" if bf16 else "fp32",
                "precision_reason": precision_reason, "machine": machine_description(),
                "finished": False}  # what a resumed run states afresh
    log: dict[str, Any] = {**this_run, "train_images": len(train_set), "steps_per_epoch": len(loader),
                           "step_loss": [], "epochs": [], "evals": [], "train_seconds": 0.0}
    total = cfg.steps or cfg.epochs * len(loader)
    if saved is not None:
        log = {**saved["log"], **this_run}
        if cfg.time_budget:  # the plan the budget made when the run started (more epochs extend an unbudgeted one)
            total = log["total_steps"]
    budget = TimeBudget(cfg.time_budget, total, spent=log["train_seconds"] + time.perf_counter() - set_up_from,
                        record=log.get("budget"))
    warmup = cfg.warmup_epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # reads the steps when it steps: a budget may plan them again
        optimizer, lambda step: lr_factor(step, budget.total_steps, warmup, cfg.lr_schedule))
    run = Run(cfg, out, paths, world, device, bf16, model, forward, optimizer, scheduler,
              make_loss(cfg, world),
              train_set, eval_set, loader, log, budget, Position.of_checkpoint(saved) if saved else Position(),
              saved is not None, KnnMonitor.of(cfg, train_set, eval_set))
    if saved is None:
        eval_seconds = evaluate_untrained(run)  # an evaluation's cost depends on the device far more than a step's
        if budget.limited:
            plan_budget(run, eval_seconds)
    log["total_steps"] = budget.total_steps
    if warmup >= budget.total_steps:
        raise ValueError(f"warmup_epochs={cfg.warmup_epochs} ({warmup} steps) covers "
                         f"the whole run of {budget.total_steps} steps: lower --warmup-epochs or train longer")
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        restore_rng(saved["rng"], loader)
    return run


def evaluate_untrained(run: Run) -> float:
    """The evaluation at step 0, where every curve of the log starts; returns the seconds it took (on the slowest
    process: only the main one evaluates)."""
    start = time.perf_counter()
    if run.world.is_main:
        run.log["evals"].append({"epoch": 0, **evaluate(run)})
    return distributed.max_over_processes(time.perf_counter() - start, run.world, run.device)


def plan_budget(run: Run, eval_seconds: float) -> None:
    """Time a few steps and plan the steps that fit in the budget, evaluations (`eval_seconds` each) included; a
    budget too short for one epoch is refused with the seconds it would need."""
    run.budget.plan(calibrate_step_seconds(run), eval_seconds, run.steps_per_epoch * run.cfg.eval_every,
                    min_steps=run.steps_per_epoch, what="pre-training run")  # at least one epoch
    run.log["budget"] = run.budget.record


def end_epoch(run: Run, epoch: int, step_in_epoch: int, epoch_loss: float) -> None:
    """The epoch's record, its evaluation (every `eval_every` epochs and at the end), its checkpoint (every
    `save_every` epochs and at the end). A run may end mid-epoch: `epoch` then reads 7.5, say."""
    cfg, log, done = run.cfg, run.log, len(run.log["step_loss"]) >= run.budget.total_steps
    log["train_seconds"] = round(run.budget.elapsed(), 2)
    per_epoch = run.steps_per_epoch
    reached = epoch if step_in_epoch == per_epoch else round(epoch - 1 + step_in_epoch / per_epoch, 3)
    log["epochs"].append({"epoch": reached, "loss": epoch_loss / step_in_epoch, "lr": run.scheduler.get_last_lr()[0],
                          "seconds": log["train_seconds"]})
    if run.world.is_main and (epoch % cfg.eval_every == 0 or done):
        log["evals"].append({"epoch": reached, **evaluate(run)})
        log["train_seconds"] = round(run.budget.elapsed(), 2)
    log["finished"] = done
    log["peak_memory_mb"] = peak_memory_mb(run.device)
    if epoch % cfg.save_every == 0 or done:
        run.save(Position(epoch), capture_rng(run.loader))


def _train_loop(run: Run, progress: bool, stop_at_step: int = 0) -> dict[str, Any]:
    """The loop: steps, read-backs, the budget's checks and re-plan, stop requests (and `stop_at_step`), the ends
    of epochs."""
    cfg, log, budget, world, device = run.cfg, run.log, run.budget, run.world, run.device
    bar = tqdm(total=budget.total_steps, initial=len(log["step_loss"]), desc="SimCLR pre-training", unit="step",
               disable=not (progress and world.is_main))
    pending = PendingLosses(sync_interval(cfg, device), world)
    step, epoch = len(log["step_loss"]), run.position.epoch + 1
    if 0 < stop_at_step <= step:
        raise ValueError(f"stop_at_step={stop_at_step}: {run.out} is already at step {step}; give a later step")
    replan = budget.limited and not run.resumed  # once, after the first epoch of a new budgeted run
    loop_start = time.perf_counter()
    with stop_requests() as stop:
        while step < budget.total_steps:
            run.model.train()
            epoch_rng = capture_rng(run.loader)
            batches = iter(run.loader)
            for _ in range(run.position.step_in_epoch):  # resuming mid-epoch: redraw the steps already taken, unused
                next(batches)
            step_in_epoch, epoch_loss = run.position.step_in_epoch, run.position.epoch_loss
            run.position = Position()
            resize_views(run, step)
            for x1, x2 in batches:
                pending.add(train_step(run.forward, run.optimizer, x1, x2, run.loss_fn, device, run.bf16))
                run.scheduler.step()
                step, step_in_epoch = step + 1, step_in_epoch + 1
                resize_views(run, step)  # the loader makes the next batch's views when the loop asks for it
                if step == stop_at_step < budget.total_steps:
                    stop.append(f"--stop-at-step {step}")
                if not (pending.due() or step >= budget.total_steps or step_in_epoch == run.steps_per_epoch
                        or stop):
                    continue
                values = pending.read(step, epoch, run.paths.checkpoint)
                epoch_loss += sum(values)
                log["step_loss"].extend(round(value, 5) for value in values)
                bar.update(len(values))
                bar.set_postfix(epoch=epoch, loss=f"{values[-1]:.3f}")
                if distributed.any_process(budget.exceeded(), world, device) and step < budget.total_steps:
                    budget.stop_early(step)
                if distributed.any_process(bool(stop), world, device):
                    log["train_seconds"] = round(budget.elapsed(), 2)
                    run.save(Position(epoch - 1, step_in_epoch, epoch_loss), epoch_rng)
                    bar.close()
                    raise TrainingStopped(f"stopped by {stop[0] if stop else 'another process'} at step {step} "
                                          f"(epoch {epoch}); checkpoint saved to {run.paths.checkpoint}. Resume "
                                          f"with: python -m simclr_core train --resume --out {run.out}")
                if step >= budget.total_steps:
                    break
            if replan and step < budget.total_steps:  # a whole epoch of real steps times them better than calibration
                replan = False
                seconds = distributed.max_over_processes((time.perf_counter() - loop_start) / step, world, device)
                bar.total = budget.replan(step, seconds, run.steps_per_epoch * cfg.eval_every,
                                          cfg.steps or cfg.epochs * run.steps_per_epoch)
                bar.refresh()
            end_epoch(run, epoch, step_in_epoch, epoch_loss)
            epoch += 1
    bar.close()
    return log


def resize_views(run: Run, step: int) -> None:
    """Progressive resizing: the side of the views for `step` (`view_side`)."""
    if run.cfg.start_resolution:
        run.loader.resize(view_side(run.cfg, step, run.budget.total_steps))


def train_ssl(cfg: Config, out: str = ".", progress: bool = True, train_set: ImageSet | None = None,
              eval_set: ImageSet | None = None, resume: bool = False, overwrite: bool = False,
              announce: bool = False, build: ModelBuilder = build_model,
              make_loss: LossMaker = objective, stop_at_step: int = 0) -> dict[str, Any]:
    """Pre-train a SimCLR model as `cfg` says; return the log that is also written to `out`.

    `train_set` / `eval_set` default to the configured dataset's train / test split. With `resume`, the run
    continues from `out`/checkpoints/latest.pt (weights, optimizer, schedule, log and every random state),
    and ends where an uninterrupted run would have. A folder that already holds a run is refused unless
    `resume` or `overwrite` says what to do with it, and one process at a time trains into a folder: a
    second one fails at once, naming the first. `announce` prints what is about to run (`start_banner`).

    `build(cfg, device)` makes the model and `make_loss(cfg, world)` the loss. Only the
    deliberate mistakes pass others (`simclr_core.pitfalls`), which no config field can select.
    `stop_at_step` > 0 stops the run there as Ctrl-C would (a checkpoint, `TrainingStopped`), to continue later
    with `resume`: a long run in pieces, or a "wsd" run branched before its decay.
    """
    with hold_run_folder(out):
        if not resume and distributed.setup().is_main:
            refuse_to_replace(out, overwrite)
        run = setup_run(cfg, out, train_set, eval_set, resume, build, make_loss)
        if run.world.is_main and not run.resumed:  # a new run: nothing of the folder's earlier run may outlive it
            for stale in run.paths.written_files():
                stale.unlink(missing_ok=True)
        if announce and run.world.is_main:
            print(start_banner(cfg, out, str(run.device), run.log["precision_reason"], len(run.train_set),
                               len(run.eval_set), run.log), flush=True)
        return _train_loop(run, progress, stop_at_step)


def hold_run_folder(out: str, wait: bool = False) -> contextlib.AbstractContextManager[Any]:
    """The run folder's one-writer lock (`RunLock`), taken by the main process only: under torchrun the
    other processes never write."""
    return RunLock(out, wait) if distributed.setup().is_main else contextlib.nullcontext()


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


def seconds_per_step(cfg: Config, device: torch.device, steps: tuple[int, int] = (1, 1)) -> float:
    """Measured wall time of one training step of `cfg` on `device` (augmentation, forward, NT-Xent, backward,
    optimizer step), on random images; the global random state is left as it was. Evaluations are not
    included: they add a few percent to long runs. `steps`: untimed warm-up steps (the first pays for one-off
    set-up: memory, kernels), then timed ones, of which the median is returned."""
    warmup, timed = steps
    images = torch.randint(0, 256, ((warmup + timed) * cfg.batch_size, 3, 32, 32), dtype=torch.uint8)
    loader = two_view_loader(ImageSet(images, torch.zeros(len(images), dtype=torch.int64), ["random"]), cfg,
                             shuffle=False, seed=cfg.seed, device=device)
    batches = iter(loader)
    bf16 = choose_precision(cfg.precision, device)[0]
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg, device)
        optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
        return median_step_seconds(lambda: train_step(model, optimizer, *next(batches), objective(cfg), device, bf16),
                                   model, optimizer, (warmup, timed))


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: allocated GPU memory on CUDA, resident set size on the CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


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
