"""What pre-training buys at equal compute: SimCLR + a linear probe against supervised training on the labels.

Chapter 7 reads bench/results/payoff.json. Every row is one method at one label budget (labels per class) and
one labelled subset, with the seconds it cost on this machine. Groups, run in this order (`--group`):

- `book`: the book's SimCLR run (the `quick` preset, 300 s budget) into runs/bench/book, and the cost of its
  probe (features of the 60,000 images, then L-BFGS). Their sum is B, the compute every baseline is given.
  Then the clock of supervised training on this machine: seconds of a step (batch 128), of evaluating an image,
  of LP-FT's head. Measured once, on a quiet machine, they turn every budget in seconds into a number of steps,
  so what a run learns cannot depend on how busy the machine was while it ran (`compute_seconds` in a row is
  what its steps cost at that clock; `train_seconds` is what the run took).
- `sweep`: hyper-parameters of training from scratch, chosen on a validation split (500 images a class held out
  of the training split; the labelled images come from the rest), never on the test set: learning rate x
  weight decay x augmentations, at 25 and at 4,500 labels a class, each run for B / 3 seconds; and LP-FT's
  learning rate x augmentations for FINE_TUNE_SECONDS after its head. Test accuracy is recorded but chooses
  nothing.
- `length`: the best from-scratch config of the few-labels regime run for all of B, on validation: how long to
  train (B / 3 or B). With many labels every run trains for B.
- `final`: at 1, 5, 25, 100, 500 and 5,000 labels a class (three labelled subsets at 25 and fewer, where the
  draw matters), on the labelled images of the whole training split: the SimCLR probe, training from scratch (the
  chosen config and length, at most B), at FINE_TUNED_AT LP-FT, and at NAIVE_AT naive fine-tuning (a random
  head, LP-FT's settings), each fine-tuned encoder re-probed on its labelled images (how far its features
  moved). The first subset of every budget runs first, then `compute`, then the other subsets (SimCLR probe and
  from scratch), from 25 labels a class down (nearest the budgets where the lead changes hands).
- `compute`: from scratch with all labels at 30, 75 and 150 s, and with 5 and 100 a class at 30 s.

Rows are appended as each finishes; a row already recorded on this kind of machine is skipped, so the script
can be stopped and started again (the book run and the clock need a quiet machine; the rest does not). Usage
(about 2 hours on a 2-core CPU):

    python bench/payoff.py --data data/cifar10-jpeg [--group book sweep length final compute]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from equal_compute import Clock, best, measure_clock, probe_accuracy

from simclr_core.config import environment_default, make_config
from simclr_core.data import ImageSet, load_split
from simclr_core.engine import load_or_train
from simclr_core.model import load_model
from simclr_core.probe import extract_features, train_linear_probe
from simclr_core.results import RowFile, stamp
from simclr_core.runtime import machine_description, machine_kind, pick_device, uses_bf16
from simclr_core.storage import RunPaths
from simclr_core.supervised import (
    SupervisedConfig,
    load_classifier,
    train_supervised,
)

RESULTS = Path(__file__).parent / "results" / "payoff.json"
RUNS = Path(__file__).parent.parent / "runs" / "bench"
BOOK = RUNS / "book"
VALIDATION_PER_CLASS = 500
SWEEP_LABELS = {"few": 25, "many": 4500}  # the regimes: at most FEW_UP_TO labels a class, and more
FEW_UP_TO = 100
AUGMENTATIONS = [("crop,flip,jitter,blur", 0.3), ("crop,flip", 0.8)]  # SimCLR's views, milder ones
SWEPT = {"weight_decay": [5e-4, 5e-2], "augmentations": AUGMENTATIONS}  # in both regimes, with their lr below
# 1e-2 came last at 25 labels a class and 3e-3 behind 1e-3 at 4,500: 1e-2 not run there (time)
SWEEP_GRID = {"few": {"lr": [1e-3, 3e-3, 1e-2], **SWEPT}, "many": {"lr": [1e-3, 3e-3], **SWEPT}}
FINE_TUNE_SECONDS = 60.0
FINE_TUNE_GRID = {"lr": [1e-4, 1e-3], "augmentations": AUGMENTATIONS[:1]}
LENGTH_REGIMES = ["few"]  # "many" trains for all of B: at B / 3 it fits 60% of its labels, far from overfitting
FINAL_SUBSETS = {1: 3, 5: 3, 25: 3, 100: 1, 500: 1, 5000: 1}  # labels a class -> labelled subsets drawn
FINE_TUNED_AT = (1, 5, 100, 5000)  # labels a class where LP-FT runs (first subset; 25 and 500 left out: time)
NAIVE_AT = (5, 100, 5000)  # and naive fine-tuning
COMPUTE_SECONDS = [30, 75, 150]  # from scratch with all labels at these budgets (and at B: the final rows)


class Results(RowFile):
    """bench/results/payoff.json: rows found by name among this machine kind's, appended one at a time."""

    def find(self, name: str) -> dict[str, Any] | None:
        return next((row for row in self.rows() if row["name"] == name and row["machine_kind"] == machine_kind()),
                    None)

    def add(self, row: dict[str, Any]) -> dict[str, Any]:
        """`row` stamped (its `data` names the copy) and appended atomically."""
        row = {**row, **stamp(row["data"]), "machine": row["machine"]}  # the run's own machine description
        self.append(row)
        print(json.dumps(row), flush=True)
        return row


