"""Contrastive pre-training: one SimCLR step, and the loop that repeats it for as long as a run asks.

`train_step` is the whole of SimCLR's learning: embed both views of a batch in one pass, take NT-Xent, step the
optimizer. `train_ssl` repeats it; read it top to bottom:

1. `setup_run` makes everything the loop works with, as one `Run`, in named steps: the processes, the saved state
   to resume from, the device, the images, the network and optimizer, the two-view loader, the log, the run's
   length (`budget.TimeBudget`) and the learning-rate schedule. A new run is evaluated once before its first step
   and, with a time budget, times a few steps to plan how many fit; a resumed run restores everything from its
   checkpoint, every random state included, and its `Position` says where to continue;
2. `_train_epoch`: for every batch, `train_step` and a schedule step; every `sync_every` steps the losses come back
   from the device (`PendingLosses`: the log, the NaN check), the budget is checked (re-planned once, stopped early
   if the machine slowed down) and so are stop requests (Ctrl-C, SIGTERM, `stop_at_step`): a stop saves a
   checkpoint at that step and says how to resume;
3. `_end_epoch`: the epoch's record, an evaluation every `eval_every` epochs (monitor.py: held-out loss, p_pos and
   top-1 of the contrastive task, and an online k-NN accuracy on the features), a checkpoint and the log
   (`checkpoints/latest.pt`, `logs/ssl_results.json`) every `save_every` epochs and at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from . import distributed
from .batch_augment import Loader, two_view_loader
from .budget import CALIBRATION_STEPS, StepClock, TimeBudget, median_step_seconds
from .config import Config
from .data import ImageSet, load_split, training_images
from .model import SimCLRModel, build_model, embed_pairs, load_model
from .monitor import KnnMonitor, measure
from .optim import decay_start, lr_factor, make_optimizer
from .resume import TrainingStopped, capture_rng, check_resumable, restore_rng, stop_requests
from .runtime import choose_precision, machine_description, peak_memory_mb, pick_device, seed_everything
from .storage import (
    RunLock,
    RunPaths,
    TrainingLog,
    check_same_config,
    load_checkpoint,
    refuse_to_replace,
    save_checkpoint,
    save_json,
    stored_run_log,
)

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossMaker = Callable[[Config, distributed.Distributed], LossFunction]
ModelBuilder = Callable[[Config, torch.device], SimCLRModel]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               x1: torch.Tensor, x2: torch.Tensor, loss_fn: LossFunction,
               device: torch.device, bf16: bool = False) -> torch.Tensor:
    """One optimisation step of SimCLR on a batch of B image pairs; returns the loss,
    still on the device. (The book prints this function: its lines fit 88 columns.)"""
    # (B, D) each: unit vectors z = normalize(g(f(x))), both views in one pass
    z1, z2 = embed_pairs(model, x1, x2, device, bf16)
    # NT-Xent: each of the 2B views picks its partner out of the other 2B - 1
    loss = loss_fn(z1, z2)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def objective(cfg: Config, world: distributed.Distributed = distributed.SINGLE_PROCESS) -> LossFunction:
    """The loss `cfg` names (NT-Xent, or DCL for `loss="dcl"`) at its temperature, over the global batch."""
    decoupled = cfg.loss == "dcl"
    return lambda z1, z2: distributed.global_nt_xent(z1, z2, cfg.temperature, world, decoupled)


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


def sync_interval(cfg: Config, device: torch.device) -> int:
    """Steps between host-device synchronisations: each one stalls an accelerator's queue."""
    return cfg.sync_every or (1 if device.type == "cpu" else 20)


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
    log: TrainingLog
    budget: TimeBudget
    position: Position
    resumed: bool
    knn: KnnMonitor | None

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def evaluate(self) -> dict[str, float]:
        return measure(self.model, self.eval_set, self.cfg, self.device, self.bf16, self.knn)

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


# --- setting a run up, one named step at a time ----------------------------------------------------------------

