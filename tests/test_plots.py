"""The bar chart the chapters use for probe accuracies draws what it is given, in order."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from simclr_core.plots import accuracy_bars  # noqa: E402


def test_accuracy_bars_draw_one_labelled_bar_per_value() -> None:
    accuracies = {"crop only": 0.41, "colour only": 0.33, "full recipe": 0.52}
    ax = accuracy_bars(accuracies, title="ablation").axes[0]
    assert [bar.get_height() for bar in ax.patches] == pytest.approx(list(accuracies.values()))
    assert [label.get_text() for label in ax.get_xticklabels()] == list(accuracies)
    assert [text.get_text() for text in ax.texts] == ["0.410", "0.330", "0.520"]
    assert ax.get_title() == "ablation"


def test_line_chart_draws_each_series_sorted_and_marks_what_was_measured_elsewhere() -> None:
    from simclr_core.plots import line_chart

    fig = line_chart({"ours": [(4, 0.5), (1, 0.3), (2, 0.4)], "theirs": [(1, 0.6), (8, 0.9)]}, "x", "y", "t",
                     log_x=True, dashed=("theirs",), levels={"chance": 0.1})
    ax = fig.axes[0]
    ours, theirs = ax.lines[:2]
    assert list(ours.get_xdata()) == [1, 2, 4] and list(ours.get_ydata()) == [0.3, 0.4, 0.5]
    assert ours.get_linestyle() == "-" and theirs.get_linestyle() == "--" and theirs.get_markerfacecolor() == "none"
    assert ax.lines[2].get_ydata()[0] == 0.1 and ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ours", "theirs"]
    fig.canvas.draw()  # the level's label shows on a log axis too, at its left edge (it used to fall off-axis)
    label = next(text for text in ax.texts if text.get_text() == "chance")
    box, frame = label.get_window_extent(), ax.get_window_extent()
    assert frame.x0 <= box.x0 < frame.x0 + 20 and frame.y0 < box.y0 < frame.y1


def test_training_overview_shows_the_online_knn_beside_the_task() -> None:
    from simclr_core.plots import training_overview

    evals = [{"epoch": e, "loss": 5 - e, "p_pos": 0.1 * e, "top1": 0.2 * e, "knn": 0.2 + 0.05 * e} for e in (1, 2, 3)]
    axes = training_overview({"evals": evals}).axes
    assert [ax.get_title() for ax in axes] == ["held-out loss", "finding the partner view", "k-NN on classes (online)"]
    assert list(axes[2].lines[0].get_ydata()) == pytest.approx([0.25, 0.3, 0.35])


def test_feature_map_draws_each_map_in_its_own_panel_coloured_by_class() -> None:
    import torch

    from simclr_core.plots import feature_map

    labels = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    maps = {"SimCLR": torch.randn(7, 2), "random init": torch.randn(7, 2)}
    fig = feature_map(maps, labels, ["cat", "dog", "ship"])
    assert [ax.get_title() for ax in fig.axes] == ["SimCLR", "random init"]
    for ax, points in zip(fig.axes, maps.values(), strict=True):
        assert [len(c.get_offsets()) for c in ax.collections] == [2, 2, 3]  # one scatter per class, in class order
        assert len({tuple(c.get_facecolor()[0]) for c in ax.collections}) == 3
        assert list(ax.collections[2].get_offsets()[:, 0]) == pytest.approx(points[labels == 2, 0].tolist())
        assert not ax.get_xticks().size and not ax.get_yticks().size
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["cat", "dog", "ship"]
