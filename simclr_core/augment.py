"""The augmentations that define what SimCLR learns to ignore, and the two-view dataset wrapper.

Whatever the recipe changes (framing, mirror image, colour, sharpness), the encoder is trained to map to
the same point; whatever it leaves alone (shapes, parts, textures) is what the features may use.
The recipe is the reference's, with every parameter in `AugmentationParams`. Transforms run per image on
uint8 tensors, so a DataLoader can draw independent parameters for every view.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .data import IMAGE_SIZE

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class AugmentationParams:
    crop_scale: tuple[float, float] = (0.3, 1.0)  # share of the image area a crop keeps
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratios of the crop
    output_size: int = IMAGE_SIZE  # side the crop is resized to: a smaller side is a cheaper training step
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4  # SimCLR's colour strength s = 0.5: (0.8 s, 0.8 s, 0.8 s, 0.2 s)
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    gray_p: float = 0.0  # random grayscale after the jitter: SimCLR's paper uses 0.2 (`GRAY_P`), the seed none
    blur_p: float = 0.5
    blur_kernel: int = 3  # 10% of a 32-pixel side, as SimCLR's paper has it on ImageNet (19% of a 16-pixel view)
    blur_sigma: tuple[float, float] = (0.1, 2.0)


GRAY_P = 0.2  # the probability of random grayscale when the recipe includes "gray" (SimCLR's paper)


def recipe_params(steps: Iterable[str], crop_min_scale: float = 0.3,
                  output_size: int = IMAGE_SIZE) -> AugmentationParams:
    """The recipe with only `steps` switched on: a left-out crop keeps the whole image (still resized to
    `output_size`), a left-out flip, jitter or blur has probability 0. Ablations train with these."""
    on, full = set(steps), AugmentationParams()
    return replace(full, output_size=output_size,
                   crop_scale=(crop_min_scale, 1.0) if "crop" in on else (1.0, 1.0),
                   crop_ratio=full.crop_ratio if "crop" in on else (1.0, 1.0),
                   flip_p=full.flip_p if "flip" in on else 0.0,
                   jitter_p=full.jitter_p if "jitter" in on else 0.0,
                   gray_p=GRAY_P if "gray" in on else 0.0,
                   blur_p=full.blur_p if "blur" in on else 0.0)


def normalize() -> v2.Compose:
    """uint8 image -> float tensor standardised with the CIFAR-10 channel statistics."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(CIFAR10_MEAN, CIFAR10_STD)])


def recipe_steps(params: AugmentationParams = AugmentationParams()) -> dict[str, v2.Transform]:
    """The recipe's steps in order, by name, each acting on a uint8 image (the book shows them one by one).
    Random grayscale is a step only when its probability is above 0, so the seed's recipe draws as it always did."""
    steps = {
        "crop": v2.RandomResizedCrop(params.output_size, scale=params.crop_scale, ratio=params.crop_ratio,
                                     antialias=True),
        "flip": v2.RandomHorizontalFlip(p=params.flip_p),
        "jitter": v2.RandomApply([v2.ColorJitter(params.brightness, params.contrast, params.saturation,
                                                 params.hue)], p=params.jitter_p),
        "gray": v2.RandomGrayscale(p=params.gray_p),
        "blur": v2.RandomApply([v2.GaussianBlur(params.blur_kernel, sigma=params.blur_sigma)], p=params.blur_p),
    }
    if not params.gray_p:
        del steps["gray"]
    return steps


def simclr_transform(params: AugmentationParams = AugmentationParams(), normalized: bool = True) -> v2.Compose:
    """One random view of a (3, 32, 32) uint8 image; `normalized=False` keeps uint8 for display."""
    steps = list(recipe_steps(params).values())
    return v2.Compose(steps + ([normalize()] if normalized else []))


class SSLAugmentation(Dataset):
    """Wraps a dataset of (image, label) and returns two independently augmented views of each image.

    The label is dropped: contrastive pre-training never sees it.
    """

    def __init__(self, base: Dataset, transform: v2.Compose | None = None):
        self.base = base
        self.transform = transform if transform is not None else simclr_transform()

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, _ = self.base[index]
        return self.transform(image), self.transform(image)