def setup_run(cfg: Config, out: str, train_set: ImageSet | None, eval_set: ImageSet | None, resume: bool,
              build: ModelBuilder = build_model, make_loss: LossMaker = objective) -> Run:
    """Check the config, load the data, build model, optimizer, loss and loader, decide the run's length (a time
    budget is calibrated here), and make the schedule; with `resume`, restore all of it from the checkpoint.
    `build` and `make_loss` make the model and the loss (`train_ssl` says when to pass others)."""
    cfg.validate()
    world = _processes(cfg)
    paths = RunPaths(out)
    if world.is_main:
        paths.check_writable()
    saved = _saved_state(paths, cfg) if resume else None
    device = _device(cfg, world)
    train_set, eval_set = load_sets(cfg, train_set, eval_set)
    set_up_from = time.perf_counter()  # a time budget counts from here: set-up, calibration, steps, evaluations
    bf16, precision_reason = choose_precision(cfg.precision, device)
    model, forward, optimizer = _network(cfg, device, world, build)
    loader = two_view_loader(train_set, cfg, shuffle=True, seed=cfg.seed, device=device, world=world)
    log = _log(cfg, device, bf16, precision_reason, len(train_set), len(loader), saved)
    budget = _budget(cfg, log, len(loader), set_up_from, resumed=saved is not None)
    scheduler = _schedule(optimizer, budget, cfg.warmup_epochs * len(loader), cfg.lr_schedule)
    run = Run(cfg=cfg, out=out, paths=paths, world=world, device=device, bf16=bf16, model=model, forward=forward,
              optimizer=optimizer, scheduler=scheduler, loss_fn=make_loss(cfg, world), train_set=train_set,
              eval_set=eval_set, loader=loader, log=log, budget=budget,
              position=Position.of_checkpoint(saved) if saved else Position(), resumed=saved is not None,
              knn=KnnMonitor.of(cfg, train_set, eval_set))
    _begin(run) if saved is None else _restore(run, saved)
    _check_warmup(run)
    return run


def _processes(cfg: Config) -> distributed.Distributed:
    """This process's place under torchrun (a single process without it), and whether the config fits it."""
    world = distributed.setup()
    if world.world_size > 1 and (cfg.batch_size % world.world_size or cfg.pipeline != "fast"):
        raise ValueError(f"under torchrun with {world.world_size} processes, batch_size={cfg.batch_size} (the "
                         f"global batch) must divide evenly among them, and the pipeline must be 'fast'")
    return world


def _saved_state(paths: RunPaths, cfg: Config) -> dict[str, Any]:
    """The checkpoint to resume from, refused when `cfg` would make it another run."""
    saved = load_checkpoint(paths.checkpoint)
    check_resumable(Config.from_dict(saved["config"]), cfg, paths.checkpoint)
    return saved


def _device(cfg: Config, world: distributed.Distributed) -> torch.device:
    device = pick_device(cfg.device)
    if device.type == "cuda" and world.world_size > 1:
        return torch.device("cuda", world.local_rank)
    return device


def load_sets(cfg: Config, train_set: ImageSet | None, eval_set: ImageSet | None) -> tuple[ImageSet, ImageSet]:
    """The configured training images and the images the run is evaluated on (the holdout's validation split,
    else the test split), unless given; each must hold at least one batch."""
    if train_set is None or eval_set is None:
        train, validation = training_images(cfg.data, cfg.data_root, cfg.train_subset, cfg.seed, cfg.holdout)
        train_set = train if train_set is None else train_set
        if eval_set is None:
            eval_set = validation if validation is not None else load_split(cfg.data, "test", cfg.data_root)
    for name, images in (("training", train_set), ("evaluation", eval_set)):
        if len(images) < cfg.batch_size:
            raise ValueError(f"the {name} set has {len(images)} images, fewer than batch_size="
                             f"{cfg.batch_size}: lower --batch-size or use more images")
    return train_set, eval_set


