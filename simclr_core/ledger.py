"""When pre-training pays, read from stored rows: each side's accuracy against the compute it cost, where the lead
changes hands, and the ledger of one pre-training reused across tasks.

bench/when_it_pays.py makes the from-scratch and reuse rows; bench/long_run.py's curve is the SimCLR side (its
few-label probes at every point). A curve is a list of (seconds, accuracy) points, cheapest first; seconds are
what the steps cost on the machine's per-step clock, plus the probe's seconds on the SimCLR side.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean
from typing import Any

Curve = list[tuple[float, float]]  # (seconds of compute, test accuracy), cheapest first


def simclr_curve(points: list[dict[str, Any]], labels: int, subsets: Sequence[int] | None = None) -> Curve:
    """The long run's curve at `labels` a class: its clock seconds plus its probe's, and the mean of its few-label
    probes over `subsets` (the labelled subsets' seeds; all of them if None)."""
    def chosen(accuracies: list[float]) -> list[float]:
        return accuracies if subsets is None else [accuracies[seed] for seed in subsets]
    return [(row["clock_seconds"] + row["probe_seconds"], mean(chosen(row["few_label_probe_test"][str(labels)])))
            for row in points]


def scratch_runs(found: list[dict[str, Any]], labels: int) -> dict[float, dict[int, dict[str, Any]]]:
    """From-scratch runs of the group `curves` at `labels` a class, by budget (seconds) and labelled subset (seed)."""
    runs: dict[float, dict[int, dict[str, Any]]] = defaultdict(dict)
    for row in found:
        if row.get("group") == "curves" and row["method"] == "from scratch" and row["labels_per_class"] == labels:
            runs[row["budget_seconds"]][row["label_seed"]] = row
    return dict(sorted(runs.items()))


def subsets_at_end(found: list[dict[str, Any]], labels: int) -> list[int]:
    """The labelled subsets trained at the largest from-scratch budget at `labels` a class (its curve's own)."""
    runs = scratch_runs(found, labels)
    return sorted(runs[max(runs)]) if runs else []


def scratch_curve(found: list[dict[str, Any]], labels: int, subsets: Sequence[int] | None = None) -> Curve:
    """From scratch at `labels` a class: at each budget, the mean over `subsets` (all trained at it if None; a budget
    that lacks one of them is left out). Its compute is the subsets' mean, which differ by a step's rounding."""
    curve = []
    for by_seed in scratch_runs(found, labels).values():
        seeds = sorted(by_seed) if subsets is None else list(subsets)
        if all(seed in by_seed for seed in seeds):
            curve.append((mean(by_seed[s]["compute_seconds"] for s in seeds),
                          mean(by_seed[s]["test_accuracy"] for s in seeds)))
    return curve


def saturated(accuracies: list[float], tie: float) -> bool:
    """Whether a curve that doubles its compute a point has stopped gaining: its last two doublings are both ties,
    and so is the quadrupling they make (two ties in a row can add up to a gain: 0.37, 0.38, 0.395 is rising)."""
    if len(accuracies) < 3:
        return False
    first, second, third = accuracies[-3:]
    return all(abs(later - earlier) < tie for earlier, later in ((first, second), (second, third), (first, third)))


def at(curve: Curve, seconds: float) -> float | None:
    """The curve's accuracy at `seconds`, linear in log seconds between its points; None outside its range."""
    for (s0, a0), (s1, a1) in zip(curve, curve[1:], strict=False):
        if s0 < seconds < s1:
            return a0 + (a1 - a0) * math.log(seconds / s0) / math.log(s1 / s0)
    return next((accuracy for s, accuracy in curve if s == seconds), None)


@dataclass(frozen=True)
class Verdict:
    """One compute at which both sides were measured: which leads beyond the tie threshold, if either."""

    seconds: float
    simclr: float
    scratch: float
    leader: str  # "SimCLR", "from scratch" or "tie"
    subsets: int = 1  # labelled subsets both sides' accuracies are the mean of
    carried: bool = False  # from scratch was not run here: its saturated curve's best, carried flat


def verdict(seconds: float, simclr: float, scratch: float, tie: float, subsets: int = 1,
            carried: bool = False) -> Verdict:
    """Who leads at one compute: a gap under `tie` is a tie."""
    gap = simclr - scratch
    leader = "tie" if abs(gap) < tie else ("SimCLR" if gap > 0 else "from scratch")
    return Verdict(seconds, simclr, scratch, leader, subsets, carried)


def verdicts(simclr: Curve, scratch: Curve, tie: float, subsets: int = 1) -> list[Verdict]:
    """Both sides at every compute of the from-scratch curve that lies inside the SimCLR curve's range."""
    return [verdict(seconds, simclr_accuracy, scratch_accuracy, tie, subsets)
            for seconds, scratch_accuracy in scratch
            if (simclr_accuracy := at(simclr, seconds)) is not None]


def compare(points: list[dict[str, Any]], found: list[dict[str, Any]], labels: int, tie: float) -> list[Verdict]:
    """The long run's few-label probes against from scratch at `labels` a class, on the same labelled subsets.

    At each from-scratch budget, both sides are the mean over the subsets trained at it (SimCLR read between its
    points). Where from scratch stopped because it saturated (`saturated`: two doublings and their quadrupling
    tie), each SimCLR point beyond is compared with the best of its last three points, carried flat (`carried`):
    the one reading no run tests, so a caller says so."""
    runs = scratch_runs(found, labels)
    found_verdicts = []
    for by_seed in runs.values():
        here = list(by_seed.values())
        scratch = [(mean(r["compute_seconds"] for r in here), mean(r["test_accuracy"] for r in here))]
        found_verdicts += verdicts(simclr_curve(points, labels, sorted(by_seed)), scratch, tie, len(here))
    last = subsets_at_end(found, labels)
    own = scratch_curve(found, labels, last)
    if saturated([accuracy for _, accuracy in own], tie):
        best = max(accuracy for _, accuracy in own[-3:])
        found_verdicts += [verdict(seconds, accuracy, best, tie, len(last), carried=True)
                           for seconds, accuracy in simclr_curve(points, labels, last) if seconds > own[-1][0]]
    return found_verdicts


def crossover(found: list[Verdict]) -> tuple[float, float] | None:
    """Where the lead changes hands: from the last compute one side led beyond the tie to the first the other did
    (ties between them are inside the interval); None if no side's lead is ever taken over."""
    decided = [v for v in found if v.leader != "tie"]
    for before, after in zip(decided, decided[1:], strict=False):
        if before.leader != after.leader:
            return before.seconds, after.seconds
    return None


def final_lead(found: list[Verdict]) -> tuple[str, float, float | None] | None:
    """Who leads at the largest compute compared, from which compute on without a break, and the last compute
    before that (where it did not lead; None if it led everywhere). None if the largest compute is a tie."""
    if not found or found[-1].leader == "tie":
        return None
    stretch = len(found) - 1
    while stretch > 0 and found[stretch - 1].leader == found[-1].leader:
        stretch -= 1
    return found[-1].leader, found[stretch].seconds, found[stretch - 1].seconds if stretch else None


def reuse_ledger(found: list[dict[str, Any]], tasks: list[str], ks: tuple[int, ...] = (1, 2, 5, 10)
                 ) -> list[dict[str, Any]]:
    """One pre-training reused across the first K of `tasks` (bench/when_it_pays.py's `reuse` rows, named "TASK
    SimCLR probe" and "TASK scratch SHARE B"): the compute each way of solving K tasks costs, and the mean task
    accuracy. SimCLR pays its pre-training once and a probe a task; from scratch pays a run a task. A K beyond
    the number of tasks is left out."""
    by_name = {row["name"]: row for row in found if row.get("group") == "reuse"}
    shares = sorted({row["name"].rsplit(" scratch ", 1)[1] for row in by_name.values() if " scratch " in row["name"]})
    ledger = []
    for k in (k for k in ks if k <= len(tasks)):
        probes = [by_name[f"{task} SimCLR probe"] for task in tasks[:k]]
        ledger.append({"tasks": k, "method": "SimCLR probe", "accuracy": mean(r["test_accuracy"] for r in probes),
                       "seconds": probes[0]["pretrain_seconds"] + sum(r["probe_seconds"] for r in probes)})
        for share in shares:
            runs = [by_name[f"{task} scratch {share}"] for task in tasks[:k]]
            ledger.append({"tasks": k, "method": f"from scratch, {share} a task",
                           "accuracy": mean(r["test_accuracy"] for r in runs),
                           "seconds": sum(r["compute_seconds"] for r in runs)})
    return ledger
