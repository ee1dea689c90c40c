"""The geometry and gradient-sharing measurements of chapters 4 and 6, each against a case worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from simclr_core.analysis import (
    _conditional_affinities,
    alignment,
    entropy,
    knn_accuracy,
    knn_predict,
    nearest_neighbours,
    rank_correlation,
    top_k_share,
    tsne,
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


def _blobs(per_blob: int = 60, dim: int = 50, spread: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three Gaussian blobs far apart in 50-D (centres about 100 apart, each of radius about 7) and their labels."""
    generator = torch.Generator().manual_seed(seed)
    centres = 10 * torch.randn(3, dim, generator=generator)
    labels = torch.arange(3).repeat_interleave(per_blob)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=generator), labels


def test_tsne_affinities_give_every_point_the_perplexity_asked_for() -> None:
    x, _ = _blobs(per_blob=20)
    # a blob of 20 and its far neighbours: each row's Gaussian must be narrowed or widened to about 10 neighbours
    p = _conditional_affinities(x.double(), perplexity=10.0)
    torch.testing.assert_close(p.sum(1), torch.ones(60, dtype=torch.float64))
    assert p.diagonal().eq(0).all()
    torch.testing.assert_close(torch.special.xlogy(p, p).sum(1).neg().exp(), torch.full((60,), 10.0,
                               dtype=torch.float64), rtol=1e-4, atol=0)


def test_tsne_keeps_well_separated_clusters_apart() -> None:
    x, labels = _blobs()
    y = tsne(x.double(), perplexity=20, steps=250)
    assert y.dtype == torch.float32 and y.shape == (180, 2) and y.isfinite().all()
    distances = torch.cdist(y, y).fill_diagonal_(float("inf"))
    assert (labels[distances.argmin(1)] == labels).all()  # every point's nearest neighbour is of its own blob
    centroids = torch.stack([y[labels == c].mean(0) for c in range(3)])
    spread = max((y[labels == c] - centroids[c]).norm(dim=1).max().item() for c in range(3))
    assert torch.pdist(centroids).min() > 2 * spread  # the blobs do not even touch


def test_tsne_is_deterministic_for_a_seed_and_leaves_the_global_random_state_alone() -> None:
    x, _ = _blobs(per_blob=20)
    state = torch.get_rng_state()
    first = tsne(x, perplexity=10, steps=100, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(tsne(x, perplexity=10, steps=100, seed=3), first)
    assert not torch.allclose(tsne(x, perplexity=10, steps=100, seed=4), first)


@pytest.mark.parametrize("perplexity", [1.0, 59.0])
def test_tsne_refuses_a_perplexity_the_points_cannot_have(perplexity: float) -> None:
    x, _ = _blobs(per_blob=20)  # 60 points: 59 others at most, and at least one
    with pytest.raises(ValueError, match="perplexity"):
        tsne(x, perplexity=perplexity, steps=1)
