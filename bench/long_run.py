"""The long run on a CPU: which recipe learns most per CPU-hour (the levers), then a run of hours and its curve.

Levers (`--group levers`): the base recipe and one change at a time, each trained for `LEVER_SECONDS` of this
machine's per-step clock, so a change that makes a step cheaper (smaller views) trains more steps and one that
makes it dearer (a wider network) fewer. The clock (`--group clock`) is the median of 20 training steps of each
shape, measured with nothing else running; a run's steps come from it, never from its own wall clock, so other
light work may share the machine while it trains. Every lever is scored on the validation split: 5,000 training
images (`holdout`) that neither pre-training nor the probe's training sees. The test split is never looked at.

A row records the probe (all 45,000 other training images, scored on the 5,000), the weighted 200-NN accuracy,
the effective rank of h, the steps, images seen, clock and wall-clock seconds, and `results.stamp`'s provenance.
Rows are appended as they finish and skipped when already there; a stopped run resumes exactly from its last
checkpoint (runs/long/NAME). Usage (about 22 minutes a lever on a 2-core CPU):

    python bench/long_run.py --data data/cifar10-jpeg --group clock levers

The curve (`--group curve --up-to EPOCHS`, shortest point first, resumable) and the shipped weights of its longest
point (`--group weights`: writes simclr_core/weights/long.pt and prints the sha256 for `pretrained.SHIPPED`):

    python bench/long_run.py --data data/cifar10-jpeg --group curve --up-to 10
    python bench/long_run.py --data data/cifar10-jpeg --group weights
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from simclr_core.analysis import effective_rank, weighted_knn_accuracy
from simclr_core.config import Config, environment_default, make_config
from simclr_core.data import load_split, split_off_holdout
from simclr_core.engine import seconds_per_step, train_ssl
from simclr_core.model import load_model
from simclr_core.optim import decay_start
from simclr_core.pretrained import WEIGHTS, export
from simclr_core.probe import cached_features, label_efficiency, random_encoder, train_linear_probe
from simclr_core.results import RowFile, curve_points
from simclr_core.resume import TrainingStopped
from simclr_core.runtime import pick_device, uses_bf16
from simclr_core.storage import RunPaths, stored_run_log

LEVER_SECONDS = 1200  # each lever's length on this machine's clock: 20 minutes
# The base: a half-width ResNet-18 on full-size views of the 45,000 training images left by the holdout, AdamW,
# the warm-up-stable-decay schedule (its curve points come from one run), T = 0.1, crops down to 20% of the image.
BASE = dict(width=32, train_resolution=32, holdout=5000, batch_size=128, optimizer="adamw", lr=1e-3,
            weight_decay=1e-4, lr_schedule="wsd", temperature=0.1, crop_min_scale=0.2,
            augmentations="crop,flip,jitter,blur", eval_every=1, eval_batches=10, save_every=1)
LEVERS: dict[str, dict[str, Any]] = {  # name -> what it changes in BASE
    "base": {},
    "10,000 images": dict(train_subset=10_000),
    "16 px": dict(train_resolution=16),
    "16 then 32 px": dict(start_resolution=16),  # 16x16 views for 80% of the steps, 32x32 for the decay
    "width 64": dict(width=64),
    "T 0.05": dict(temperature=0.05),
    "T 0.2": dict(temperature=0.2),
    "crop 0.08": dict(crop_min_scale=0.08),  # SimCLR's paper
    "grayscale": dict(augmentations="crop,flip,jitter,gray,blur"),  # SimCLR's paper: p = 0.2
    "SGD": dict(optimizer="sgd", lr=0.06, weight_decay=5e-4),  # Nesterov momentum 0.9, as dkobak/simclr-cifar10
    "cosine": dict(lr_schedule="cosine"),  # what the wsd schedule costs against cosine at one length
    "base seed 1": dict(seed=1),  # a second seed: the spread at this length
}
# The long run: the levers' winners over BASE (chosen on validation, bench/README.md says why), trained as one wsd
# run planned for the last point; each shorter point is that run stopped where its own decay would begin and decayed
# from there (`branch`), which is exactly the run of that length (optim.decay_start)
# Of the levers measured, only grayscale beat the base beyond the tie threshold (0.638 against 0.575 on validation);
# the others tied and keep the base's value (bench/README.md lists which were run).
LONG: dict[str, Any] = dict(augmentations="crop,flip,jitter,gray,blur",
                            save_every=2)  # a checkpoint every 2 epochs: about 9 minutes on the clock
CURVE_EPOCHS = (0.625, 1.25, 2.5, 5, 10, 20, 40, 80)  # doubling; 40 epochs fit 3 hours of a 2-core AMD EPYC's clock
FEW_LABELS = {5: 3, 25: 3, 100: 1}  # labels a class -> labelled subsets probed at every point (payoff issue)
RESULTS = Path(__file__).parent / "results" / "long_run.json"
RUNS = Path(__file__).parent.parent / "runs" / "long"
CLOCK_STEPS = (5, 20)  # untimed, then timed steps of the clock


def lever_config(overrides: dict[str, Any], data: str) -> Config:
    return make_config("reference", **{**BASE, "data": data, **overrides})


def shape(cfg: Config, side: int) -> str:
    """The name of a step's shape, which is all its clock depends on."""
    return f"width {cfg.width}, {side} px, batch {cfg.batch_size}"


