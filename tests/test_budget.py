"""Training for a wall-clock budget: it stays within it, re-plans once from its first epoch, and until then it
is the run that `--steps N` would train."""

from __future__ import annotations

import pytest

from simclr_core.budget import steps_that_fit
from simclr_core.config import make_config
from simclr_core.engine import train_ssl


def test_budget_run_stays_within_its_time_and_equals_the_steps_run(cifar_train, cifar_test, tmp_path) -> None:
    # smoke: 6 steps an epoch; 40 epochs would take minutes, far beyond the 5 s budget
    cfg = make_config("smoke", data="cifar10", epochs=40, time_budget=5, save_every=100, lr_schedule="cosine")
    kwargs = dict(progress=False, train_set=cifar_train, eval_set=cifar_test)
    budgeted = train_ssl(cfg, str(tmp_path / "budget"), **kwargs)
    done = len(budgeted["step_loss"])
    assert budgeted["finished"] and done == budgeted["total_steps"]
    assert 3 <= done < 40 * budgeted["steps_per_epoch"]
    assert budgeted["train_seconds"] < 5 * 1.5, "a budget is a limit: at most the last evaluation may overshoot"
    assert budgeted["budget"]["calibrated_step_seconds"] > 0
    # after the first epoch the plan is redone from the seconds its real steps took, and the run follows it,
    # unless the machine slowed down after that and the budget stopped it (the record says at which step)
    record = budgeted["budget"]
    assert budgeted["total_steps"] == record.get("stopped_early_at_step", record["replanned_steps"])
    assert budgeted["budget"]["measured_step_seconds"] > 0
    # the calibration steps were undone: the same seed with the first plan's step count trains the same first
    # epoch (later steps follow another cosine once the plan changes)
    planned, first_epoch = budgeted["budget"]["planned_steps"], budgeted["steps_per_epoch"]
    steps_run = train_ssl(make_config("smoke", data="cifar10", epochs=40, steps=planned, save_every=100,
                                      lr_schedule="cosine"), str(tmp_path / "steps"), **kwargs)
    assert len(steps_run["step_loss"]) == planned
    assert steps_run["step_loss"][:first_epoch] == budgeted["step_loss"][:first_epoch]


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


def test_a_budget_too_short_for_one_epoch_is_refused_with_the_seconds_it_needs(cifar_train, cifar_test,
                                                                               tmp_path) -> None:
    cfg = make_config("smoke", data="cifar10", epochs=40, time_budget=0.5)
    with pytest.raises(ValueError, match=r"time budget of 0.5 s leaves room for only \d+ steps of this pre-training "
                                         r"run .* fewer than the 6 it needs: give it at least \d+ s"):
        train_ssl(cfg, str(tmp_path), progress=False, train_set=cifar_train, eval_set=cifar_test)
    assert not (tmp_path / "checkpoints").exists()  # refused before any step counts
