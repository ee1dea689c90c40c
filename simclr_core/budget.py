"""A run's length in steps, and a wall-clock budget that chooses it: how many steps fit in S seconds.

A run without a budget trains the steps its config names. A run with one (`--time-budget S`) cannot know how
many steps it can afford until it has timed some, so `TimeBudget` works in four moves:

1. calibrate: time a few steps whose effect is then undone (`median_step_seconds`), so that the run which
   follows is exactly the one `--steps N` would train: a budget only chooses N;
2. plan: as many steps as fit in 90% of what is left, with room for the evaluations (on the project's shared
   2-core machines a few timed steps were off by -10% to +19%);
3. re-plan once, when a tenth of the plan (and at least the run's minimum) has been trained (`replan_due`), from
   the seconds those real steps took (`StepClock`: steps only, evaluations between them left out), aiming at 95%;
4. `exceeded`: a run that the machine slowed down stops at the budget, whatever the plan said.

SimCLR pre-training (engine.py) and supervised training (supervised.py) both follow these four moves, with one
rule for each. The record a budget keeps (`record`) goes into the run's log as `budget`. A budget too short for
its run's minimum number of steps is refused with the seconds it would need, rather than training a step or two
and reporting them as a result.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

CALIBRATION_STEPS = (2, 5)  # steps run untimed (kernel set-up), then timed
FIRST_PLAN_MARGIN = 0.90  # a plan from a few calibration steps: on shared machines epochs ran up to 25% slower
REPLAN_MARGIN = 0.95  # a plan from a stretch of real steps: their seconds are known, so it can aim closer
REPLAN_AFTER = 0.1  # share of the first plan after which the run plans again from its real steps

Clock = Callable[[], float]


class StepClock:
    """Seconds spent in training steps alone: started before a stretch of steps and stopped after it (each at a
    step count), so that the evaluations and checkpoints between stretches do not count as step time."""

    def __init__(self, clock: Clock = time.perf_counter):
        self.clock, self.seconds, self.steps = clock, 0.0, 0
        self.started, self.from_step = 0.0, 0

    def start(self, step: int) -> None:
        self.started, self.from_step = self.clock(), step

    def stop(self, step: int) -> None:
        """End the stretch started last, now at step `step`."""
        self.seconds += self.clock() - self.started
        self.steps += step - self.from_step

    def seconds_per_step(self) -> float:
        return self.seconds / max(1, self.steps)


def median_step_seconds(step: Callable[[], torch.Tensor], model: nn.Module, optimizer: torch.optim.Optimizer,
                        steps: tuple[int, int] = CALIBRATION_STEPS) -> float:
    """Median seconds of `step` (which returns its loss), timed on a few steps whose effect is then undone
    (weights, BatchNorm statistics, optimizer state): untimed warm-up steps first, then the timed ones."""
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    warmup, timed = steps
    times = []
    for _ in range(warmup + timed):
        start = time.perf_counter()
        step().item()  # wait for the device
        times.append(time.perf_counter() - start)
    model.load_state_dict(saved_model)
    optimizer.load_state_dict(saved_optimizer)
    optimizer.zero_grad(set_to_none=True)
    return sorted(times[warmup:])[timed // 2]


def steps_that_fit(seconds_left: float, step_seconds: float, eval_seconds: float, steps_per_eval: float,
                   margin: float = FIRST_PLAN_MARGIN) -> int:
    """How many steps fit in `margin` of `seconds_left`, evaluations included (never fewer than 1).

    An evaluation follows every `steps_per_eval` steps and the last one: n steps cost
    n * step_seconds + (n / steps_per_eval + 1) * eval_seconds.
    """
    available = margin * seconds_left - eval_seconds
    per_step = step_seconds + eval_seconds / steps_per_eval
    return max(1, int(available / per_step))


class TimeBudget:
    """The steps a run trains (`total_steps`) and, when `seconds` > 0, the wall clock that decides them.

    The clock starts when the budget is made; a resumed run passes the seconds it had already spent. With
    `seconds` = 0 there is no budget: `total_steps` is the config's, and only the clock is kept (the log's
    `train_seconds`).
    """

    def __init__(self, seconds: float, total_steps: int, spent: float = 0.0,
                 record: dict[str, Any] | None = None, clock: Clock = time.perf_counter):
        self.seconds = seconds
        self.total_steps = total_steps
        self.clock = clock
        self.start = clock() - spent
        self.record: dict[str, Any] = record if record is not None else {"seconds": seconds}

    @property
    def limited(self) -> bool:
        return self.seconds > 0

    def elapsed(self) -> float:
        return self.clock() - self.start

    def exceeded(self) -> bool:
        """Whether the budget is spent, counting the last evaluation that every run still owes."""
        return self.limited and self.elapsed() + self.record.get("evaluation_seconds", 0.0) > self.seconds

    def plan(self, step_seconds: float, eval_seconds: float, steps_per_eval: float, min_steps: int = 1,
             what: str = "run") -> int:
        """Fit `total_steps` (at most its current value) to what is left of the budget, from calibration."""
        planned = steps_that_fit(self.seconds - self.elapsed(), step_seconds, eval_seconds, steps_per_eval)
        if planned < min_steps:
            per_step = step_seconds + eval_seconds / steps_per_eval
            needed = (self.elapsed() + (min_steps * per_step + eval_seconds) / FIRST_PLAN_MARGIN)
            raise ValueError(f"a time budget of {self.seconds:g} s leaves room for only {planned} steps of this "
                             f"{what} on this machine ({step_seconds:.3g} s a step, {eval_seconds:.3g} s an "
                             f"evaluation), fewer than the {min_steps} it needs: give it at least {needed:.0f} s")
        self.total_steps = min(self.total_steps, planned)
        self.record.update(calibrated_step_seconds=round(step_seconds, 4), evaluation_seconds=round(eval_seconds, 3),
                           planned_steps=planned,
                           replan_at_step=max(min_steps, round(REPLAN_AFTER * self.total_steps)))
        return self.total_steps

    def replan_due(self, steps_done: int) -> bool:
        """Whether to plan again now: once, when the steps trained since the plan reach `replan_at_step`."""
        return (self.limited and "replan_at_step" in self.record and "replanned_steps" not in self.record
                and self.record["replan_at_step"] <= steps_done < self.total_steps)

    def replan(self, steps_done: int, step_seconds: float, steps_per_eval: float, upper_bound: int) -> int:
        """Plan the rest again from `step_seconds` measured on real steps; the record keeps both plans."""
        fits = steps_done + steps_that_fit(self.seconds - self.elapsed(), step_seconds,
                                           self.record["evaluation_seconds"], steps_per_eval, REPLAN_MARGIN)
        self.total_steps = max(steps_done + 1, min(upper_bound, fits))
        self.record.update(measured_step_seconds=round(step_seconds, 4), replanned_steps=self.total_steps)
        return self.total_steps

    def stop_early(self, step: int) -> None:
        """The budget ran out before the plan did (the machine slowed down): end the run at `step`."""
        self.record["stopped_early_at_step"] = step
        self.total_steps = step
