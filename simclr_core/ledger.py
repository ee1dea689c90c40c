"""When pre-training pays, read from stored rows: each side's accuracy against the compute it cost, where the lead
changes hands, and the ledger of one pre-training reused across tasks.

bench/when_it_pays.py makes the from-scratch and reuse rows; bench/long_run.py's curve is the SimCLR side (its
few-label probes at every point). A curve is a list of (seconds, accuracy) points, cheapest first; seconds are
what the steps cost on the machine's per-step clock, plus the probe's seconds on the SimCLR side.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from statistics import mean
from typing import Any

Curve = list[tuple[float, float]]  # (seconds of compute, test accuracy), cheapest first


def simclr_curve(points: list[dict[str, Any]], labels: int) -> Curve:
    """The long run's curve at `labels` a class: its clock seconds plus its probe's, and the mean of its few-label
    probes over their labelled subsets."""
    return [(row["clock_seconds"] + row["probe_seconds"], mean(row["few_label_probe_test"][str(labels)]))
            for row in points]


def scratch_curve(found: list[dict[str, Any]], labels: int) -> Curve:
    """From-scratch runs of the group `curves` at `labels` a class: at each budget, the mean over the labelled subsets
    trained at it (its compute is the subsets' mean, which differ by a step's rounding)."""
    at_budget: dict[float, list[dict[str, Any]]] = defaultdict(list)
    for row in found:
        if row.get("group") == "curves" and row["method"] == "from scratch" and row["labels_per_class"] == labels:
            at_budget[row["budget_seconds"]].append(row)
    return [(mean(r["compute_seconds"] for r in runs), mean(r["test_accuracy"] for r in runs))
            for _, runs in sorted(at_budget.items())]


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


def verdicts(simclr: Curve, scratch: Curve, tie: float) -> list[Verdict]:
    """Both sides at every compute of the from-scratch curve that lies inside the SimCLR curve's range."""
    found = []
    for seconds, scratch_accuracy in scratch:
        simclr_accuracy = at(simclr, seconds)
        if simclr_accuracy is None:
            continue
        gap = simclr_accuracy - scratch_accuracy
        leader = "tie" if abs(gap) < tie else ("SimCLR" if gap > 0 else "from scratch")
        found.append(Verdict(seconds, simclr_accuracy, scratch_accuracy, leader))
    return found


def crossover(found: list[Verdict]) -> tuple[float, float] | None:
    """Where the lead changes hands: from the last compute one side led beyond the tie to the first the other did
    (ties between them are inside the interval); None if no side's lead is ever taken over."""
    decided = [v for v in found if v.leader != "tie"]
    for before, after in zip(decided, decided[1:], strict=False):
        if before.leader != after.leader:
            return before.seconds, after.seconds
    return None


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
