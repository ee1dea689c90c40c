"""The similarity-weighted k-NN vote, on a case small enough to compute by hand."""

from __future__ import annotations

import math

import torch

from simclr_core.analysis import knn_predict, weighted_knn_accuracy, weighted_knn_predict

# The query is (1, 0). Its neighbours by cosine similarity: one of class 0 at s = 1, two of class 1 at s = 0.6,
# and one of class 0 at s = -1 (the farthest, left out when k = 3).
BANK = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, -0.8], [-1.0, 0.0]])
LABELS = torch.tensor([0, 1, 1, 0])
QUERY = torch.tensor([[2.0, 0.0]])  # not unit length: the vote uses cosine similarity


def test_close_neighbours_outvote_many_far_ones_at_low_temperature() -> None:
    # k = 3, T = 0.1: class 0 gets exp(1 / 0.1) = 22026, class 1 gets 2 exp(0.6 / 0.1) = 807: class 0 wins,
    # where one vote each (knn_predict) gives class 1, two votes against one.
    assert math.exp(1 / 0.1) > 2 * math.exp(0.6 / 0.1)
    assert weighted_knn_predict(BANK, LABELS, QUERY, k=3, temperature=0.1).tolist() == [0]
    assert knn_predict(BANK, LABELS, QUERY, k=3).tolist() == [1]


def test_at_high_temperature_the_vote_tends_to_a_count() -> None:
    # k = 3, T = 1: class 0 gets e^1 = 2.72, class 1 gets 2 e^0.6 = 3.64: class 1 wins, as in a plain count.
    assert math.exp(1.0) < 2 * math.exp(0.6)
    assert weighted_knn_predict(BANK, LABELS, QUERY, k=3, temperature=1.0).tolist() == [1]


def test_only_the_k_nearest_vote() -> None:
    # k = 4 adds the class-0 point at s = -1: class 0 gets e^1 + e^-1 = 3.09, class 1 still 3.64 (T = 1).
    assert math.exp(1.0) + math.exp(-1.0) < 2 * math.exp(0.6)
    assert weighted_knn_predict(BANK, LABELS, QUERY, k=4, temperature=1.0).tolist() == [1]
    # a k larger than the bank is clamped to the bank
    assert weighted_knn_predict(BANK, LABELS, QUERY, k=10, temperature=1.0).tolist() == [1]


def test_chunks_give_the_same_votes_and_accuracy_counts_them() -> None:
    g = torch.Generator().manual_seed(0)
    bank, labels = torch.randn(300, 8, generator=g), torch.randint(0, 5, (300,), generator=g)
    queries = torch.randn(50, 8, generator=g)
    whole = weighted_knn_predict(bank, labels, queries, k=20)
    assert torch.equal(whole, weighted_knn_predict(bank, labels, queries, k=20, chunk=7))
    truth = whole.clone()
    truth[:10] = (truth[:10] + 1) % 5  # 10 of 50 wrong
    assert abs(weighted_knn_accuracy(bank, labels, queries, truth, k=20) - 0.8) < 1e-6
