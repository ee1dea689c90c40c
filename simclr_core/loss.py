"""NT-Xent (InfoNCE) exactly as the reference writes it, in three small steps the book can show one by one.

Shapes, with B images in a batch and N = 2B views:
    z1, z2            (B, D)   unit-length embeddings of view 1 and view 2 of the same B images
    Z = [z1; z2]      (N, D)   row i and row (i + B) % N are the two views of one image: a positive pair
    S = Z @ Z.T       (N, N)   cosine similarities; the diagonal (a view with itself) is masked out
    targets           (N,)     targets[i] = (i + B) % N, the column of i's positive
    loss = cross_entropy(S / T, targets): each row is a classification "which of the other N - 1 views
    is my positive?", with the N - 2 views of other images as negatives.

The decoupled contrastive loss (DCL, Yeh et al. 2022) is the same row with the positive left out of the
denominator: -S_pos / T + log sum_negatives exp(S / T). NT-Xent's gradient on a row is scaled by
(1 - p_pos), which shrinks once positives are found, most of all with small batches; DCL removes that factor.
It is an option (`loss="dcl"`); NT-Xent is the default and what the book teaches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def simclr_logits_targets(z1: torch.Tensor, z2: torch.Tensor, temperature: float,
                          rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits S / T (N, N) with the diagonal set to -inf, and the index of each row's positive (N,).

    `rows` keeps only those anchors (rows of S), each still against all N candidates: a process of a
    distributed run computes the rows of its own images over the gathered global batch.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"z1 and z2 must both be (B, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    z = torch.cat([z1, z2], dim=0)
    n, b = z.shape[0], z1.shape[0]
    rows = torch.arange(n, device=z.device) if rows is None else rows
    similarities = z[rows] @ z.T
    self_mask = torch.zeros_like(similarities, dtype=torch.bool)
    self_mask[torch.arange(len(rows), device=z.device), rows] = True  # a view is not its own candidate
    logits = similarities.masked_fill(self_mask, float("-inf")) / temperature
    targets = (rows + b) % n
    return logits, targets


def contrastive_loss(logits: torch.Tensor, targets: torch.Tensor, decoupled: bool = False) -> torch.Tensor:
    """Mean over rows of NT-Xent (cross-entropy over all candidates) or, with `decoupled`, of DCL."""
    if not decoupled:
        return F.cross_entropy(logits, targets)
    positive = F.one_hot(targets, logits.shape[1]).bool()
    negatives = logits.masked_fill(positive, float("-inf"))
    return (torch.logsumexp(negatives, dim=1) - logits[positive]).mean()


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, decoupled: bool = False) -> torch.Tensor:
    """Mean NT-Xent loss (or DCL, with `decoupled`) over all N = 2B views; z1, z2 must be L2-normalised."""
    return contrastive_loss(*simclr_logits_targets(z1, z2, temperature), decoupled)


@torch.no_grad()
def contrastive_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """p_pos: mean softmax probability on the positive; top1: share of rows whose positive is the argmax.

    top1 is a retrieval score inside the batch, not classification accuracy.
    """
    rows = torch.arange(len(targets), device=logits.device)
    p_pos = logits.softmax(dim=1)[rows, targets]
    top1 = (logits.argmax(dim=1) == targets).float()
    return {"p_pos": p_pos.mean().item(), "top1": top1.mean().item()}
