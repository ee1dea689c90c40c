"""When pre-training pays: SimCLR + a linear probe against training the same network from scratch on the labels.

Every row of bench/results/when_it_pays.json is one method at one label budget (labels a class) and one labelled
subset, with what it cost. (bench/payoff.py made the earlier comparison at one compute, whose clocks were taken
under different loads; its rows stay in payoff.json.) Compute is
counted on this machine's clocks, all measured in one quiet session (`clock`): a run is defined by its steps, and
its seconds are its steps times the clock, so what a run learns cannot depend on how busy the machine was while it
ran (`compute_seconds` in a row is what its steps cost on the clock; `train_seconds` is what the run took).

Groups, in the order they run (`--group`):

- `book`: the SimCLR run B is made of, the quick preset for `BOOK_STEPS` steps (no time budget), its own clock
  (the median of 20 of its steps, measured before it trains) and its probe's seconds; B = its steps on that clock
  + the probe.
- `clock`: seconds of a supervised step (batch 128), of evaluating an image, and of LP-FT's head on all labels,
  measured in the same session as the book's clock.
- `select`: the choices, all on validation images, never on the test split. From scratch: one recipe (learning
  rate x weight decay x views) chosen at 100 labels a class with 100 validation images a class (as many as it trains
  on, which a practitioner could have), then applied unchanged at every budget. Fine-tuning (LP-FT and naive, each
  its own sweep): the encoder's learning-rate scale x views, at 25, 100 and 4,500 labels a class with as many
  validation images (500 at the largest).
- `table`: at B, the SimCLR probe, from scratch and fine-tuning, at 1 to 5,000 labels a class (three labelled
  subsets at 25 and fewer; fine-tuning on the first subset at 25, 100 and 5,000).
- `curves`: from scratch at 5, 25 and 100 labels a class at B/4, B/2, B, 2B, ... until it saturates (two doublings
  in a row and the quadrupling they make all tie: `ledger.saturated`), and one doubling more to test that it stays
  flat, or until it passes the long run's longest point (three subsets up to B at 5 and 25), on the labelled images
  the long run's few-label probes use (its 45,000 training images left by the holdout).
- `reuse`: ten two-class tasks (pairs of classes, 25 labels a class): one pre-training and a probe a task against a
  from-scratch run a task at B/4 and at B.
- `report`: what the stored rows say (`simclr_core.ledger`): at 5, 25 and 100 labels a class, the long run's
  few-label probes against the from-scratch curve on the same labelled subsets at each compute both reach (beyond
  a saturated from-scratch curve's end, its best carried flat, said so), where the lead changes hands; and
  the ledger of the reuse tasks at K = 1, 2, 5 and 10. It trains nothing.

Rows are appended as each finishes and skipped when already there (on this kind of machine), so the script can be
stopped and started again. Usage (hours on a 2-core CPU; `clock` and `book` want a quiet machine):

    python bench/when_it_pays.py --data data/cifar10-jpeg [--group clock book select table curves reuse report]
                                 [--labels 5 25 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any

from equal_compute import Clock, best, measure_clock, probe_accuracy

from simclr_core.config import Config, environment_default, make_config
from simclr_core.data import ImageSet, load_split, split_off_holdout
from simclr_core.engine import load_or_train, seconds_per_step
from simclr_core.ledger import compare, crossover, final_lead, reuse_ledger, saturated
from simclr_core.probe import extract_features, train_linear_probe
from simclr_core.results import RowFile, curve_points, seed_spread
from simclr_core.runtime import pick_device, uses_bf16
from simclr_core.supervised import (
    SupervisedConfig,
    load_classifier,
    train_supervised,
)

RESULTS = Path(__file__).parent / "results" / "when_it_pays.json"
LONG_RUN = Path(__file__).parent / "results" / "long_run.json"
RUNS = Path(__file__).parent.parent / "runs" / "when-it-pays"
BOOK_STEPS = 1000  # the seed spread's length (bench/pretraining.py): 140-200 s of clock at the quick run's pace
CLOCK_STEPS = (5, 20)  # untimed, then timed steps of the book's clock, as bench/long_run.py times its shapes
WIDTH = 32  # the quick preset's and the long run's: the same network on both sides
VIEWS = {"SimCLR's": ("crop,flip,jitter,blur", 0.3), "mild": ("crop,flip", 0.8)}  # augmentations, crop scale
SCRATCH_GRID = {"lr": [1e-3, 3e-3], "weight_decay": [5e-4, 5e-2], "views": list(VIEWS)}
SELECT_AT = 100  # labels a class where the from-scratch recipe is chosen, with as many validation images
FINE_TUNE_GRID = {"encoder_lr_scale": [0.1, 1.0], "views": list(VIEWS)}
FINE_TUNE_AT = {25: 25, 100: 100, 5000: 500}  # labels a class -> validation images a class for the choice
FINE_TUNE_SECONDS = 60.0  # fine-tuning's steps after the head, on top of B
TABLE_SUBSETS = {1: 3, 5: 3, 25: 3, 100: 1, 500: 1, 5000: 1}  # labels a class -> labelled subsets
CURVE_SUBSETS = {5: 3, 25: 3, 100: 1}
TIE = seed_spread().tie_threshold()  # two single runs: within 2 sqrt(2) seed sigmas is a tie
# ten pairs of classes: five disjoint, then five across them
TASKS = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (0, 8), (1, 9), (2, 4), (3, 5), (6, 9)]
TASK_LABELS = 25


def book_config(data: str) -> Config:
    """The run B is made of: the quick preset for `BOOK_STEPS` steps, no time budget."""
    return make_config("quick", data=data, time_budget=0.0, steps=BOOK_STEPS)


def book_row(data: str, train: ImageSet, test: ImageSet) -> dict[str, Any]:
    """The SimCLR run B is made of, its clock (this preset's own step, timed on this machine before it trains), and
    what its probe costs: features of the 60,000 images, then L-BFGS."""
    cfg = book_config(data)
    device = pick_device(cfg.device)
    simclr_clock = round(seconds_per_step(cfg, device, CLOCK_STEPS), 4)
    model, log = load_or_train(cfg, str(RUNS / "book"), progress=False)
    bf16 = uses_bf16(cfg.precision, device)
    start = time.perf_counter()
    train_x, test_x = (extract_features(model.encoder, images, device, bf16=bf16) for images in (train, test))
    probe = train_linear_probe(train_x, train.labels, test_x, test.labels, cfg.probe_steps, cfg.probe_weight_decay)
    probe_seconds = time.perf_counter() - start
    pretrain = BOOK_STEPS * simclr_clock
    return {"method": "SimCLR probe", "steps": BOOK_STEPS, "clock_seconds_per_step": simclr_clock,
            "pretrain_seconds": round(pretrain, 1), "probe_seconds": round(probe_seconds, 1),
            "budget_seconds": round(pretrain + probe_seconds), "train_seconds": log["train_seconds"],
            "test_accuracy": round(probe.test_accuracy, 4), "precision": log["precision"]}


class Experiment:
    """What every row needs: the results file, the data, the clock, B and the encoder of B's SimCLR run."""

    def __init__(self, data: str, results: RowFile, clock: Clock, budget: float, train: ImageSet, test: ImageSet):
        self.data, self.results, self.clock, self.budget = data, results, clock, budget
        self.train, self.test = train, test
        # the book's run, trained again (same seed, same steps) if runs/ was cleared since its row was stored
        self.encoder = load_or_train(book_config(data), str(RUNS / "book"), progress=True)[0].encoder

    def supervised(self, group: str, name: str, cfg: SupervisedConfig, seconds: float,
                   sets: tuple[ImageSet, ImageSet] | None = None, refit: bool = False) -> dict[str, Any]:
        """Train (or find) the supervised run `name` for `seconds` of clock; with `refit`, re-probe its fine-tuned
        encoder on its labelled images (how far fine-tuning moved the features)."""
        train, test = sets or (self.train, self.test)
        found = next((row for row in self.results.rows() if (row.get("group"), row["name"]) == (group, name)), None)
        if found is not None:
            return found
        classes = len(train.classes)
        cfg = dataclasses.replace(cfg, data=self.data, width=WIDTH, time_budget=0.0,
                                  steps=self.clock.steps(cfg, seconds, len(test), classes))

        def row() -> dict[str, Any]:
            out = RUNS / group / name.replace(" ", "-").replace(",", "").replace("'", "")
            log = train_supervised(cfg, str(out), False, train, test)
            made = {"method": "from scratch" if not cfg.init else ("LP-FT" if cfg.head == "probe" else "naive FT"),
                    "labels_per_class": cfg.labels_per_class, "label_seed": cfg.label_seed, "config": cfg.to_dict(),
                    "budget_seconds": round(seconds, 1), "steps": cfg.steps,
                    "compute_seconds": self.clock.seconds(cfg, len(test), classes),
                    "train_seconds": log["train_seconds"], "train_accuracy": round(log["train_accuracy"], 4),
                    "validation_accuracy": log["validation_accuracy"] and round(log["validation_accuracy"], 4),
                    "test_accuracy": round(log["test_accuracy"], 4), "precision": log["precision"]}
            if refit:
                model, _ = load_classifier(str(out), pick_device(cfg.device))
                made["refit_probe_accuracy"] = round(probe_accuracy(model.encoder, train, test, cfg.labels_per_class,
                                                                    cfg.label_seed), 4)
            return made

        return self.results.record(group, name, row, self.data) or {}


def select(ex: Experiment) -> tuple[SupervisedConfig, dict[str, SupervisedConfig]]:
    """The from-scratch recipe, and each fine-tuning method's settings at each budget, chosen on validation."""
    scratch = []
    for lr, weight_decay, views in itertools.product(*SCRATCH_GRID.values()):
        augmentations, crop = VIEWS[views]
        cfg = SupervisedConfig(labels_per_class=SELECT_AT, validation_per_class=SELECT_AT, lr=lr,
                               weight_decay=weight_decay, augmentations=augmentations, crop_min_scale=crop)
        scratch.append(ex.supervised("select", f"scratch lr {lr:g} wd {weight_decay:g} {views} views", cfg,
                                     ex.budget))
    recipe = SupervisedConfig(**{**best(scratch)["config"], "validation_per_class": 0})
    tuned: dict[str, SupervisedConfig] = {}
    for head, (n, validation) in itertools.product(("probe", "random"), FINE_TUNE_AT.items()):
        rows = []
        for scale, views in itertools.product(*FINE_TUNE_GRID.values()):
            augmentations, crop = VIEWS[views]
            cfg = SupervisedConfig(init=str(RUNS / "book"), head=head, labels_per_class=min(n, 5000 - validation),
                                   validation_per_class=validation, lr=1e-3, encoder_lr_scale=scale,
                                   weight_decay=1e-4, augmentations=augmentations, crop_min_scale=crop)
            method = "LP-FT" if head == "probe" else "naive FT"
            seconds = FINE_TUNE_SECONDS + ex.clock.overhead(cfg, len(ex.test))
            rows.append(ex.supervised("select", f"{method} {n} scale {scale:g} {views} views", cfg, seconds))
        tuned[f"{head} {n}"] = SupervisedConfig(**{**best(rows)["config"], "validation_per_class": 0,
                                                   "labels_per_class": n})
    return recipe, tuned


def table(ex: Experiment, recipe: SupervisedConfig, tuned: dict[str, SupervisedConfig],
          book: dict[str, Any]) -> None:
    """Every method at B, at 1 to 5,000 labels a class; fine-tuning on the first subset at 25, 100 and 5,000."""
    for n, subsets in TABLE_SUBSETS.items():
        for seed in range(subsets):
            ex.results.record("table", f"{n} seed {seed} SimCLR probe", lambda n=n, seed=seed: {
                "method": "SimCLR probe", "labels_per_class": n, "label_seed": seed,
                "compute_seconds": book["budget_seconds"], "pretrain_seconds": book["pretrain_seconds"],
                "test_accuracy": round(probe_accuracy(ex.encoder, ex.train, ex.test, n, seed), 4)}, ex.data)
            cfg = dataclasses.replace(recipe, labels_per_class=n, label_seed=seed)
            ex.supervised("table", f"{n} seed {seed} scratch", cfg, ex.budget)
            for head in ("probe", "random") if seed == 0 and n in FINE_TUNE_AT else ():
                cfg = dataclasses.replace(tuned[f"{head} {n}"], label_seed=seed)
                seconds = FINE_TUNE_SECONDS + ex.clock.overhead(cfg, len(ex.test))  # on top of B
                ex.supervised("table", f"{n} seed {seed} {'LP-FT' if head == 'probe' else 'naive FT'}", cfg,
                              seconds, refit=True)


def curves(ex: Experiment, recipe: SupervisedConfig, longest: float, labels: list[int]) -> None:
    """From scratch against compute at `labels` a class (in that order), on the long run's labelled images."""
    rest = split_off_holdout(ex.train, 5000)[0]  # the long run's holdout: its probes' labelled images come from rest
    for n in labels:
        for seed in range(CURVE_SUBSETS[n]):
            accuracies: list[float] = []
            for k in itertools.count():
                seconds = ex.budget / 4 * 2**k
                if seconds > (longest if seed == 0 else ex.budget) or saturated(accuracies[:-1], TIE):
                    break  # one point past saturation, to test that the curve stays flat
                cfg = dataclasses.replace(recipe, labels_per_class=n, label_seed=seed)
                row = ex.supervised("curves", f"{n} seed {seed} scratch {k - 2:+d} doublings", cfg, seconds,
                                    (rest, ex.test))
                accuracies.append(row["test_accuracy"])


def task(images: ImageSet, classes: tuple[int, int]) -> ImageSet:
    """The images of two classes, labelled 0 and 1."""
    keep = (images.labels == classes[0]) | (images.labels == classes[1])
    chosen = images.subset(keep.nonzero().squeeze(1))
    return ImageSet(chosen.images, (chosen.labels == classes[1]).long(), [images.classes[c] for c in classes])


def reuse(ex: Experiment, recipe: SupervisedConfig, book: dict[str, Any]) -> None:
    """Ten two-class tasks: the SimCLR encoder probed once a task, and a from-scratch run a task at B/4 and B."""
    for classes in TASKS:
        train, test = task(ex.train, classes), task(ex.test, classes)
        name = f"{train.classes[0]} vs {train.classes[1]}"

        def probed(train: ImageSet = train, test: ImageSet = test) -> dict[str, Any]:
            start = time.perf_counter()
            accuracy = probe_accuracy(ex.encoder, train, test, TASK_LABELS, 0)
            return {"method": "SimCLR probe", "labels_per_class": TASK_LABELS, "test_accuracy": round(accuracy, 4),
                    "probe_seconds": round(time.perf_counter() - start, 1),
                    "pretrain_seconds": book["pretrain_seconds"]}

        ex.results.record("reuse", f"{name} SimCLR probe", probed, ex.data)
        for share in (0.25, 1.0):
            cfg = dataclasses.replace(recipe, labels_per_class=TASK_LABELS)
            ex.supervised("reuse", f"{name} scratch {share:g} B", cfg, share * ex.budget, (train, test))


def report(found: list[dict[str, Any]], long_run: list[dict[str, Any]], classes: list[str]) -> None:
    """Print, from the stored rows, each label budget's comparison against compute and the reuse ledger."""
    points = curve_points(long_run)
    for n in CURVE_SUBSETS:
        compared = compare(points, found, n, TIE)
        print(f"{n} labels a class (SimCLR read between the long run's points, in log seconds):")
        for v in compared:
            print(f"  {v.seconds:7.0f} s: SimCLR {v.simclr:.3f}, from scratch {v.scratch:.3f}"
                  f"{' (saturated: its best, carried flat)' if v.carried else ''}, {v.subsets} subset(s): {v.leader}")
        interval, lead = crossover(compared), final_lead(compared)
        if interval:
            print(f"  the lead changes hands between {interval[0]:.0f} and {interval[1]:.0f} s")
        if lead:
            print(f"  {lead[0]} leads from {lead[1]:.0f} s on" + (f" (not at {lead[2]:.0f} s)" if lead[2] else ""))
        elif compared:
            print(f"  a tie at the largest compute compared, {compared[-1].seconds:.0f} s")
    tasks = [f"{classes[a]} vs {classes[b]}" for a, b in TASKS]
    names = {row["name"] for row in found if row.get("group") == "reuse"}
    if all(f"{task} SimCLR probe" in names and f"{task} scratch 1 B" in names for task in tasks):
        for row in reuse_ledger(found, tasks):
            print(f"K = {row['tasks']:2}: {row['method']:28} mean accuracy {row['accuracy']:.3f}, "
                  f"{row['seconds']:7.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--group", nargs="+",
                        default=["clock", "book", "select", "table", "curves", "reuse", "report"])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--labels", type=int, nargs="+", default=list(CURVE_SUBSETS), choices=list(CURVE_SUBSETS),
                        help="labels a class of the group curves, in the order to run them")
    args = parser.parse_args()
    results = RowFile(args.results)
    train, test = load_split(args.data, "train"), load_split(args.data, "test")
    long_run = RowFile(LONG_RUN).rows()
    if args.group == ["report"]:  # the stored rows only: nothing is trained
        report(results.rows(), long_run, train.classes)
        return
    results.record("book", "book", lambda: book_row(args.data, train, test), args.data)
    results.record("clock", "supervised clock", lambda: measure_clock(str(RUNS / "book"), WIDTH, train, test),
                   args.data)
    book = next(row for row in results.rows() if (row.get("group"), row["name"]) == ("book", "book"))
    clock = next(row for row in results.rows() if (row.get("group"), row["name"]) == ("clock", "supervised clock"))
    ex = Experiment(args.data, results, Clock(clock, len(train)), float(book["budget_seconds"]), train, test)
    if not {"select", "table", "curves", "reuse"} & set(args.group):
        return
    recipe, tuned = select(ex)
    if "table" in args.group:
        table(ex, recipe, tuned, book)
    if "curves" in args.group:
        longest = max(row["clock_seconds"] + row["probe_seconds"] for row in curve_points(long_run))
        curves(ex, recipe, longest, args.labels)
    if "reuse" in args.group:
        reuse(ex, recipe, book)
    if "report" in args.group:
        report(results.rows(), long_run, train.classes)


if __name__ == "__main__":
    main()
