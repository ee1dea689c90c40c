"""What a pre-training run measures along the way: the contrastive task on held-out views, and an online k-NN.

The loss says how well the task is solved, not whether the features separate classes; the k-NN says that, with a
few labels and no training. Both are measured in eval mode on fixed images and views, so the points of one run's
curve are comparable, and neither touches the training run's random streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .analysis import weighted_knn_accuracy
from .batch_augment import two_view_loader
from .config import Config
from .data import ImageSet, balanced_indices
from .loss import contrastive_loss, contrastive_metrics, simclr_logits_targets
from .model import SimCLRModel, embed_pairs
from .probe import extract_features

KNN_K = 20  # neighbours that vote in the online k-NN (its bank is small)


@torch.no_grad()
def evaluate_ssl(model: SimCLRModel, images: ImageSet, cfg: Config, device: torch.device,
                 bf16: bool = False) -> dict[str, float]:
    """Mean loss (NT-Xent, or DCL for `loss="dcl"`: the two are not comparable), p_pos and top-1 over
    `cfg.eval_batches` batches of held-out views.

    The views are drawn from a fixed seed, so every evaluation of a run sees the same images and crops,
    and the training run's random stream is left untouched.
    """
    model.eval()
    totals = {"loss": 0.0, "p_pos": 0.0, "top1": 0.0}
    batches = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        for x1, x2 in two_view_loader(images, cfg, shuffle=False, seed=cfg.seed + 1, device=device):
            logits, targets = simclr_logits_targets(*embed_pairs(model, x1, x2, device, bf16), cfg.temperature)
            totals["loss"] += contrastive_loss(logits, targets, cfg.loss == "dcl").item()
            for name, value in contrastive_metrics(logits, targets).items():
                totals[name] += value
            batches += 1
            if batches == cfg.eval_batches:
                break
    model.train()
    return {name: total / batches for name, total in totals.items()}


@dataclass
class KnnMonitor:
    """A cheap, label-using view of the features during training: the weighted 20-NN accuracy (chapter 6's vote)
    of a fixed class-balanced subset of held-out images against a fixed class-balanced bank of training images."""

    bank: ImageSet
    queries: ImageSet

    @classmethod
    def of(cls, cfg: Config, train_set: ImageSet, eval_set: ImageSet) -> KnnMonitor | None:
        if not (cfg.knn_bank and cfg.knn_queries):
            return None
        return cls(train_set.subset(balanced_indices(train_set.labels, cfg.knn_bank, seed=0)),
                   eval_set.subset(balanced_indices(eval_set.labels, cfg.knn_queries, seed=0)))

    def accuracy(self, model: SimCLRModel, device: torch.device, bf16: bool) -> float:
        bank, queries = (extract_features(model.encoder, images, device, bf16=bf16)
                         for images in (self.bank, self.queries))
        return weighted_knn_accuracy(bank, self.bank.labels, queries, self.queries.labels, k=KNN_K)


def measure(model: SimCLRModel, eval_set: ImageSet, cfg: Config, device: torch.device, bf16: bool,
            knn: KnnMonitor | None) -> dict[str, float]:
    """One evaluation: the held-out contrastive metrics, and the online k-NN accuracy when configured."""
    metrics = evaluate_ssl(model, eval_set, cfg, device, bf16)
    if knn is not None:
        metrics["knn"] = knn.accuracy(model, device, bf16)
    return metrics