def book_row(results: Results, data: str) -> dict[str, Any]:
    """The book's run and what its probe costs; B is their sum."""
    row = results.find("book")
    if row:
        return row
    cfg = make_config("quick", data=data)
    model, log = load_or_train(cfg, str(BOOK), progress=False)
    device = pick_device(cfg.device)
    train, test = load_split(data, "train"), load_split(data, "test")
    start = time.perf_counter()
    bf16 = uses_bf16(cfg.precision, device)
    train_x, test_x = (extract_features(model.encoder, images, device, bf16=bf16) for images in (train, test))
    probe = train_linear_probe(train_x, train.labels, test_x, test.labels, cfg.probe_steps, cfg.probe_weight_decay)
    probe_seconds = time.perf_counter() - start
    return results.add({"group": "book", "name": "book", "method": "SimCLR probe", "labels_per_class": 5000,
                        "steps": log["total_steps"], "pretrain_seconds": log["train_seconds"],
                        "probe_seconds": round(probe_seconds, 1),
                        "budget_seconds": round(log["train_seconds"] + probe_seconds),
                        "test_accuracy": round(probe.test_accuracy, 4), "precision": log["precision"],
                        "data": os.path.basename(os.path.normpath(data)), "machine": log["machine"]})


def clock_row(results: Results, sets: tuple[ImageSet, ImageSet], width: int) -> dict[str, Any]:
    """This machine's supervised clock (`equal_compute.measure_clock`), measured once and stored."""
    row = results.find("clock")
    if row:
        return row
    return results.add({"group": "book", "name": "clock", **measure_clock(str(BOOK), width, *sets),
                        "machine": machine_description()})


def supervised_row(results: Results, clock: Clock, group: str, name: str, cfg: SupervisedConfig, seconds: float,
                   sets: tuple[ImageSet, ImageSet], method: str, extra: dict[str, Any] | None = None,
                   refit: bool = False) -> dict[str, Any]:
    """Train (or find) one supervised run of `seconds` (as steps at the clock); with `refit`, re-probe its
    fine-tuned encoder on its labelled images."""
    row = results.find(name)
    if row:
        return row
    cfg = dataclasses.replace(cfg, time_budget=0.0, steps=clock.steps(cfg, seconds, len(sets[1])))
    out = RUNS / "payoff" / name.replace(" ", "-").replace(",", "")
    log = train_supervised(cfg, str(out), False, *sets)
    row = {"group": group, "name": name, "method": method, "labels_per_class": cfg.labels_per_class,
           "label_seed": cfg.label_seed, "config": cfg.to_dict(), "budget_seconds": seconds, "steps": cfg.steps,
           "compute_seconds": clock.seconds(cfg, len(sets[1])), "train_seconds": log["train_seconds"],
           "train_accuracy": round(log["train_accuracy"], 4),
           "validation_accuracy": log["validation_accuracy"] and round(log["validation_accuracy"], 4),
           "test_accuracy": round(log["test_accuracy"], 4), "precision": log["precision"],
           "data": os.path.basename(os.path.normpath(cfg.data)), "machine": log["machine"], **(extra or {})}
    if refit:  # the fine-tuned encoder's own features, probed on the same labelled images
        model, _ = load_classifier(str(out), pick_device(cfg.device))
        row["refit_probe_accuracy"] = round(probe_accuracy(model.encoder, *sets, cfg.labels_per_class, cfg.label_seed,
                                                          cfg.device, cfg.precision), 4)
    return results.add(row)


