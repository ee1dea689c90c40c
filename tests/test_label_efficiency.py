"""Chapter 7's measurements: what a layer keeps (brightness, ridge R^2), chunked k-NN, the label-efficiency figure."""

from __future__ import annotations

import torch

from simclr_core.analysis import brightness_views, knn_predict, linear_r2
from simclr_core.plots import accuracy_against_labels


def test_brightness_views_scale_each_image_by_its_own_factor_in_the_jitter_range() -> None:
    images = torch.full((200, 3, 8, 8), 100, dtype=torch.uint8)
    views, factors = brightness_views(images, seed=3)
    assert views.dtype == torch.uint8 and 0.6 <= factors.min() and factors.max() <= 1.4
    torch.testing.assert_close(views[:, 0, 0, 0].float(), (100 * factors).round(), atol=1, rtol=0)
    assert torch.equal(factors, brightness_views(images, seed=3)[1])


def test_linear_r2_is_one_for_a_linear_target_and_near_zero_for_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 20, generator=g)
    target = x @ torch.randn(20, generator=g)
    assert linear_r2(x[:400], target[:400], x[400:], target[400:], ridge=1e-3) > 0.99
    noise = torch.randn(600, generator=g)
    assert abs(linear_r2(x[:400], noise[:400], x[400:], noise[400:])) < 0.1


def test_knn_in_chunks_predicts_what_one_pass_does() -> None:
    g = torch.Generator().manual_seed(1)
    bank, labels, queries = torch.randn(300, 8, generator=g), torch.randint(0, 4, (300,), generator=g), \
        torch.randn(50, 8, generator=g)
    assert torch.equal(knn_predict(bank, labels, queries, k=5, chunk=7), knn_predict(bank, labels, queries, k=5))


def test_label_efficiency_figure_draws_probes_runs_and_references() -> None:
    fig = accuracy_against_labels({"probe": {1: [0.2, 0.3], 10: [0.5]}}, {"fine-tuned": {10: 0.6}}, {"seed": 0.78},
                           reference_budget=10)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["1", "10"]
    assert any("not measured here" in text.get_text() for text in ax.texts)