def _network(cfg: Config, device: torch.device, world: distributed.Distributed,
             build: ModelBuilder) -> tuple[SimCLRModel, nn.Module, torch.optim.Optimizer]:
    """The seeded model, the module a step calls (DistributedDataParallel, torch.compile) and the optimizer."""
    seed_everything(cfg.seed)
    model = build(cfg, device)
    if world.world_size > 1 and cfg.sync_bn:  # BatchNorm statistics over the global batch, as one process
        model = distributed.use_global_batch_norm(model)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    forward: nn.Module = model
    if world.world_size > 1:
        forward = nn.parallel.DistributedDataParallel(model, device_ids=None if device.index is None
                                                      else [device.index])
    return model, torch.compile(forward) if cfg.compile else forward, optimizer


def _log(cfg: Config, device: torch.device, bf16: bool, precision_reason: str, train_images: int,
         steps_per_epoch: int, saved: dict[str, Any] | None) -> TrainingLog:
    """A new run's empty log, or the saved one with what this process states afresh (config, machine, ...)."""
    this_run = {"config": cfg.to_dict(), "device": str(device), "precision": "bf16" if bf16 else "fp32",
                "precision_reason": precision_reason, "machine": machine_description(), "finished": False}
    if saved is not None:
        return {**saved["log"], **this_run}
    return {**this_run, "train_images": train_images, "steps_per_epoch": steps_per_epoch, "step_loss": [],
            "epochs": [], "evals": [], "train_seconds": 0.0}


def _budget(cfg: Config, log: TrainingLog, steps_per_epoch: int, set_up_from: float, resumed: bool) -> TimeBudget:
    """The run's length: the config's steps (or epochs), or for a resumed budgeted run the plan it made."""
    total = cfg.steps or cfg.epochs * steps_per_epoch
    if resumed and cfg.time_budget:
        total = log["total_steps"]
    return TimeBudget(cfg.time_budget, total, spent=log["train_seconds"] + time.perf_counter() - set_up_from,
                      record=log.get("budget"))


def _schedule(optimizer: torch.optim.Optimizer, budget: TimeBudget, warmup: int,
              schedule: str) -> torch.optim.lr_scheduler.LambdaLR:
    # reads the budget's steps whenever it steps: a budget may plan them again
    return torch.optim.lr_scheduler.LambdaLR(optimizer,
                                             lambda step: lr_factor(step, budget.total_steps, warmup, schedule))


def _begin(run: Run) -> None:
    """A new run: the evaluation at step 0, where every curve of the log starts, then (with a time budget) a few
    steps timed to plan how many fit, evaluations included; a budget too short for one epoch is refused."""
    start = time.perf_counter()
    if run.world.is_main:
        run.log["evals"].append({"epoch": 0, **run.evaluate()})
    eval_seconds = distributed.max_over_processes(time.perf_counter() - start, run.world, run.device)
    if run.budget.limited:
        run.budget.plan(calibrate_step_seconds(run), eval_seconds, run.steps_per_epoch * run.cfg.eval_every,
                        min_steps=run.steps_per_epoch, what="pre-training run")  # at least one epoch
        run.log["budget"] = run.budget.record
    run.log["total_steps"] = run.budget.total_steps


def _restore(run: Run, saved: dict[str, Any]) -> None:
    """A resumed run: weights, optimizer, schedule and every random stream as the checkpoint left them."""
    run.log["total_steps"] = run.budget.total_steps
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    restore_rng(saved["rng"], run.loader)


def _check_warmup(run: Run) -> None:
    warmup = run.cfg.warmup_epochs * run.steps_per_epoch
    if warmup >= run.budget.total_steps:
        raise ValueError(f"warmup_epochs={run.cfg.warmup_epochs} ({warmup} steps) covers "
                         f"the whole run of {run.budget.total_steps} steps: lower --warmup-epochs or train longer")


# --- the loop -----------------------------------------------------------------------------------------------------

def view_side(cfg: Config, step: int, total_steps: int) -> int:
    """The side of the views at `step`: `start_resolution` before the decay (progressive resizing), else
    `train_resolution`."""
    if cfg.start_resolution and step < decay_start(total_steps):
        return cfg.start_resolution
    return cfg.train_resolution