def clock_row(name: str, cfg: Config) -> dict[str, Any]:
    side = int(name.split(", ")[1].split()[0])
    seconds = seconds_per_step(Config.from_dict({**cfg.to_dict(), "train_resolution": side, "start_resolution": 0}),
                               pick_device(cfg.device), CLOCK_STEPS)
    return {"seconds_per_step": round(seconds, 4), "steps_timed": CLOCK_STEPS[1]}


def step_seconds(cfg: Config, clocks: dict[str, float]) -> float:
    """Seconds a step of `cfg` takes on the clock: a progressive run spends 80% of its steps at its start side."""
    final = clocks[shape(cfg, cfg.train_resolution)]
    if not cfg.start_resolution:
        return final
    return 0.8 * clocks[shape(cfg, cfg.start_resolution)] + 0.2 * final


def trained(cfg: Config, out: Path) -> dict[str, Any]:
    """The run of `cfg` in `out`: reused when finished, continued when stopped, else trained afresh."""
    log = stored_run_log(str(out))
    same = log is not None and log["config"] == cfg.to_dict()
    if same and log["finished"]:
        return log
    return train_ssl(cfg, str(out), resume=same, overwrite=not same)


def measure(out: Path, cfg: Config) -> dict[str, Any]:
    """The validation probe, 200-NN and effective rank of h = f(x) of the run in `out`."""
    start = time.perf_counter()
    device = pick_device(cfg.device)
    bf16 = uses_bf16(cfg.precision, device)
    encoder = load_model(RunPaths(out).checkpoint, device)[0].encoder
    train, validation = split_off_holdout(load_split(cfg.data, "train", cfg.data_root), cfg.holdout)
    h_train, h_val = (cached_features(encoder, images, RunPaths(out).features, device, bf16)
                      for images in (train, validation))
    probe = train_linear_probe(h_train, train.labels, h_val, validation.labels, cfg.probe_steps,
                               cfg.probe_weight_decay)
    return {"probe_val": round(probe.test_accuracy, 4),
            "knn200_val": round(weighted_knn_accuracy(h_train, train.labels, h_val, validation.labels), 4),
            "effective_rank_h": round(effective_rank(h_train), 2), "probe_train_images": len(train),
            "validation_images": len(validation), "measure_seconds": round(time.perf_counter() - start, 1)}


def lever_row(name: str, overrides: dict[str, Any], data: str, clocks: dict[str, float], runs: Path) -> dict[str, Any]:
    base = lever_config(overrides, data)
    per_step = step_seconds(base, clocks)
    cfg = Config.from_dict({**base.to_dict(), "steps": round(LEVER_SECONDS / per_step)})
    out = runs / name.replace(" ", "-").replace(",", "")
    log = trained(cfg, out)
    last = log["evals"][-1]
    steps = len(log["step_loss"])
    return {"overrides": overrides, "steps": steps, "images_seen": steps * cfg.batch_size,
            "epochs": log["epochs"][-1]["epoch"], "clock_seconds_per_step": round(per_step, 4),
            "clock_seconds": round(steps * per_step), "train_seconds": log["train_seconds"],
            **measure(out, cfg), "ssl_top1_val": round(last["top1"], 4), "knn_online_val": last.get("knn"),
            "step_loss_every_10": log["step_loss"][::10], "config": cfg.to_dict()}


def long_config(data: str, steps: int) -> Config:
    return lever_config({**LONG, "steps": steps}, data)


