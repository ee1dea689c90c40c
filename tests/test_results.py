"""The chapters' reader of bench/results: the rows of a results file, and the seed spread that decides ties."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simclr_core import results
from simclr_core.config import make_config, scaled


def test_a_difference_within_twice_its_own_standard_deviation_is_a_tie() -> None:
    spread = results.Spread((0.52, 0.53, 0.54))  # standard deviation 0.01
    assert spread.std == pytest.approx(0.01) and (spread.low, spread.high) == (0.52, 0.54)
    # the difference of two single runs has a standard deviation of sqrt(2) * 0.01: a tie under 0.0283
    assert spread.is_tie(0.028) and spread.is_tie(-0.028) and not spread.is_tie(0.029)
    # of two means of three runs each, sqrt(2 / 3) * 0.01: a tie under 0.0163
    assert spread.is_tie(0.016, runs=3) and not spread.is_tie(0.017, runs=3)
    # of a mean of two runs and a mean of five, sqrt(1/2 + 1/5) * 0.01: a tie under 0.0167
    assert spread.is_tie(0.0166, 2, 5) and not spread.is_tie(0.0168, 2, 5)


def test_the_uncertainty_of_a_sigma_from_five_seeds() -> None:
    assert results.chi2_quantile(0.025, 4) == pytest.approx(0.4844, abs=1e-4)  # tables of the chi-square
    assert results.chi2_quantile(0.975, 4) == pytest.approx(11.1433, abs=1e-4)
    assert results.chi2_quantile(0.5, 1) == pytest.approx(0.4549, abs=1e-4)
    low, high = results.Spread((0.5345, 0.5206, 0.5356, 0.5325, 0.5343)).std_interval()
    assert (round(low, 4), round(high, 4)) == (0.0037, 0.0178)  # the "roughly 0.004-0.018"


def test_rows_are_read_by_group_and_a_missing_file_says_what_makes_it(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    (tmp_path / "pretraining.json").write_text(json.dumps([
        {"group": "seeds", "name": "seed 0", "probe_h": 0.5}, {"group": "seeds", "name": "seed 1", "probe_h": 0.6},
        {"group": "scaling", "name": "steps 550", "probe_h": 0.4}]))
    assert [row["name"] for row in results.rows("pretraining", "seeds")] == ["seed 0", "seed 1"]
    assert results.by_name("pretraining")["steps 550"]["probe_h"] == 0.4
    assert results.seed_spread().values == (0.5, 0.6)
    with pytest.raises(FileNotFoundError, match="payoff.json is missing.*bench/README.md"):
        results.rows("payoff")


def test_the_long_run_curve_is_its_random_init_then_its_points_shortest_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "RESULTS", tmp_path)
    (tmp_path / "long_run.json").write_text(json.dumps([
        {"group": "curve", "name": "10 epochs", "epochs": 10}, {"group": "levers", "name": "base", "epochs": 3},
        {"group": "curve", "name": "random init", "epochs": 0}, {"group": "curve", "name": "2.5", "epochs": 2.5}]))
    floor, points = results.long_run_curve()
    assert floor["name"] == "random init" and [row["epochs"] for row in points] == [2.5, 10]


def test_the_stored_results_the_chapters_read_are_in_the_repository() -> None:
    for name in ("ablation", "pretraining", "payoff"):
        assert results.rows(name), f"bench/results/{name}.json is empty"
    assert len(results.seed_spread().values) >= 5


def test_scaled_shortens_the_budget_or_the_steps() -> None:
    quick = make_config("quick", data="cifar10")
    assert scaled(quick, 0.25).time_budget == quick.time_budget / 4
    assert scaled(quick, 1) is quick
    smoke = make_config("smoke", data="cifar10", steps=40)
    assert scaled(smoke, 0.25).steps == 10
    assert scaled(make_config("smoke", data="cifar10"), 0.5).epochs == 2  # 3 epochs, rounded
