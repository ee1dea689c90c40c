"""The two views: different from each other, in range, and repeatable under a seed."""

from __future__ import annotations

import torch

from simclr_core.augment import CIFAR10_MEAN, CIFAR10_STD, SSLAugmentation, simclr_transform, unnormalize
from simclr_core.data import ImageSet


def test_two_views_differ_and_are_normalised(cifar_train: ImageSet) -> None:
    torch.manual_seed(0)
    pairs = SSLAugmentation(cifar_train)
    differing = 0
    for i in range(32):
        v1, v2 = pairs[i]
        assert v1.shape == v2.shape == (3, 32, 32) and v1.dtype == torch.float32
        differing += int(not torch.equal(v1, v2))
        # normalised pixels lie inside the image of [0, 1] under (x - mean) / std
        low = (0 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
        high = (1 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
        for view in (v1, v2):
            assert (view >= low.view(3, 1, 1) - 1e-5).all() and (view <= high.view(3, 1, 1) + 1e-5).all()
            assert torch.allclose(unnormalize(view), unnormalize(view).clamp(0, 1))
    assert differing == 32


def test_views_are_reproducible_under_a_seed(cifar_train: ImageSet) -> None:
    pairs = SSLAugmentation(cifar_train)
    torch.manual_seed(123)
    first = [pairs[i] for i in range(8)]
    torch.manual_seed(123)
    again = [pairs[i] for i in range(8)]
    torch.manual_seed(124)
    other = [pairs[i] for i in range(8)]
    for (a1, a2), (b1, b2) in zip(first, again, strict=True):
        assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert any(not torch.equal(a1, c1) for (a1, _), (c1, _) in zip(first, other, strict=True))


def test_display_views_stay_uint8(cifar_train: ImageSet) -> None:
    view = simclr_transform(normalized=False)(cifar_train.images[0])
    assert view.dtype == torch.uint8 and view.shape == (3, 32, 32)
