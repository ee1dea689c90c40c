"""The two views: different from each other, in range, and repeatable under a seed."""

from __future__ import annotations

import torch

from simclr_core.augment import SSLAugmentation, simclr_transform
from simclr_core.data import ImageSet

# (0 - mean) / std and (1 - mean) / std per channel, from CIFAR-10's published statistics
# mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616): what black and white pixels become
LOWEST = torch.tensor([-1.98947, -1.98029, -1.70680]).view(3, 1, 1)
HIGHEST = torch.tensor([2.05911, 2.12649, 2.11583]).view(3, 1, 1)


def test_two_views_differ_and_are_normalised(cifar_train: ImageSet) -> None:
    torch.manual_seed(0)
    pairs = SSLAugmentation(cifar_train)
    views = []
    for i in range(32):
        v1, v2 = pairs[i]
        assert v1.shape == v2.shape == (3, 32, 32) and v1.dtype == torch.float32
        assert not torch.equal(v1, v2)
        views += [v1, v2]
    views = torch.stack(views)
    # every pixel lies between black and white of its channel, and black and white both occur: a wrong
    # scale (e.g. /255 twice) or channel order moves the extremes
    assert (views >= LOWEST - 1e-4).all() and (views <= HIGHEST + 1e-4).all()
    torch.testing.assert_close(views.amin((0, 2, 3)), LOWEST.flatten(), atol=0.02, rtol=0)
    torch.testing.assert_close(views.amax((0, 2, 3)), HIGHEST.flatten(), atol=0.02, rtol=0)


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
