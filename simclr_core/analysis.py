"""Measurements on embeddings that explain *why* SimCLR works: where the gradient goes, and the geometry.

- Temperature: the softmax over one anchor's similarities decides how the gradient is shared among the
  negatives: dL/ds_ij = P_ij / T for every negative j. Low T puts almost all of it on the hardest few.
- Geometry (Wang & Isola, 2020): alignment (positives close) and uniformity (embeddings spread over the
  sphere) are the two halves of the contrastive loss; k-NN accuracy reads class structure without training
  (a plain majority vote, or the similarity-weighted vote most papers report).
- What a layer keeps: how well a linear map recovers, from its features, a property the augmentations vary.
- Dimensional collapse, without labels: the eigenvalue spectrum of the embeddings' covariance (Jing et al.,
  2022) and its effective rank (RankMe, Garrido et al., 2023).
- A picture of the geometry: exact t-SNE (van der Maaten & Hinton, 2008), a 2-D map that keeps who is near whom.
"""

from __future__ import annotations

import math

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


def tsne(x: torch.Tensor, perplexity: float = 30.0, steps: int = 500, seed: int = 0) -> torch.Tensor:
    """Exact t-SNE (van der Maaten & Hinton, 2008) of the rows of `x` (N, D): a 2-D map (N, 2), float32, in which
    points that are neighbours in `x` stay neighbours. Only the neighbourhoods mean something: not the axes, the
    distances between clusters or the clusters' sizes.

    O(N^2) time and memory per step (2,000 points: 16 MB a matrix), no Barnes-Hut. Gradient descent with momentum
    (0.5, then 0.8) and per-coordinate gains, early exaggeration 12 for the first quarter of `steps` (250 of
    1,000 in the usual recipe) and the learning rate max(N / 48, 50): Belkina et al.'s (2019) N / 12, divided by
    the factor 4 this gradient keeps and other implementations drop (scikit-learn's "auto"). Seeded by its own
    generator: the same `seed` gives the same map, and the global random state is left as it was.
    """
    n = len(x)
    if not 1 < perplexity < n - 1:
        raise ValueError(f"perplexity must be between 1 and N - 1 = {n - 1}, got {perplexity}")
    conditional = _conditional_affinities(x.detach().double().cpu(), perplexity)
    p = ((conditional + conditional.T) / (2 * n)).clamp_min(1e-12).float()
    generator = torch.Generator().manual_seed(seed)
    y = 1e-4 * torch.randn(n, 2, generator=generator)
    update, gains = torch.zeros_like(y), torch.ones_like(y)
    learning_rate, exaggerated = max(n / 48, 50.0), steps // 4
    for step in range(steps):
        exaggeration, momentum = (12.0, 0.5) if step < exaggerated else (1.0, 0.8)
        squared = y.square().sum(1)
        # Student-t kernel 1 / (1 + |y_i - y_j|^2); Q is it normalised over all pairs i != j
        kernel = torch.addmm(squared[:, None] + squared, y, y.T, alpha=-2).clamp_min_(0).add_(1).reciprocal_()
        kernel.fill_diagonal_(0)
        # dKL/dy_i = 4 sum_j (p_ij - q_ij) kernel_ij (y_i - y_j)
        weights = (p * exaggeration).sub_(kernel, alpha=1 / kernel.sum().item()).mul_(kernel)
        gradient = 4 * (weights.sum(1, keepdim=True) * y - weights @ y)
        # delta-bar-delta gains (Jacobs, 1988): grow while each step goes the way the last one went, else shrink
        same_sign = (gradient > 0) == (update > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min_(0.01)
        update = momentum * update - learning_rate * gains * gradient
        y = y + update
        y = y - y.mean(0)
    return y


def _conditional_affinities(x: torch.Tensor, perplexity: float, tolerance: float = 1e-5,
                            iterations: int = 100) -> torch.Tensor:
    """p_j|i (N, N): row i a Gaussian around x_i over the other points, its precision found by bisection so that
    the row's perplexity (exp of its entropy) is `perplexity`: dense regions get narrow Gaussians, sparse ones
    wide, so that every point has about `perplexity` effective neighbours."""
    distances = torch.cdist(x, x).square().fill_diagonal_(float("inf"))
    # subtracting a row's smallest distance changes neither its p nor its entropy, and keeps exp from underflowing
    distances = distances - distances.min(1, keepdim=True).values
    off_diagonal = distances.isfinite()
    typical = torch.where(off_diagonal, distances, 0.0).sum(1) / off_diagonal.sum(1)
    precision = 1 / typical.clamp_min(1e-12)
    lower, upper = torch.zeros_like(precision), torch.full_like(precision, float("inf"))
    target = math.log(perplexity)
    for _ in range(iterations):
        p = torch.softmax(-distances * precision[:, None], dim=1)
        excess = -torch.special.xlogy(p, p).sum(1) - target  # entropy above the target: narrow the Gaussian
        if excess.abs().max() < tolerance:
            break
        too_flat = excess > 0
        lower, upper = torch.where(too_flat, precision, lower), torch.where(too_flat, upper, precision)
        precision = torch.where(upper.isinf(), precision * 2, (lower + upper) / 2)
    return p
