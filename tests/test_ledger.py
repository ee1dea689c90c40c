"""simclr_core.ledger: the SimCLR and from-scratch curves against compute, the crossover, the reuse ledger."""

from __future__ import annotations

import pytest

from simclr_core import ledger


def test_the_simclr_curve_adds_the_probe_to_the_clock_and_averages_the_labelled_subsets() -> None:
    points = [{"clock_seconds": 100, "probe_seconds": 50, "few_label_probe_test": {"5": [0.2, 0.4], "25": [0.5]}},
              {"clock_seconds": 300, "probe_seconds": 50, "few_label_probe_test": {"5": [0.5, 0.5], "25": [0.6]}}]
    assert ledger.simclr_curve(points, 5) == [(150, pytest.approx(0.3)), (350, 0.5)]


def scratch(labels: int, budget: float, accuracy: float, seed: int = 0, group: str = "curves") -> dict:
    """A from-scratch row as bench/when_it_pays.py stores it (its compute a second under its budget)."""
    return {"group": group, "method": "from scratch", "labels_per_class": labels, "label_seed": seed,
            "budget_seconds": budget, "compute_seconds": budget - 1, "test_accuracy": accuracy}


def test_the_simclr_curve_can_average_only_the_subsets_from_scratch_trained() -> None:
    points = [{"clock_seconds": 100, "probe_seconds": 50, "few_label_probe_test": {"5": [0.2, 0.4, 0.9]}}]
    assert ledger.simclr_curve(points, 5, [0, 1]) == [(150, pytest.approx(0.3))]


def test_the_scratch_curve_is_the_mean_over_subsets_at_each_budget_cheapest_first() -> None:
    found = [scratch(5, 200, 0.3), scratch(5, 100, 0.2), scratch(5, 100, 0.4, seed=1), scratch(25, 100, 0.9),
             scratch(5, 100, 0.9, seed=2, group="table")]
    assert ledger.scratch_curve(found, 5) == [(99, pytest.approx(0.3)), (199, 0.3)]
    assert ledger.scratch_curve(found, 5, [0, 1]) == [(99, pytest.approx(0.3))]  # 200 s lacks subset 1
    assert ledger.scratch_curve(found, 5, [0]) == [(99, 0.2), (199, 0.3)]


def test_a_curve_is_saturated_when_its_last_two_doublings_both_tie() -> None:
    assert ledger.saturated([0.20, 0.30, 0.31, 0.305], tie=0.02)
    assert not ledger.saturated([0.20, 0.25, 0.26], tie=0.02)  # the first doubling gained
    assert not ledger.saturated([0.370, 0.385, 0.400], tie=0.02)  # two ties, but four times the compute gained
    assert not ledger.saturated([0.30, 0.31], tie=0.02)  # one doubling cannot show it


def test_a_curve_is_read_linearly_in_log_seconds_and_not_outside_its_range() -> None:
    curve = [(100.0, 0.4), (400.0, 0.6)]
    assert ledger.at(curve, 200.0) == pytest.approx(0.5)  # halfway in log seconds
    assert ledger.at(curve, 100.0) == 0.4 and ledger.at(curve, 400.0) == 0.6
    assert ledger.at(curve, 50.0) is None and ledger.at(curve, 800.0) is None


def test_the_crossover_spans_the_ties_between_the_two_leads() -> None:
    simclr = [(100.0, 0.30), (1600.0, 0.50)]
    scratch = [(100.0, 0.40), (200.0, 0.40), (400.0, 0.40), (800.0, 0.41), (1600.0, 0.42)]
    found = ledger.verdicts(simclr, scratch, tie=0.02)
    assert [v.leader for v in found] == ["from scratch", "from scratch", "tie", "SimCLR", "SimCLR"]
    assert ledger.crossover(found) == (200.0, 800.0)
    only_ties = ledger.verdicts(simclr, [(400.0, 0.40), (1600.0, 0.49)], tie=0.02)
    assert ledger.crossover(only_ties) is None


