"""Measurements on embeddings that explain *why* SimCLR works: where the gradient goes, and the geometry.

- Temperature: the softmax over one anchor's similarities decides how the gradient is shared among the
  negatives: dL/ds_ij = P_ij / T for every negative j. Low T puts almost all of it on the hardest few.
- Geometry (Wang & Isola, 2020): alignment (positives close) and uniformity (embeddings spread over the
  sphere) are the two halves of the contrastive loss; k-NN accuracy reads class structure without training
  (a plain majority vote, or the similarity-weighted vote most papers report).
- What a layer keeps: how well a linear map recovers, from its features, a property the augmentations vary.
- Dimensional collapse, without labels: the eigenvalue spectrum of the embeddings' covariance (Jing et al.,
  2022) and its effective rank (RankMe, Garrido et al., 2023).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .augment import AugmentationParams
from .batch_augment import adjust_brightness


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


def knn_predict(train_z: torch.Tensor, train_y: torch.Tensor, query_z: torch.Tensor, k: int = 20,
                temperature: float | None = None, chunk: int = 1024) -> torch.Tensor:
    """Label of each query by a vote of its k most cosine-similar training embeddings: one vote each, or with
    `temperature` T weighted by exp(similarity / T). Queries go `chunk` at a time, so 10,000 queries against
    50,000 embeddings need 200 MB of similarities, not 2 GB."""
    train_z, query_z = F.normalize(train_z.float(), dim=1), F.normalize(query_z.float(), dim=1)
    num_classes, k = int(train_y.max()) + 1, min(k, len(train_z))
    predictions = []
    for queries in query_z.split(chunk):
        similarities, neighbours = (queries @ train_z.T).topk(k, dim=1)
        weights = torch.ones_like(similarities) if temperature is None else (similarities / temperature).exp()
        votes = torch.zeros(len(neighbours), num_classes).scatter_add_(1, train_y[neighbours], weights)
        predictions.append(votes.argmax(1))
    return torch.cat(predictions)


def knn_accuracy(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20) -> float:
    return (knn_predict(train_z, train_y, test_z, k) == test_y).float().mean().item()


def weighted_knn_predict(train_z: torch.Tensor, train_y: torch.Tensor, query_z: torch.Tensor, k: int = 200,
                         temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Label of each query by a similarity-weighted vote of its k most cosine-similar training embeddings.

    The k-NN monitor of instance discrimination (Wu et al., 2018), which most published CIFAR-10 k-NN accuracies
    follow: neighbour j, at cosine similarity s_j to the query, votes for its label with weight exp(s_j / T);
    the label with the largest total wins. Close neighbours count for much more than far ones (at T = 0.07 a
    neighbour 0.07 more similar weighs e times as much), unlike `knn_predict`'s one vote each.
    """
    return knn_predict(train_z, train_y, query_z, k, temperature, chunk)


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


def covariance_spectrum(x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of the covariance of the rows of `x` (N, D), largest first: how the embeddings' variance is
    spread over directions. A collapsed dimension shows as an eigenvalue many decades below the first."""
    centred = x.double() - x.double().mean(0)
    return torch.linalg.svdvals(centred).square().div(len(x) - 1).float()


def effective_rank(x: torch.Tensor) -> float:
    """RankMe: exp of the entropy of the normalised singular values of the embedding matrix `x` (N, D).

    D when every direction carries the same weight, 1 when all embeddings lie on one line; it needs no labels,
    and compares runs of one method (Garrido et al. found about 25,600 rows enough).
    """
    singular = torch.linalg.svdvals(x.double())
    return entropy(singular / singular.sum() + 1e-7).exp().item()


def brightness_views(images: torch.Tensor, seed: int = 0,
                     params: AugmentationParams = AugmentationParams()) -> tuple[torch.Tensor, torch.Tensor]:
    """Each uint8 image with its brightness scaled by a random factor from the colour jitter's range (0.6 to 1.4
    for the recipe's 0.4), as uint8; and the factors. A property the augmentations vary, with a known value per
    image, so one can ask how much of it a layer's features still carry."""
    generator = torch.Generator().manual_seed(seed)
    factors = 1 + params.brightness * (2 * torch.rand(len(images), generator=generator) - 1)
    views = adjust_brightness(images.float() / 255, factors)
    return (views * 255).round().to(torch.uint8), factors


def linear_r2(train_x: torch.Tensor, train_t: torch.Tensor, test_x: torch.Tensor, test_t: torch.Tensor,
              ridge: float = 10.0) -> float:
    """Held-out R^2 of a ridge regression from standardised features to a number: 1 when the features encode it
    linearly, 0 when the regression does no better than predicting the mean (negative: worse)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    design = [torch.cat([(x - mean) / std, torch.ones(len(x), 1)], 1) for x in (train_x, test_x)]
    weights = torch.linalg.solve(design[0].T @ design[0] + ridge * torch.eye(design[0].shape[1]), design[0].T @ train_t)
    residual = (design[1] @ weights - test_t).square().sum()
    return 1 - (residual / (test_t - test_t.mean()).square().sum()).item()


def _ranks(values: list[float]) -> torch.Tensor:
    """0 for the smallest value, 1 for the next...; tied values share the mean of their ranks."""
    values_t = torch.tensor(values, dtype=torch.float64)
    ranks = values_t.argsort().argsort().double()
    for value in values_t.unique():
        ranks[values_t == value] = ranks[values_t == value].mean()
    return ranks


def rank_correlation(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation: the Pearson correlation of the ranks. +1 when `y` orders the runs exactly as
    `x` does, -1 when exactly the other way round; it asks whether a label-free measure would have picked the runs
    the probe picks, not whether it predicts the probe's value."""
    centred = [r - r.mean() for r in (_ranks(x), _ranks(y))]
    return (centred[0] @ centred[1] / (centred[0].norm() * centred[1].norm())).item()