def point_steps(cfg: Config, epochs: float) -> int:
    return round(epochs * ((50_000 - cfg.holdout) // cfg.batch_size))


def branch(trunk_cfg: Config, trunk: Path, steps: int, out: Path) -> dict[str, Any]:
    """The wsd run of `steps` steps in `out`: the trunk (the same run planned longer) trained to where this run's
    decay begins and stopped there, its checkpoint copied to `out`, and continued to `steps` with the decay. A point
    whose decay begins before where the trunk already is gets trained alone from step 0: the same run."""
    cfg = Config.from_dict({**trunk_cfg.to_dict(), "steps": steps})
    log = stored_run_log(str(out))
    if log is not None and log["config"] == cfg.to_dict():
        return log if log["finished"] else train_ssl(cfg, str(out), resume=True)
    start = decay_start(steps)
    trunk_log = stored_run_log(str(trunk))
    done = len(trunk_log["step_loss"]) if trunk_log else 0
    if done > start:  # a point added after the trunk went past it: the same run, trained again from step 0
        return train_ssl(cfg, str(out))
    if done < start:
        with contextlib.suppress(TrainingStopped):  # the stop asked for at `start`, or a signal's: told apart below
            train_ssl(trunk_cfg, str(trunk), resume=trunk_log is not None, stop_at_step=start)
        reached = len(stored_run_log(str(trunk))["step_loss"])
        if reached != start:  # Ctrl-C or SIGTERM stopped the trunk first: stop here too, not branch from there
            raise TrainingStopped(f"the trunk in {trunk} stopped at step {reached}, before this point's decay start "
                                  f"{start}; run the same command again to go on")
    for source in (RunPaths(trunk).checkpoint, RunPaths(trunk).ssl_log):
        target = out / source.relative_to(trunk)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return train_ssl(cfg, str(out), resume=True)


def measure_point(encoder: torch.nn.Module, cfg: Config, cache: Path | None) -> dict[str, Any]:
    """Everything the book and the payoff issue read of one encoder: the probe and the 200-NN on validation and
    test (trained on the 45,000 other training images), the effective rank of h, the probe with 5, 25 and 100
    labels a class (on test), and the seconds of a probe: features of the 60,000 images, then L-BFGS."""
    device = pick_device(cfg.device)
    bf16 = uses_bf16(cfg.precision, device)
    train, validation = split_off_holdout(load_split(cfg.data, "train", cfg.data_root), cfg.holdout)
    test = load_split(cfg.data, "test", cfg.data_root)
    start = time.perf_counter()
    h_train, h_val, h_test = (cached_features(encoder, images, cache, device, bf16)
                              for images in (train, validation, test))
    probes = {name: train_linear_probe(h_train, train.labels, x, images.labels, cfg.probe_steps,
                                       cfg.probe_weight_decay)
              for name, x, images in (("test", h_test, test), ("val", h_val, validation))}
    probe_seconds = time.perf_counter() - start
    few = label_efficiency(h_train, train, h_test, test.labels, FEW_LABELS, cfg.probe_steps, cfg.probe_weight_decay)
    return {"probe_val": round(probes["val"].test_accuracy, 4), "probe_test": round(probes["test"].test_accuracy, 4),
            "knn200_val": round(weighted_knn_accuracy(h_train, train.labels, h_val, validation.labels), 4),
            "knn200_test": round(weighted_knn_accuracy(h_train, train.labels, h_test, test.labels), 4),
            "effective_rank_h": round(effective_rank(h_train), 2),
            "few_label_probe_test": {str(n): [round(a, 4) for a in accuracies] for n, accuracies in few.items()},
            "probe_seconds": round(probe_seconds, 1), "probe_train_images": len(train),
            "validation_images": len(validation), "test_images": len(test)}


def point_folder(runs: Path, epochs: float) -> Path:
    """Where the curve's point of `epochs` is trained: the trunk itself for the last point, a branch of it else."""
    return runs / ("trunk" if epochs == CURVE_EPOCHS[-1] else f"point-{epochs:g}-epochs")


def curve_row(epochs: float, data: str, runs: Path, clocks: dict[str, float]) -> dict[str, Any]:
    """One point of the curve: the wsd run of `epochs` epochs (the trunk itself for the last), measured."""
    trunk_cfg = long_config(data, point_steps(long_config(data, 1), CURVE_EPOCHS[-1]))
    steps = point_steps(trunk_cfg, epochs)
    out = point_folder(runs, epochs)
    if epochs == CURVE_EPOCHS[-1]:
        log = trained(trunk_cfg, out)
    else:
        log = branch(trunk_cfg, point_folder(runs, CURVE_EPOCHS[-1]), steps, out)
    per_step = step_seconds(trunk_cfg, clocks)
    encoder = load_model(RunPaths(out).checkpoint, pick_device(trunk_cfg.device))[0].encoder
    return {"epochs": epochs, "steps": len(log["step_loss"]), "images_seen": len(log["step_loss"]) * cfg_batch(log),
            "clock_seconds_per_step": round(per_step, 4), "clock_seconds": round(len(log["step_loss"]) * per_step),
            "train_seconds": log["train_seconds"], **measure_point(encoder, trunk_cfg, RunPaths(out).features),
            "ssl_top1_val": round(log["evals"][-1]["top1"], 4), "config": log["config"],
            "step_loss_every_10": log["step_loss"][::10]}


def cfg_batch(log: dict[str, Any]) -> int:
    return log["config"]["batch_size"]


def random_init_row(data: str) -> dict[str, Any]:
    cfg = long_config(data, 1)
    return {"epochs": 0, "steps": 0, **measure_point(random_encoder(cfg, pick_device(cfg.device)), cfg, None)}


def export_weights(results: RowFile, runs: Path) -> None:
    """Ship the encoder of the curve's longest point as `pretrained.load("long")`: its file in half precision with
    a model card from the point's row; prints the sha256 to enter in `pretrained.SHIPPED`."""
    points = curve_points(results.rows())
    if not points:
        raise SystemExit("no curve point is stored yet: run --group curve first")
    row = points[-1]
    out = point_folder(runs, row["epochs"])
    keys = ("epochs", "steps", "images_seen", "clock_seconds_per_step", "clock_seconds", "train_seconds",
            "probe_val", "probe_test", "knn200_val", "knn200_test", "effective_rank_h", "few_label_probe_test",
            "probe_train_images", "data", "machine", "date", "commit")
    card = {"recipe": "bench/long_run.py: BASE with LONG, the wsd schedule ending at this point",
            **{key: row[key] for key in keys}, "licence": "MIT (the repository's LICENSE)"}
    digest = export(str(out), WEIGHTS / "long.pt", card)
    print(f'SHIPPED["long"] = ("long.pt", "{digest}")  # {row["epochs"]:g} epochs, probe_test {row["probe_test"]}')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--group", nargs="+", default=["clock", "levers"],
                        choices=["clock", "levers", "curve", "weights"])
    parser.add_argument("--up-to", type=float, default=CURVE_EPOCHS[-1],
                        help="with --group curve: make the points up to this many epochs (the rest another day)")
    parser.add_argument("--only", nargs="+", help="these levers only")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file rows are added to")
    parser.add_argument("--runs", type=Path, default=RUNS, help="where the runs are trained and kept")
    args = parser.parse_args()
    results = RowFile(args.results)
    configs = [lever_config(overrides, args.data) for overrides in LEVERS.values()]
    shapes = {shape(cfg, side): cfg for cfg in configs for side in {cfg.train_resolution, cfg.start_resolution} - {0}}

    if "clock" in args.group:
        for name, cfg in shapes.items():
            results.record("clock", name, lambda name=name, cfg=cfg: clock_row(name, cfg), args.data)
    if "levers" in args.group:
        clocks = {row["name"]: row["seconds_per_step"] for row in results.rows() if row["group"] == "clock"}
        for name, overrides in LEVERS.items():
            if args.only is None or name in args.only:
                results.record("levers", name, lambda name=name, o=overrides: lever_row(name, o, args.data, clocks,
                                                                                         args.runs), args.data)
    if "curve" in args.group:
        clocks = {row["name"]: row["seconds_per_step"] for row in results.rows() if row["group"] == "clock"}
        results.record("curve", "random init", lambda: random_init_row(args.data), args.data)
        for epochs in (e for e in CURVE_EPOCHS if e <= args.up_to):
            results.record("curve", f"{epochs:g} epochs",
                           lambda e=epochs: curve_row(e, args.data, args.runs / "curve", clocks), args.data)
    if "weights" in args.group:
        export_weights(results, args.runs / "curve")


if __name__ == "__main__":
    main()