def test_scratch_points_beyond_the_simclr_curve_are_not_compared() -> None:
    found = ledger.verdicts([(200.0, 0.5), (400.0, 0.6)], [(100.0, 0.1), (300.0, 0.5), (800.0, 0.9)], tie=0.01)
    assert [v.seconds for v in found] == [300.0]


def test_the_reuse_ledger_pays_the_pretraining_once_and_scratch_once_a_task() -> None:
    def probe(task: str, accuracy: float) -> dict:
        return {"group": "reuse", "name": f"{task} SimCLR probe", "test_accuracy": accuracy, "probe_seconds": 2.0,
                "pretrain_seconds": 100.0}

    def scratch(task: str, share: str, accuracy: float, seconds: float) -> dict:
        return {"group": "reuse", "name": f"{task} scratch {share} B", "test_accuracy": accuracy,
                "compute_seconds": seconds}
    found = [probe("a", 0.8), probe("b", 0.6), scratch("a", "1", 0.9, 50.0), scratch("b", "1", 0.7, 50.0),
             scratch("a", "0.25", 0.6, 12.0), scratch("b", "0.25", 0.5, 12.0)]
    rows = ledger.reuse_ledger(found, ["a", "b"], ks=(1, 2, 5))  # two tasks: no K = 5
    assert {(r["tasks"], r["method"]): (round(r["accuracy"], 3), r["seconds"]) for r in rows} == {
        (1, "SimCLR probe"): (0.8, 102.0), (2, "SimCLR probe"): (0.7, 104.0),
        (1, "from scratch, 0.25 B a task"): (0.6, 12.0), (2, "from scratch, 0.25 B a task"): (0.55, 24.0),
        (1, "from scratch, 1 B a task"): (0.9, 50.0), (2, "from scratch, 1 B a task"): (0.8, 100.0)}


def test_compare_pairs_the_subsets_and_carries_a_saturated_curve_flat_beyond_its_end() -> None:
    points = [{"clock_seconds": s - 10, "probe_seconds": 10, "few_label_probe_test": {"5": [a, a - 0.1]}}
              for s, a in ((100, 0.30), (800, 0.40), (3200, 0.60))]
    found = [scratch(5, 101, 0.40), scratch(5, 101, 0.20, seed=1), scratch(5, 201, 0.41), scratch(5, 401, 0.415)]
    compared = ledger.compare(points, found, 5, tie=0.02)
    assert [(v.seconds, v.subsets, v.carried, v.leader) for v in compared] == [
        (100, 2, False, "from scratch"),  # SimCLR (0.30 + 0.20) / 2 = 0.25 against (0.40 + 0.20) / 2 = 0.30
        (200, 1, False, "from scratch"), (400, 1, False, "from scratch"),
        (800, 1, True, "tie"), (3200, 1, True, "SimCLR")]  # 0.415, subset 0's best, carried flat
    assert compared[0].simclr == pytest.approx(0.25) and compared[0].scratch == pytest.approx(0.30)
    assert ledger.subsets_at_end(found, 5) == [0]
    assert ledger.final_lead(compared) == ("SimCLR", 3200, 800)
    assert ledger.crossover(compared) == (400, 3200)


def test_compare_carries_nothing_flat_while_from_scratch_still_gains() -> None:
    points = [{"clock_seconds": s - 10, "probe_seconds": 10, "few_label_probe_test": {"5": [a]}}
              for s, a in ((100, 0.30), (3200, 0.60))]
    found = [scratch(5, 101, 0.30), scratch(5, 201, 0.35), scratch(5, 401, 0.40)]
    assert [v.seconds for v in ledger.compare(points, found, 5, tie=0.02)] == [100, 200, 400]


def test_the_final_lead_names_who_leads_at_the_end_and_since_when() -> None:
    def at(seconds: float, leader: str) -> ledger.Verdict:
        return ledger.Verdict(seconds, 0.0, 0.0, leader)
    assert ledger.final_lead([at(1, "SimCLR"), at(2, "SimCLR")]) == ("SimCLR", 1, None)
    assert ledger.final_lead([at(1, "from scratch"), at(2, "tie")]) is None
    assert ledger.final_lead([]) is None
