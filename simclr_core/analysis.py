"""Measurements on embeddings that explain *why* SimCLR works: where the gradient goes, and the geometry.

- Temperature: the softmax over one anchor's similarities decides how the gradient is shared among the
  negatives: dL/ds_ij = P_ij / T for every negative j. Low T puts almost all of it on the hardest few.
- Geometry (Wang & Isola, 2020): alignment (positives close) and uniformity (embeddings spread over the
  sphere) are the two halves of the contrastive loss; k-NN accuracy reads class structure without training.
- What a layer keeps: how well a linear map recovers, from its features, a property the augmentations vary.
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
                chunk: int = 2048) -> torch.Tensor:
    """Majority label of each query's k most cosine-similar training embeddings (`chunk` queries at a time, so
    10,000 queries against 50,000 embeddings need 400 MB of similarities, not 2 GB)."""
    train_z, num_classes = F.normalize(train_z, dim=1), int(train_y.max()) + 1
    votes = [F.one_hot(train_y[(F.normalize(queries, dim=1) @ train_z.T).topk(k, dim=1).indices], num_classes).sum(1)
             for queries in query_z.split(chunk)]
    return torch.cat(votes).argmax(1)


def knn_accuracy(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20) -> float:
    return (knn_predict(train_z, train_y, test_z, k) == test_y).float().mean().item()


def nearest_neighbours(query_z: torch.Tensor, pool_z: torch.Tensor, k: int, exclude_self: bool = False) -> torch.Tensor:
    """Indices (Q, k) of the k most cosine-similar pool items for each query."""
    similarities = F.normalize(query_z, dim=1) @ F.normalize(pool_z, dim=1).T
    if exclude_self:
        similarities.fill_diagonal_(float("-inf"))
    return similarities.topk(k, dim=1).indices


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
