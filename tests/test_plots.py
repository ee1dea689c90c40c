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