def regime(labels_per_class: int) -> str:
    return "few" if labels_per_class <= FEW_UP_TO else "many"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--group", nargs="+", default=["book", "sweep", "length", "final", "compute"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = Results(args.results)
    book = book_row(results, args.data)
    budget = float(book["budget_seconds"])
    quick = make_config("quick", data=args.data)
    sets = (load_split(args.data, "train"), load_split(args.data, "test"))
    clock = Clock(clock_row(results, sets, quick.width), len(sets[0]))
    base = dict(data=args.data, width=quick.width, validation_per_class=VALIDATION_PER_CLASS)
    tuned = dict(init=str(BOOK), head="probe", encoder_lr_scale=1.0, weight_decay=1e-4)
    groups = set(args.group)

    sweep: dict[str, list[dict[str, Any]]] = {"scratch few": [], "scratch many": [], "lp-ft few": [], "lp-ft many": []}
    if groups & {"sweep", "length", "final", "compute"}:
        for label_regime, n in SWEEP_LABELS.items():
            for lr, wd, (augs, crop) in itertools.product(*SWEEP_GRID[label_regime].values()):
                cfg = SupervisedConfig(**base, labels_per_class=n, lr=lr, weight_decay=wd, augmentations=augs,
                                       crop_min_scale=crop)
                sweep[f"scratch {label_regime}"].append(supervised_row(
                    results, clock, "sweep", f"sweep scratch {n} lr {lr:g} wd {wd:g} {augs} {crop:g}", cfg,
                    budget / 3, sets, "scratch"))
        for (label_regime, n), lr, (augs, crop) in itertools.product(SWEEP_LABELS.items(), *FINE_TUNE_GRID.values()):
            cfg = SupervisedConfig(**base, **tuned, labels_per_class=n, lr=lr, augmentations=augs, crop_min_scale=crop)
            seconds = FINE_TUNE_SECONDS + clock.overhead(cfg, len(sets[1]))  # the head and the evaluations come on top
            sweep[f"lp-ft {label_regime}"].append(supervised_row(
                results, clock, "sweep", f"sweep lp-ft {n} lr {lr:g} {augs} {crop:g}", cfg, seconds, sets, "LP-FT"))
    chosen: dict[str, dict[str, Any]] = {}  # regime -> the from-scratch row whose config and length are used
    if groups & {"length", "final", "compute"}:
        for label_regime, n in SWEEP_LABELS.items():
            short = best(sweep[f"scratch {label_regime}"])
            if label_regime in LENGTH_REGIMES:
                longer = supervised_row(results, clock, "length", f"length scratch {n} B",
                                        SupervisedConfig(**short["config"]), budget, sets, "scratch")
                chosen[label_regime] = best([short, longer])
            else:
                chosen[label_regime] = {**short, "budget_seconds": budget}

    def finals(first: bool) -> None:  # the first subsets from 1 label a class up; the others from 25 down
        for n, subsets in FINAL_SUBSETS.items() if first else reversed(FINAL_SUBSETS.items()):
            for seed in range(1) if first else range(1, subsets):
                final_rows(results, clock, n, seed, chosen[regime(n)], best(sweep[f"lp-ft {regime(n)}"]), sets,
                           book)

    if "final" in groups:
        finals(first=True)
    if "compute" in groups:
        for seconds in COMPUTE_SECONDS:
            cfg = SupervisedConfig(**{**chosen["many"]["config"], "validation_per_class": 0, "labels_per_class": 5000})
            supervised_row(results, clock, "compute", f"compute scratch 5000 {seconds} s", cfg, seconds, sets,
                           "scratch")
        for n in (5, 100):
            cfg = SupervisedConfig(**{**chosen["few"]["config"], "validation_per_class": 0, "labels_per_class": n})
            supervised_row(results, clock, "compute", f"compute scratch {n} 30 s", cfg, 30, sets, "scratch")
    if "final" in groups:
        finals(first=False)


def final_rows(results: Results, clock: Clock, n: int, seed: int, scratch: dict[str, Any], lp_ft: dict[str, Any],
               sets: tuple[ImageSet, ImageSet], book: dict[str, Any]) -> None:
    """Every method at `n` labels a class on labelled subset `seed`, the test set scoring them."""
    final = dict(labels_per_class=n, label_seed=seed, validation_per_class=0)
    name = f"final {n} seed {seed}"
    if not results.find(f"{name} SimCLR probe"):
        model, _ = load_model(RunPaths(BOOK).checkpoint, pick_device("auto"))
        cfg = SupervisedConfig(**{**scratch["config"], **final})
        start = time.perf_counter()
        accuracy = probe_accuracy(model.encoder, *sets, cfg.labels_per_class, cfg.label_seed, cfg.device,
                                  cfg.precision)
        results.add({"group": "final", "name": f"{name} SimCLR probe", "method": "SimCLR probe",
                     "labels_per_class": n, "label_seed": seed, "test_accuracy": round(accuracy, 4),
                     "train_seconds": round(time.perf_counter() - start, 1), "compute_seconds": book["budget_seconds"],
                     "pretrain_seconds": book["pretrain_seconds"], "data": book["data"], "machine": book["machine"]})
    pretrain = {"pretrain_seconds": book["pretrain_seconds"]}
    cfg = SupervisedConfig(**{**scratch["config"], **final})
    supervised_row(results, clock, "final", f"{name} scratch", cfg, scratch["budget_seconds"], sets, "scratch")
    if seed > 0 or n not in FINE_TUNED_AT:  # the other subsets: the probe and from scratch, for their spread
        return
    tuned = SupervisedConfig(**{**lp_ft["config"], **final})
    seconds = FINE_TUNE_SECONDS + clock.overhead(tuned, len(sets[1]))
    supervised_row(results, clock, "final", f"{name} LP-FT", tuned, seconds, sets, "LP-FT", pretrain, refit=True)
    if n in NAIVE_AT:  # naive fine-tuning: LP-FT's settings with a random head
        naive = SupervisedConfig(**{**lp_ft["config"], **final, "head": "random"})
        seconds = FINE_TUNE_SECONDS + clock.overhead(naive, len(sets[1]))
        supervised_row(results, clock, "final", f"{name} naive FT", naive, seconds, sets, "naive FT", pretrain,
                       refit=True)


if __name__ == "__main__":
    main()
