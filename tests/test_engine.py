"""What train_ssl does with its config and data before the first step: the crop scale reaches both
augmentation pipelines, and a set smaller than one batch is refused with a message."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from simclr_core.batch_augment import DeviceTwoViewLoader, Draws, sample_crop_boxes
from simclr_core.config import make_config
from simclr_core.data import ImageSet
from simclr_core.engine import train_ssl, two_view_loader


def _images(n: int) -> ImageSet:
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageSet(images, torch.arange(n) % 10, [str(c) for c in range(10)])


def _whole_image_crops(pipeline: str, crop_min_scale: float, draws: int = 200) -> torch.Tensor:
    """For `draws` crops of the loader the engine builds from the config: is the crop the whole image?"""
    cfg = make_config("smoke", data="cifar10", pipeline=pipeline, crop_min_scale=crop_min_scale)
    images = _images(cfg.batch_size)
    loader = two_view_loader(images, cfg, shuffle=False, seed=0, device=torch.device("cpu"))
    if isinstance(loader, DeviceTwoViewLoader):
        boxes = sample_crop_boxes(draws, 32, loader.augment.params, Draws(torch.Generator().manual_seed(0)))
        return (boxes == torch.tensor([0.0, 0.0, 32.0, 32.0])).all(1)
    crop = loader.dataset.transform.transforms[0]
    assert isinstance(crop, v2.RandomResizedCrop)
    torch.manual_seed(0)
    return torch.tensor([torch.equal(crop(images.images[0]), images.images[0]) for _ in range(draws)])


@pytest.mark.parametrize("pipeline", ["fast", "reference"])
def test_crop_min_scale_reaches_the_augmentation(pipeline: str) -> None:
    assert _whole_image_crops(pipeline, 1.0).all()  # nothing left to cut: every crop is the whole image
    assert _whole_image_crops(pipeline, 0.3).float().mean() < 0.2  # the default: mostly smaller crops


@pytest.mark.parametrize("short", ["training", "evaluation"])
def test_a_set_smaller_than_one_batch_is_refused(short: str, tmp_path: Path) -> None:
    cfg = make_config("smoke", data="cifar10", epochs=1)  # batch_size 64
    sets = {"training": _images(128), "evaluation": _images(128), short: _images(40)}
    with pytest.raises(ValueError, match=f"the {short} set has 40 images, fewer than batch_size=64"):
        train_ssl(cfg, str(tmp_path), progress=False, train_set=sets["training"], eval_set=sets["evaluation"])
    assert not (tmp_path / "checkpoints").exists()  # refused before any training
