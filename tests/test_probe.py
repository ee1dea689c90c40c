"""The linear probe: near-perfect on separable features, and the encoder it probes never changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simclr_core import data, probe
from simclr_core.config import make_config
from simclr_core.data import ImageSet
from simclr_core.model import SimCLRModel
from simclr_core.probe import cached_features, extract_features, probe_encoders, random_encoder, train_linear_probe
from simclr_core.storage import RunPaths, save_checkpoint


def test_probe_separates_linearly_separable_features() -> None:
    g = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(5, 20, generator=g)
    labels = torch.randint(0, 5, (1200,), generator=g)
    features = centres[labels] + torch.randn(1200, 20, generator=g)
    result = train_linear_probe(features[:1000], labels[:1000], features[1000:], labels[1000:], steps=30)
    assert result.test_accuracy > 0.97
    assert result.train_loss[-1] < result.train_loss[0] / 5


def test_probe_is_at_chance_on_unrelated_labels() -> None:
    g = torch.Generator().manual_seed(1)
    features, labels = torch.randn(2000, 20, generator=g), torch.randint(0, 4, (2000,), generator=g)
    result = train_linear_probe(features[:1500], labels[:1500], features[1500:], labels[1500:], steps=20)
    assert 0.15 < result.test_accuracy < 0.35


def test_probing_leaves_the_encoder_bit_identical(cifar_train: ImageSet, cifar_test: ImageSet) -> None:
    cfg = make_config("smoke", data="cifar10", probe_steps=2)
    encoder = random_encoder(cfg)
    encoder.train()  # even if handed over in training mode, BatchNorm statistics must not move
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    probe_encoders({"random": encoder}, cifar_train, cifar_test, cfg, progress=False)
    after = encoder.state_dict()
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), f"{name} changed during probing"
    assert all(not p.requires_grad for p in encoder.parameters())


def test_features_do_not_depend_on_batch_composition(cifar_test: ImageSet) -> None:
    encoder = random_encoder(make_config("smoke", data="cifar10"))
    whole = extract_features(encoder, cifar_test, batch_size=256)
    pieces = extract_features(encoder, cifar_test, batch_size=7)
    torch.testing.assert_close(whole, pieces, rtol=1e-4, atol=1e-5)  # eval-mode BatchNorm


def test_lbfgs_probe_matches_the_exact_logistic_regression_optimum() -> None:
    """On a small problem the L-BFGS probe reaches the optimum of its objective: the gradient vanishes."""
    g = torch.Generator().manual_seed(2)
    features, labels = torch.randn(600, 8, generator=g), torch.randint(0, 3, (600,), generator=g)
    features[:, 0] += labels  # some signal, not separable
    result = train_linear_probe(features, labels, features, labels, steps=100, weight_decay=1e-2)
    assert result.train_loss[-1] < result.train_loss[0] < 1.0987  # starts at log(3) (zero weights), falls
    assert abs(result.train_loss[-1] - result.train_loss[-2]) < 1e-6  # converged
    assert 0.4 < result.test_accuracy < 0.9


def test_stronger_weight_decay_shrinks_the_fit() -> None:
    g = torch.Generator().manual_seed(3)
    features, labels = torch.randn(100, 50, generator=g), torch.randint(0, 4, (100,), generator=g)
    loose = train_linear_probe(features, labels, features, labels, steps=60, weight_decay=0.0)
    tight = train_linear_probe(features, labels, features, labels, steps=60, weight_decay=1.0)
    assert loose.train_accuracy == 1.0 > tight.train_accuracy + 0.3  # 100 points in 50 dimensions: memorised


def test_features_are_cached_per_encoder_weights(cifar_test: ImageSet, tmp_path) -> None:
    encoder = random_encoder(make_config("smoke", data="cifar10"))
    calls = {"n": 0}
    encoder.register_forward_hook(lambda module, inputs, output: calls.__setitem__("n", calls["n"] + 1))
    first = cached_features(encoder, cifar_test, tmp_path)
    forwards = calls["n"]
    again = cached_features(encoder, cifar_test, tmp_path)
    assert forwards > 0 and calls["n"] == forwards, "the second call must read the cache, not run the encoder"
    assert torch.equal(first, again) and len(list(tmp_path.iterdir())) == 1
    with torch.no_grad():
        encoder.conv1.weight.mul_(2)  # other weights: other features, another cache entry
    changed = cached_features(encoder, cifar_test, tmp_path)
    assert not torch.equal(first, changed) and len(list(tmp_path.iterdir())) == 2


def test_bf16_features_stay_close_to_float32_ones(cifar_test: ImageSet) -> None:
    encoder = random_encoder(make_config("smoke", data="cifar10"))
    exact, rounded = (extract_features(encoder, cifar_test, bf16=bf16) for bf16 in (False, True))
    assert not torch.equal(exact, rounded)
    assert torch.nn.functional.cosine_similarity(exact, rounded, dim=1).min() > 0.99


def test_random_init_features_are_computed_once_for_every_run_of_the_architecture(
        tmp_path: Path, cifar_train: ImageSet, cifar_test: ImageSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "load_split", lambda data, split, *_: cifar_train if split == "train" else cifar_test)
    monkeypatch.setattr(data, "load_split", lambda data, split, *_: cifar_train if split == "train" else cifar_test)
    monkeypatch.setenv("SIMCLR_CACHE", str(tmp_path / "shared"))
    cfg = make_config("smoke", data="cifar10", probe_train_subset=0)
    logs = []
    for run, seed in (("a", 1), ("b", 2)):  # two runs with different trained weights, one random-init encoder
        torch.manual_seed(seed)
        save_checkpoint(RunPaths(tmp_path / run).checkpoint,
                        {"config": cfg.to_dict(), "model": SimCLRModel(cfg.width, cfg.proj_dim).state_dict()})
        logs.append(probe.run_probe(str(tmp_path / run), progress=False))
    assert len(list((tmp_path / "shared").glob("*.pt"))) == 2  # the random encoder's train and test features
    assert all(len(list(RunPaths(tmp_path / run).features.glob("*.pt"))) == 2 for run in "ab")  # each run's own
    assert logs[0]["random"] == logs[1]["random"]