def _resize_views(run: Run, step: int) -> None:
    if run.cfg.start_resolution:
        run.loader.resize(view_side(run.cfg, step, run.budget.total_steps))


@dataclass
class Loop:
    """What the loop carries from step to step besides the run: where it is, what it has yet to read back, and
    what may stop it."""

    step: int
    epoch: int
    pending: PendingLosses
    bar: tqdm
    stop: list[str]  # stop requests: signals, or `stop_at_step`
    stop_at_step: int
    clock: StepClock


def _train_loop(run: Run, progress: bool, stop_at_step: int = 0) -> TrainingLog:
    """Epochs until the run's steps are done: each trained (`_train_epoch`), then recorded (`_end_epoch`)."""
    done = len(run.log["step_loss"])
    if 0 < stop_at_step <= done:
        raise ValueError(f"stop_at_step={stop_at_step}: {run.out} is already at step {done}; give a later step")
    bar = tqdm(total=run.budget.total_steps, initial=done, desc="SimCLR pre-training", unit="step",
               disable=not (progress and run.world.is_main))
    with stop_requests() as stop:
        loop = Loop(done, run.position.epoch + 1, PendingLosses(sync_interval(run.cfg, run.device), run.world),
                    bar, stop, stop_at_step, StepClock())
        while loop.step < run.budget.total_steps:
            step_in_epoch, epoch_loss = _train_epoch(run, loop)
            _end_epoch(run, loop.epoch, step_in_epoch, epoch_loss)
            loop.epoch += 1
    bar.close()
    return run.log


def _train_epoch(run: Run, loop: Loop) -> tuple[int, float]:
    """The steps of one epoch (from where a resumed run stopped in it); returns its steps and their summed loss."""
    run.model.train()
    epoch_rng = capture_rng(run.loader)
    batches = iter(run.loader)
    for _ in range(run.position.step_in_epoch):  # resuming mid-epoch: redraw the steps already taken, unused
        next(batches)
    step_in_epoch, epoch_loss = run.position.step_in_epoch, run.position.epoch_loss
    run.position = Position()
    _resize_views(run, loop.step)
    loop.clock.start(loop.step)
    for x1, x2 in batches:
        loop.pending.add(train_step(run.forward, run.optimizer, x1, x2, run.loss_fn, run.device, run.bf16))
        run.scheduler.step()
        loop.step, step_in_epoch = loop.step + 1, step_in_epoch + 1
        _resize_views(run, loop.step)  # the loader makes the next batch's views when the loop asks for it
        if loop.step == loop.stop_at_step < run.budget.total_steps:
            loop.stop.append(f"--stop-at-step {loop.step}")
        # read-backs are collective under torchrun: only at steps every process agrees on
        if (loop.pending.due() or loop.step >= run.budget.total_steps or step_in_epoch == run.steps_per_epoch
                or loop.step == loop.stop_at_step):
            epoch_loss += _read_back(run, loop)
            if distributed.any_process(bool(loop.stop), run.world, run.device):
                _stop(run, loop, Position(loop.epoch - 1, step_in_epoch, epoch_loss), epoch_rng)
        if loop.step >= run.budget.total_steps:
            break
    loop.clock.stop(loop.step)
    return step_in_epoch, epoch_loss


def _read_back(run: Run, loop: Loop) -> float:
    """The pending losses into the log and the progress bar; then the budget's checks: the one re-plan from the
    real steps' seconds, and an early end when the machine slowed down. Returns the losses' sum."""
    values = loop.pending.read(loop.step, loop.epoch, run.paths.checkpoint)
    run.log["step_loss"].extend(round(value, 5) for value in values)
    loop.bar.update(len(values))
    loop.bar.set_postfix(epoch=loop.epoch, loss=f"{values[-1]:.3f}")
    budget = run.budget
    if budget.replan_due(loop.step):
        loop.clock.stop(loop.step)  # the stretch so far, then on from here
        loop.clock.start(loop.step)
        seconds = distributed.max_over_processes(loop.clock.seconds_per_step(), run.world, run.device)
        loop.bar.total = budget.replan(loop.step, seconds, run.steps_per_epoch * run.cfg.eval_every,
                                       run.cfg.steps or run.cfg.epochs * run.steps_per_epoch)
        loop.bar.refresh()
    if distributed.any_process(budget.exceeded(), run.world, run.device) and loop.step < budget.total_steps:
        budget.stop_early(loop.step)
    return sum(values)


