"""Training for a wall-clock budget: a budget only chooses the number of steps (the run is then the one `--steps N`
trains), re-plans once from its real steps, and stops a run the machine slowed down; the clock is faked where the
rule is about seconds, so no test depends on how busy the machine is."""

from __future__ import annotations

import pytest

from simclr_core.budget import StepClock, TimeBudget, steps_that_fit
from simclr_core.config import make_config
from simclr_core.engine import train_ssl


@pytest.mark.slow
def test_a_budget_only_chooses_the_steps(cifar_train, cifar_test, tmp_path) -> None:
    """A budgeted run is planned from calibration steps, planned again from its real steps, and is then the run
    `--steps N` trains: the calibration steps were undone. Its budget is generous and its epochs cap it (3 epochs
    of 6 steps), so the plan is the cap on any machine that fits 18 steps and 5 evaluations in 120 s."""
    cfg = make_config("smoke", data="cifar10", epochs=3, time_budget=120, lr_schedule="cosine")
    kwargs = dict(progress=False, train_set=cifar_train, eval_set=cifar_test)
    budgeted = train_ssl(cfg, str(tmp_path / "budget"), **kwargs)
    record = budgeted["budget"]
    assert record["calibrated_step_seconds"] > 0 and record["planned_steps"] >= 18
    assert record["replan_at_step"] == 6  # a tenth of the plan, but at least the run's minimum: one epoch
    assert record["replanned_steps"] == 18 and record["measured_step_seconds"] > 0
    assert budgeted["finished"] and len(budgeted["step_loss"]) == budgeted["total_steps"] == 18
    steps_run = train_ssl(make_config("smoke", data="cifar10", epochs=3, steps=18, lr_schedule="cosine"),
                          str(tmp_path / "steps"), **kwargs)
    assert steps_run["step_loss"] == budgeted["step_loss"]


def test_a_budget_plans_replans_once_and_stops_when_the_machine_slows_down() -> None:
    now = [0.0]
    budget = TimeBudget(100.0, total_steps=10_000, clock=lambda: now[0])
    assert budget.plan(step_seconds=1.0, eval_seconds=0.0, steps_per_eval=1e9, min_steps=5) == 90  # 90% of 100 s
    assert budget.record["replan_at_step"] == 9 and not budget.replan_due(8) and budget.replan_due(9)
    now[0] = 9 * 0.5  # the real steps ran twice as fast as the calibrated ones
    assert budget.replan(9, step_seconds=0.5, steps_per_eval=1e9, upper_bound=10_000) == 9 + int(0.95 * 95.5 / 0.5)
    assert not budget.replan_due(20), "once"
    now[0] = 100.5  # then the machine slowed down: the budget is spent
    assert budget.exceeded()
    budget.stop_early(120)
    assert budget.total_steps == 120 and budget.record["stopped_early_at_step"] == 120


def test_the_step_clock_leaves_out_what_happens_between_stretches() -> None:
    now = [0.0]
    clock = StepClock(lambda: now[0])
    clock.start(0)
    now[0] = 10.0
    clock.stop(5)  # 5 steps in 10 s
    now[0] = 100.0  # an evaluation
    clock.start(5)
    now[0] = 104.0
    clock.stop(7)  # 2 steps in 4 s
    assert clock.seconds_per_step() == 2.0


@pytest.mark.slow
def test_steps_end_a_run_mid_epoch_and_repeat_exactly(cifar_train, cifar_test, tmp_path) -> None:
    cfg = make_config("smoke", data="cifar10", steps=9, lr_schedule="cosine")  # 1.5 epochs of 6 steps
    kwargs = dict(progress=False, train_set=cifar_train, eval_set=cifar_test)
    first = train_ssl(cfg, str(tmp_path / "a"), **kwargs)
    again = train_ssl(cfg, str(tmp_path / "b"), **kwargs)
    assert len(first["step_loss"]) == 9 and first["step_loss"] == again["step_loss"]
    assert [e["epoch"] for e in first["epochs"]] == [1, 1.5] and first["evals"][-1]["epoch"] == 1.5
    assert first["epochs"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the cosine reached its end at step 9


@pytest.mark.parametrize("spent, step, evaluation, expected", [
    (0.0, 1.0, 0.0, 90),  # 90% of 100 s at 1 s a step
    (50.0, 1.0, 0.0, 45),  # what is left after 50 s
    (0.0, 1.0, 5.0, 70),  # 70 steps + three evaluations of 5 s (after epochs 1 and 2, and the last) = 85 s
    (99.0, 10.0, 0.0, 1),  # never fewer than one step
])
def test_budget_steps_leave_room_for_evaluations(spent: float, step: float, evaluation: float,
                                                 expected: int) -> None:
    assert steps_that_fit(100.0 - spent, step, evaluation, steps_per_eval=25) == expected  # an evaluation an epoch


@pytest.mark.slow
def test_a_budget_too_short_for_one_epoch_is_refused_with_the_seconds_it_needs(cifar_train, cifar_test,
                                                                               tmp_path) -> None:
    cfg = make_config("smoke", data="cifar10", epochs=40, time_budget=0.5)
    with pytest.raises(ValueError, match=r"time budget of 0.5 s leaves room for only \d+ steps of this pre-training "
                                         r"run .* fewer than the 6 it needs: give it at least \d+ s"):
        train_ssl(cfg, str(tmp_path), progress=False, train_set=cifar_train, eval_set=cifar_test)
    assert not (tmp_path / "checkpoints").exists()  # refused before any step counts
