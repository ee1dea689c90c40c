"""The linear probe: near-perfect on separable features, and the encoder it probes never changes."""

from __future__ import annotations

import torch

from simclr_core.config import make_config
from simclr_core.data import ImageSet
from simclr_core.probe import extract_features, probe_encoders, random_encoder, train_linear_probe


def test_probe_separates_linearly_separable_features() -> None:
    g = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(5, 20, generator=g)
    labels = torch.randint(0, 5, (1200,), generator=g)
    features = centres[labels] + torch.randn(1200, 20, generator=g)
    result = train_linear_probe(features[:1000], labels[:1000], features[1000:], labels[1000:],
                                epochs=30, lr=1e-2, batch_size=100)
    assert result.test_accuracy > 0.97
    assert result.train_loss[-1] < result.train_loss[0] / 5


def test_probe_is_at_chance_on_unrelated_labels() -> None:
    g = torch.Generator().manual_seed(1)
    features, labels = torch.randn(2000, 20, generator=g), torch.randint(0, 4, (2000,), generator=g)
    result = train_linear_probe(features[:1500], labels[:1500], features[1500:], labels[1500:], epochs=20)
    assert 0.15 < result.test_accuracy < 0.35


def test_probing_leaves_the_encoder_bit_identical(cifar_train: ImageSet, cifar_test: ImageSet) -> None:
    cfg = make_config("smoke", data="cifar10", probe_epochs=2)
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
