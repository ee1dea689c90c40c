"""The geometry and gradient-sharing measurements of chapters 4 and 6, each against a case worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from simclr_core.analysis import (
    alignment,
    entropy,
    knn_accuracy,
    knn_predict,
    nearest_neighbours,
    rank_correlation,
    top_k_share,
    uniformity,
)


def _at_angles(degrees: list[float], radii: list[float] | None = None) -> torch.Tensor:
    """Points in the plane at the given angles (and lengths): cosine similarity is a function of angle only."""
    angles = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    radius = torch.tensor(radii or [1.0] * len(degrees), dtype=torch.float64)
    return torch.stack([angles.cos(), angles.sin()], dim=1) * radius[:, None]


def test_entropy_in_nats_per_row() -> None:
    rows = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0], [0.5, 0.25, 0.25, 0.0]])
    # -(0.5 ln 0.5 + 2 * 0.25 ln 0.25) = 0.5 ln 2 + ln 2; a zero probability adds nothing (not NaN)
    torch.testing.assert_close(entropy(rows), torch.tensor([math.log(4), 0.0, 1.5 * math.log(2)]))


def test_top_k_share_takes_the_largest_entries_whatever_their_position() -> None:
    weights = torch.tensor([[1.0, 4.0, 2.0, 3.0], [5.0, 0.0, 0.0, 5.0]])
    torch.testing.assert_close(top_k_share(weights, 1), torch.tensor([0.4, 0.5]))
    torch.testing.assert_close(top_k_share(weights, 2), torch.tensor([0.7, 1.0]))
    torch.testing.assert_close(top_k_share(weights, 4), torch.tensor([1.0, 1.0]))


@pytest.mark.parametrize("alpha, expected", [(2.0, 1.0), (1.0, math.sqrt(2) / 2)])
def test_alignment_is_the_mean_distance_of_positives_to_the_power_alpha(alpha: float, expected: float) -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # pair 1 is sqrt(2) apart, pair 2 coincides
    assert alignment(z1, z2, alpha) == pytest.approx(expected)


def test_uniformity_over_distinct_pairs() -> None:
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # squared distances of the three pairs: 4, 2, 2
    assert uniformity(z) == pytest.approx(math.log((math.exp(-8) + 2 * math.exp(-4)) / 3))
    assert uniformity(z, t=1.0) == pytest.approx(math.log((math.exp(-4) + 2 * math.exp(-2)) / 3))
    collapsed = torch.tensor([[0.6, 0.8]] * 4)
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-6)  # the worst possible value: log 1


def test_knn_predict_votes_by_cosine_not_euclidean_distance() -> None:
    train_z = _at_angles([0, 10, 20, 90, 100])
    train_y = torch.tensor([0, 0, 1, 1, 1])
    queries = _at_angles([5, 95, 14])
    # k=3: 5 deg -> 0, 10, 20 deg (labels 0, 0, 1); 95 deg -> 90, 100, 20; 14 deg -> 10, 20, 0
    assert knn_predict(train_z, train_y, queries, k=3).tolist() == [0, 1, 0]
    assert knn_predict(train_z, train_y, queries, k=1).tolist() == [0, 1, 0]  # 14 deg: nearest is 10 deg
    # a long vector at 16.7 deg (label 1) is nearer in angle than a short one at 31 deg (label 0), though
    # far in Euclidean distance: cosine similarity must pick the long one
    far_but_aligned = torch.tensor([[100.0, 30.0], [0.5, 0.3]])
    assert knn_predict(far_but_aligned, torch.tensor([1, 0]), torch.tensor([[1.0, 0.0]]), k=1).tolist() == [1]


def test_knn_accuracy_is_the_share_of_correct_queries() -> None:
    train_z = _at_angles([0, 10, 90, 100])
    train_y = torch.tensor([0, 0, 1, 1])
    queries = _at_angles([5, 95, 3])
    assert knn_accuracy(train_z, train_y, queries, torch.tensor([0, 1, 1]), k=2) == pytest.approx(2 / 3)


def test_nearest_neighbours_in_order_with_and_without_self() -> None:
    pool = _at_angles([0, 10, 30, 90], radii=[1.0, 5.0, 0.1, 2.0])
    assert nearest_neighbours(pool, pool, k=2).tolist() == [[0, 1], [1, 0], [2, 1], [3, 2]]
    assert nearest_neighbours(pool, pool, k=2, exclude_self=True).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]
    queries = _at_angles([25, 80])
    assert nearest_neighbours(queries, pool, k=3).tolist() == [[2, 1, 0], [3, 2, 1]]


def test_rank_correlation_reads_only_the_order() -> None:
    probe = [0.50, 0.52, 0.55, 0.61]
    assert rank_correlation(probe, [1.0, 2.0, 30.0, 400.0]) == pytest.approx(1.0)  # same order, other scale
    assert rank_correlation(probe, [4.0, 3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    # one pair swapped: ranks (0, 1, 3, 2); 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 2 / 60
    assert rank_correlation(probe, [0.0, 1.0, 3.0, 2.0]) == pytest.approx(0.8)


def test_rank_correlation_gives_ties_their_mean_rank() -> None:
    # y's ranks are (0.5, 0.5, 2, 3): Pearson of (0, 1, 2, 3) with them, worked by hand: 4.5 / sqrt(5 * 4.5)
    assert rank_correlation([1.0, 2.0, 3.0, 4.0], [7.0, 7.0, 8.0, 9.0]) == pytest.approx(4.5 / math.sqrt(5 * 4.5))
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = [0.3, 0.1, 0.1, 0.9, 0.5, 0.5, 0.2], [2.0, 5.0, 1.0, 1.0, 3.0, 8.0, 8.0]
    assert rank_correlation(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)
