"""The reference's four figures, drawn from the JSON logs alone (no model, no data needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .storage import RunPaths, load_json

COLORS = {"simclr": "tab:blue", "random": "tab:gray", "random_bn": "tab:brown", "pixels": "tab:orange"}
# random_bn: the random-init encoder with BatchNorm statistics estimated on the data (chapter 5)
LABELS = {"simclr": "SimCLR", "random": "random init", "random_bn": "random init,\nBN from data",
          "pixels": "raw pixels"}


def ssl_loss(ssl_log: dict[str, Any]) -> Figure:
    """NT-Xent training loss per step (faint) and per epoch, and the held-out loss."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    # older logs lack steps_per_epoch; their runs ended on an epoch boundary
    steps_per_epoch = ssl_log.get("steps_per_epoch") or len(ssl_log["step_loss"]) / max(len(ssl_log["epochs"]), 1)
    step_epochs = [(i + 1) / steps_per_epoch for i in range(len(ssl_log["step_loss"]))]
    ax.plot(step_epochs, ssl_log["step_loss"], color="tab:blue", alpha=0.25, lw=0.8, label="train (step)")
    ax.plot([e["epoch"] for e in ssl_log["epochs"]], [e["loss"] for e in ssl_log["epochs"]],
            "o-", color="tab:blue", label="train (epoch mean)")
    ax.plot([e["epoch"] for e in ssl_log["evals"]], [e["loss"] for e in ssl_log["evals"]],
            "s--", color="tab:red", label="held-out views")
    ax.set(xlabel="epoch", ylabel="NT-Xent loss", title="SSL loss")
    ax.legend()
    fig.tight_layout()
    return fig


def ssl_metrics(ssl_log: dict[str, Any]) -> Figure:
    """Mean p_pos and top-1 (the positive is the most similar view) on held-out views."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [e["epoch"] for e in ssl_log["evals"]]
    ax.plot(epochs, [e["p_pos"] for e in ssl_log["evals"]], "o-", label="mean p_pos")
    ax.plot(epochs, [e["top1"] for e in ssl_log["evals"]], "s-", label="top-1 (positive is argmax)")
    ax.set(xlabel="epoch", ylabel="value", ylim=(0, 1), title="SSL metrics (not classification accuracy)")
    ax.legend()
    fig.tight_layout()
    return fig


def training_overview(ssl_log: dict[str, Any]) -> Figure:
    """The contrastive task (held-out loss; p_pos and top-1) beside the online k-NN accuracy on the features, at
    every evaluation: what the loss measures next to what the features are for."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    evals = ssl_log["evals"]
    epochs = [e["epoch"] for e in evals]
    axes[0].plot(epochs, [e["loss"] for e in evals], "s-", color="tab:red")
    axes[0].set(xlabel="epoch", ylabel="NT-Xent loss", title="held-out loss")
    axes[1].plot(epochs, [e["p_pos"] for e in evals], "o-", label="p_pos")
    axes[1].plot(epochs, [e["top1"] for e in evals], "s-", label="top-1")
    axes[1].set(xlabel="epoch", ylim=(0, 1), title="finding the partner view")
    axes[1].legend()
    axes[2].plot(epochs, [e.get("knn", float("nan")) for e in evals], "^-", color="tab:green")
    axes[2].set(xlabel="epoch", ylabel="accuracy", title="k-NN on classes (online)")
    fig.tight_layout()
    return fig