def _stop(run: Run, loop: Loop, position: Position, epoch_rng: dict[str, Any]) -> None:
    """Save the run at this step and end it with the command that continues it."""
    run.log["train_seconds"] = round(run.budget.elapsed(), 2)
    run.save(position, epoch_rng)
    loop.bar.close()
    raise TrainingStopped(f"stopped by {loop.stop[0] if loop.stop else 'another process'} at step {loop.step} "
                          f"(epoch {loop.epoch}); checkpoint saved to {run.paths.checkpoint}. Resume "
                          f"with: python -m simclr_core train --resume --out {run.out}")


def _end_epoch(run: Run, epoch: int, step_in_epoch: int, epoch_loss: float) -> None:
    """The epoch's record, its evaluation (every `eval_every` epochs and at the end), its checkpoint (every
    `save_every` epochs and at the end). A run may end mid-epoch: `epoch` then reads 7.5, say."""
    cfg, log, done = run.cfg, run.log, len(run.log["step_loss"]) >= run.budget.total_steps
    log["train_seconds"] = round(run.budget.elapsed(), 2)
    per_epoch = run.steps_per_epoch
    reached = epoch if step_in_epoch == per_epoch else round(epoch - 1 + step_in_epoch / per_epoch, 3)
    log["epochs"].append({"epoch": reached, "loss": epoch_loss / step_in_epoch, "lr": run.scheduler.get_last_lr()[0],
                          "seconds": log["train_seconds"]})
    if run.world.is_main and (epoch % cfg.eval_every == 0 or done):
        log["evals"].append({"epoch": reached, **run.evaluate()})
        log["train_seconds"] = round(run.budget.elapsed(), 2)
    log["finished"] = done
    log["peak_memory_mb"] = peak_memory_mb(run.device)
    if epoch % cfg.save_every == 0 or done:
        run.save(Position(epoch), capture_rng(run.loader))


def train_ssl(cfg: Config, out: str = ".", progress: bool = True, train_set: ImageSet | None = None,
              eval_set: ImageSet | None = None, resume: bool = False, overwrite: bool = False,
              on_start: Callable[[Run], None] | None = None, build: ModelBuilder = build_model,
              make_loss: LossMaker = objective, stop_at_step: int = 0) -> TrainingLog:
    """Pre-train a SimCLR model as `cfg` says; return the log that is also written to `out`.

    `train_set` / `eval_set` default to the configured dataset's training images and test split (or validation
    split, with a holdout). With `resume`, the run continues from `out`/checkpoints/latest.pt (weights, optimizer,
    schedule, log and every random state), and ends where an uninterrupted run would have. A folder that already
    holds a run is refused unless `resume` or `overwrite` says what to do with it, and one process at a time
    trains into a folder: a second one fails at once, naming the first. `on_start(run)` is called before the
    first step (the command line prints what is about to run).

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
        if on_start is not None and run.world.is_main:
            on_start(run)
        return _train_loop(run, progress, stop_at_step)


def hold_run_folder(out: str, wait: bool = False) -> contextlib.AbstractContextManager[Any]:
    """The run folder's one-writer lock (`RunLock`), taken by the main process only: under torchrun the
    other processes never write."""
    return RunLock(out, wait) if distributed.setup().is_main else contextlib.nullcontext()


def load_or_train(cfg: Config, out: str = ".", progress: bool = True) -> tuple[SimCLRModel, TrainingLog]:
    """Reuse the finished run in `out` if it was trained with `cfg` (everything but the probe's settings the same:
    config.REUSE_MAY_CHANGE; continue it if it was interrupted); train it now if `out` holds no run; refuse if it
    holds a run of another config.

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


# --- the step clock ---------------------------------------------------------------------------------------------

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
