"""NT-Xent against an independent, naive per-row implementation written straight from the formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from simclr_core.loss import contrastive_metrics, nt_xent, simclr_logits_targets


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, decoupled: bool = False) -> torch.Tensor:
    """l(i, j) = -log( exp(s_ij / T) / sum_{k != i} exp(s_ik / T) ), averaged over both orders of each pair;
    `decoupled` (DCL) leaves k = j, the positive, out of the sum."""
    views = list(z1) + list(z2)
    b, n = len(z1), 2 * len(z1)
    total = torch.zeros((), dtype=z1.dtype)
    for i in range(n):
        j = i + b if i < b else i - b
        candidates = [k for k in range(n) if k != i and not (decoupled and k == j)]
        denominator = sum(torch.exp(torch.dot(views[i], views[k]) / temperature) for k in candidates)
        total = total - torch.log(torch.exp(torch.dot(views[i], views[j]) / temperature) / denominator)
    return total / n


def random_embeddings(b: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    raw1 = torch.randn(b, d, generator=g, dtype=torch.float64)
    raw2 = raw1 + 0.5 * torch.randn(b, d, generator=g, dtype=torch.float64)  # views resemble each other
    return F.normalize(raw1, dim=1), F.normalize(raw2, dim=1)


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("b", [2, 3, 8, 17])
@pytest.mark.parametrize("temperature", [0.05, 0.2, 1.0])
def test_loss_and_gradients_match_naive(b: int, temperature: float, decoupled: bool) -> None:
    z1, z2 = random_embeddings(b, 16, seed=b)
    a1, a2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    n1, n2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    fast, slow = nt_xent(a1, a2, temperature, decoupled), naive_nt_xent(n1, n2, temperature, decoupled)
    fast.backward()
    slow.backward()
    torch.testing.assert_close(fast, slow, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a1.grad, n1.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(a2.grad, n2.grad, rtol=1e-9, atol=1e-10)


def test_decoupled_loss_drops_the_positive_from_the_denominator() -> None:
    z1, z2 = random_embeddings(8, 16, seed=1)
    logits, targets = simclr_logits_targets(z1, z2, 0.2)
    p_pos = contrastive_metrics(logits, targets)["p_pos"]
    # per row: NT-Xent = -s_pos + log(e^s_pos + sum_neg), DCL = -s_pos + log(sum_neg), so
    # NT-Xent - DCL = -log(1 - p_pos) > 0 row by row
    rows = torch.arange(len(targets))
    gap = -torch.log1p(-logits.softmax(1)[rows, targets]).mean()
    torch.testing.assert_close(nt_xent(z1, z2, 0.2) - nt_xent(z1, z2, 0.2, decoupled=True), gap)
    assert 0 < p_pos < 1


def test_targets_point_at_the_other_view_of_the_same_image() -> None:
    b = 5
    z1, z2 = random_embeddings(b, 8, seed=0)
    logits, targets = simclr_logits_targets(z1, z2, 0.5)
    assert targets.tolist() == [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    z = torch.cat([z1, z2])
    for i, t in enumerate(targets.tolist()):
        assert t != i
        torch.testing.assert_close(logits[i, t], z[i] @ z[t] / 0.5)
    assert torch.isneginf(logits.diagonal()).all(), "a view must never be its own candidate"


def test_identical_views_far_apart_give_low_loss_and_perfect_metrics() -> None:
    z = torch.eye(4, dtype=torch.float64)  # 4 orthogonal images, both views identical
    loss = nt_xent(z, z, temperature=0.1)
    # positive similarity 1, the 6 negatives 0: loss = -log(e^10 / (e^10 + 6))
    assert loss.item() == pytest.approx(-math.log(math.exp(10) / (math.exp(10) + 6)))
    metrics = contrastive_metrics(*simclr_logits_targets(z, z, 0.1))
    assert metrics["top1"] == 1.0
    assert metrics["p_pos"] == pytest.approx(math.exp(10) / (math.exp(10) + 6))


def test_collapsed_embeddings_give_chance_level() -> None:
    z = F.normalize(torch.ones(6, 4), dim=1)  # every view the same point: nothing can be told apart
    loss = nt_xent(z, z, temperature=0.2)
    assert loss.item() == pytest.approx(math.log(11), rel=1e-6)  # uniform over the N - 1 = 11 candidates
    assert contrastive_metrics(*simclr_logits_targets(z, z, 0.2))["p_pos"] == pytest.approx(1 / 11)


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="z1 and z2"):
        nt_xent(torch.zeros(4, 8), torch.zeros(3, 8), 0.2)