def probe_loss(probe_log: dict[str, Any]) -> Figure:
    """Linear-probe training objective at each of its evaluations by L-BFGS, one curve per encoder."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name in _encoders(probe_log):
        ax.plot(range(1, len(probe_log[name]["train_loss"]) + 1), probe_log[name]["train_loss"],
                color=COLORS.get(name), label=LABELS.get(name, name))
    ax.set(xlabel="evaluation of the objective (L-BFGS)", ylabel="train cross-entropy + L2", title="Linear probe loss")
    ax.legend()
    fig.tight_layout()
    return fig


def accuracy_bars(accuracies: dict[str, float], title: str = "Linear probe accuracy",
                  colors: list[str | None] | None = None) -> Figure:
    """One bar per named accuracy, with the value written on it and chance (10 classes) drawn as a line."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(accuracies)), 3.5))
    bars = ax.bar(list(accuracies), list(accuracies.values()), color=colors)
    ax.bar_label(bars, labels=[f"{a:.3f}" for a in accuracies.values()])
    ax.axhline(0.1, color="k", ls=":", lw=1, label="chance (10 classes)")
    ax.set(ylabel="test accuracy", ylim=(0, 1), title=title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def probe_accuracy(probe_log: dict[str, Any]) -> Figure:
    """Linear-probe test accuracy, one bar per encoder, with the value written on it."""
    names = _encoders(probe_log)
    return accuracy_bars({LABELS.get(n, n): probe_log[n]["test_accuracy"] for n in names},
                         colors=[COLORS.get(n) for n in names])


def accuracy_against_labels(curves: dict[str, dict[int, list[float]]], runs: dict[str, dict[int, float]] | None = None,
                     references: dict[str, float] | None = None, reference_budget: int = 5000,
                     title: str = "What pre-training buys when labels are scarce") -> Figure:
    """Test accuracy against labelled images per class (log axis). `curves`: per method, the scores of several
    labelled subsets per budget, drawn as their mean (a line) and every score (dots: the spread). `runs`: one
    trained run per budget, squares on a dashed line. `references`: full-label accuracies measured elsewhere,
    hollow stars at `reference_budget`, named as not measured here."""
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for name, scores in curves.items():
        budgets = sorted(scores)
        line, = ax.plot(budgets, [sum(scores[n]) / len(scores[n]) for n in budgets], "o-", lw=1.8, ms=4, label=name)
        points = [(n, score) for n in budgets for score in scores[n]]
        ax.scatter(*zip(*points, strict=True), s=12, alpha=0.45, color=line.get_color(), linewidths=0)
    for name, scores in (runs or {}).items():
        budgets = sorted(scores)
        ax.plot(budgets, [scores[n] for n in budgets], "s--", lw=1.5, ms=6, label=name)
    for name, accuracy in (references or {}).items():
        ax.scatter([reference_budget], [accuracy], marker="*", s=150, facecolors="none", edgecolors="k")
        ax.annotate(f"{name}: {accuracy:.3f}\n(not measured here)", (reference_budget, accuracy), fontsize=7,
                    xytext=(-8, 0), textcoords="offset points", ha="right", va="center")
    ax.axhline(0.1, color="k", ls=":", lw=1, label="chance (10 classes)")
    ax.set(xscale="log", xlabel="labelled training images per class", ylabel="test accuracy", ylim=(0, 1),
           title=title)
    budgets = sorted({n for scores in [*curves.values(), *(runs or {}).values()] for n in scores})
    ax.set_xticks(budgets, [f"{n:,}" for n in budgets])
    ax.minorticks_off()
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def line_chart(series: dict[str, list[tuple[float, float]]], xlabel: str, ylabel: str, title: str,
               log_x: bool = False, log_y: bool = False, dashed: tuple[str, ...] = (),
               levels: dict[str, float] | None = None, ax: Axes | None = None) -> Figure:
    """Each named series of (x, y) points as a line with markers; `dashed` series (measured elsewhere, or
    extrapolated) dashed and hollow; `levels` as labelled horizontal lines (chance, a collapsed loss). Drawn on
    `ax`, one panel of a caller's figure, if given."""
    fig, ax = plt.subplots(figsize=(7.5, 4.4)) if ax is None else (ax.figure, ax)
    for name, points in series.items():
        xs, ys = zip(*sorted(points), strict=True)
        hollow = name in dashed
        ax.plot(xs, ys, "--" if hollow else "-", marker="o", ms=4, lw=1.6, label=name,
                markerfacecolor="none" if hollow else None)
    for name, value in (levels or {}).items():
        ax.axhline(value, color="k", ls=":", lw=1)
        ax.annotate(name, (0, value), xycoords=("axes fraction", "data"), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")  # at the left edge whatever the x scale
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xscale="log" if log_x else "linear",
           yscale="log" if log_y else "linear")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def image_grid(images: torch.Tensor, titles: list[str] | None = None, ncols: int = 8,
               size: float = 1.3, row_labels: list[str] | None = None) -> Figure:
    """Show uint8 images (N, 3, H, W) in a grid, optionally titled, with optional labels on the left."""
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        if i < len(images):
            ax.imshow(images[i].permute(1, 2, 0).numpy())
            if titles:
                ax.set_title(titles[i], fontsize=8)
    for row, label in enumerate(row_labels or []):
        axes[row, 0].set_ylabel(label, fontsize=9)
    fig.tight_layout()
    return fig


def similarity_heatmap(matrix: torch.Tensor, batch_size: int, title: str = "S = Z Z^T") -> Figure:
    """An N x N matrix with the positive pairs outlined and the halves (view 1 / view 2) marked."""
    fig, ax = plt.subplots(figsize=(4.6, 4))
    shown = ax.imshow(matrix.numpy(), cmap="viridis")
    n = len(matrix)
    for i in range(n):
        j = (i + batch_size) % n
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
    ax.axhline(batch_size - 0.5, color="w", lw=1)
    ax.axvline(batch_size - 0.5, color="w", lw=1)
    ax.set(title=title, xlabel="column j (candidate)", ylabel="row i (anchor)")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def feature_map(maps: dict[str, torch.Tensor], labels: torch.Tensor, classes: list[str], size: float = 4.0) -> Figure:
    """Each named 2-D map (N, 2) of the same N images (a t-SNE of each encoder's features, `analysis.tsne`) in a
    panel of its own, side by side, every point coloured by its class, one legend of class names for all. No ticks:
    a t-SNE map's axes and the distances between its clusters mean nothing, only who lies near whom."""
    fig, axes = plt.subplots(1, len(maps), figsize=(size * len(maps) + 1.6, size), squeeze=False, layout="constrained")
    colours = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for ax, (name, points) in zip(axes[0], maps.items(), strict=True):
        for index, class_name in enumerate(classes):
            chosen = points[labels == index].float().numpy()
            ax.scatter(chosen[:, 0], chosen[:, 1], s=4, color=colours(index % colours.N), alpha=0.7, linewidths=0,
                       label=class_name)
        ax.set(xticks=[], yticks=[], title=name)
        ax.set_aspect("equal", adjustable="datalim")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside right center", markerscale=3, fontsize=8,
               frameon=False)
    return fig


def _encoders(probe_log: dict[str, Any]) -> list[str]:
    return [name for name, value in probe_log.items() if isinstance(value, dict) and "test_accuracy" in value]


def save_all(out: str = ".", dpi: int = 110) -> list[Path]:
    """Write the four PNGs into `out`/plots from `out`/logs; the probe plots only if the probe has run."""
    paths = RunPaths(out)
    paths.plots.mkdir(parents=True, exist_ok=True)
    figures = {}
    ssl_log = load_json(paths.ssl_log)
    figures.update(ssl_loss=ssl_loss(ssl_log), ssl_metrics=ssl_metrics(ssl_log))
    if paths.probe_log.is_file():
        probe_log = load_json(paths.probe_log)
        figures.update(probe_loss=probe_loss(probe_log), probe_accuracy=probe_accuracy(probe_log))
    written = []
    for name, fig in figures.items():
        written.append(paths.plots / f"{name}.png")
        fig.savefig(written[-1], dpi=dpi)
        plt.close(fig)
    return written
