"""Measurements on embeddings that explain *why* SimCLR works: where the gradient goes, and the geometry.

- Temperature: the softmax over one anchor's similarities decides how the gradient is shared among the
  negatives: dL/ds_ij = P_ij / T for every negative j. Low T puts almost all of it on the hardest few.
- Geometry (Wang & Isola, 2020): alignment (positives close) and uniformity (embeddings spread over the
  sphere) are the two halves of the contrastive loss; k-NN accuracy reads class structure without training
  (a plain majority vote, or the similarity-weighted vote most papers report).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension: log(n) when uniform, 0 when one-hot."""
    return -(probabilities * probabilities.clamp_min(1e-30).log()).sum(-1)


def top_k_share(weights: torch.Tensor, k: int) -> torch.Tensor:
    """Share of the total weight carried by the k largest entries (last dimension)."""
    return weights.topk(k, dim=-1).values.sum(-1) / weights.sum(-1)


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2.0) -> float:
    """E ||z1 - z2||^alpha over positive pairs: 0 when the two views embed to the same point."""
    return (z1 - z2).norm(dim=1).pow(alpha).mean().item()


def uniformity(z: torch.Tensor, t: float = 2.0) -> float:
    """log E exp(-t ||z_i - z_j||^2) over distinct pairs: lower = more evenly spread on the sphere."""
    return torch.pdist(z).pow(2).mul(-t).exp().mean().log().item()


def knn_predict(train_z: torch.Tensor, train_y: torch.Tensor, query_z: torch.Tensor, k: int = 20) -> torch.Tensor:
    """Majority label of each query's k most cosine-similar training embeddings."""
    train_z, query_z = F.normalize(train_z, dim=1), F.normalize(query_z, dim=1)
    neighbours = (query_z @ train_z.T).topk(k, dim=1).indices
    votes = F.one_hot(train_y[neighbours], int(train_y.max()) + 1).sum(1)
    return votes.argmax(1)


def knn_accuracy(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20) -> float:
    return (knn_predict(train_z, train_y, test_z, k) == test_y).float().mean().item()


def weighted_knn_predict(train_z: torch.Tensor, train_y: torch.Tensor, query_z: torch.Tensor, k: int = 200,
                         temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Label of each query by a similarity-weighted vote of its k most cosine-similar training embeddings.

    The k-NN monitor of instance discrimination (Wu et al., 2018), which most published CIFAR-10 k-NN accuracies
    follow: neighbour j, at cosine similarity s_j to the query, votes for its label with weight exp(s_j / T);
    the label with the largest total wins. Close neighbours count for much more than far ones (at T = 0.07 a
    neighbour 0.07 more similar weighs e times as much), unlike `knn_predict`'s one vote each. Queries are
    processed `chunk` at a time, so 10,000 queries against 50,000 embeddings fit in memory.
    """
    train_z, query_z = F.normalize(train_z.float(), dim=1), F.normalize(query_z.float(), dim=1)
    num_classes, k = int(train_y.max()) + 1, min(k, len(train_z))
    predictions = []
    for start in range(0, len(query_z), chunk):
        similarities, neighbours = (query_z[start:start + chunk] @ train_z.T).topk(k, dim=1)
        votes = torch.zeros(len(neighbours), num_classes)
        votes.scatter_add_(1, train_y[neighbours], (similarities / temperature).exp())
        predictions.append(votes.argmax(1))
    return torch.cat(predictions)


def weighted_knn_accuracy(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                          k: int = 200, temperature: float = 0.07) -> float:
    """Share of test embeddings whose `weighted_knn_predict` label is their own."""
    return (weighted_knn_predict(train_z, train_y, test_z, k, temperature) == test_y).float().mean().item()


def nearest_neighbours(query_z: torch.Tensor, pool_z: torch.Tensor, k: int, exclude_self: bool = False) -> torch.Tensor:
    """Indices (Q, k) of the k most cosine-similar pool items for each query."""
    similarities = F.normalize(query_z, dim=1) @ F.normalize(pool_z, dim=1).T
    if exclude_self:
        similarities.fill_diagonal_(float("-inf"))
    return similarities.topk(k, dim=1).indices
