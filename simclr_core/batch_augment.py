"""The same augmentation recipe, applied to a whole batch at once on the batch's device.

torchvision's transforms draw one set of random parameters per call, so the reference pipeline calls them
once per image, in Python, on the CPU: for SimCLR, which augments every image twice, that is the
bottleneck (GPUs wait at a few percent utilisation). Here every image still gets its own random parameters,
but each step is a handful of tensor operations over the batch:

- crop + flip: one sampling grid per image, one bilinear `F.grid_sample` call for the batch;
- colour jitter: brightness, contrast, saturation and hue with per-image factors, in a per-image random
  order as torchvision does, on the images that draw it (p = 0.8);
- random grayscale (when the recipe has it): the luma of the images that draw it, in all three channels;
- blur: a per-image 3x3 Gaussian, as a grouped separable convolution with reflect padding (p = 0.5);
- normalisation with the CIFAR-10 statistics.

Parameters come from `AugmentationParams`, the recipe's single source of truth, and a `torch.Generator` on
the batch's device, so a seeded run repeats exactly. tests/test_batch_augment.py compares the sampled
distributions with torchvision's own per-image transforms.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from . import distributed
from .augment import CIFAR10_MEAN, CIFAR10_STD, AugmentationParams, SSLAugmentation, recipe_params, simclr_transform
from .config import Config
from .data import ImageSet

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before falling back to the whole image


class Draws:
    """Uniform random numbers for the images of a batch, from one seeded generator.

    In a distributed run each process augments its own rows `offset .. offset + n` of a global batch of
    `total` images: every process draws the numbers for the whole global batch (the same on all of them,
    from the same seed) and keeps its rows, so the views are those a single process would make.
    """

    def __init__(self, generator: torch.Generator, offset: int = 0, total: int | None = None):
        self.generator, self.offset, self.total = generator, offset, total

    def rand(self, n: int, *shape: int) -> torch.Tensor:
        total = self.total if self.total is not None else n
        drawn = torch.rand(total, *shape, generator=self.generator, device=self.generator.device)
        return drawn[self.offset:self.offset + n]

    def uniform(self, low: float, high: float, n: int, *shape: int) -> torch.Tensor:
        return low + (high - low) * self.rand(n, *shape)


def sample_crop_boxes(n: int, size: int, params: AugmentationParams, draws: Draws) -> torch.Tensor:
    """(n, 4) boxes (top, left, height, width) in whole pixels, drawn as torchvision's RandomResizedCrop does."""
    area = size * size
    scale = draws.uniform(*params.crop_scale, n, CROP_ATTEMPTS) * area
    log_ratio = (math.log(params.crop_ratio[0]), math.log(params.crop_ratio[1]))
    ratio = draws.uniform(*log_ratio, n, CROP_ATTEMPTS).exp()
    width = (scale * ratio).sqrt().round()
    height = (scale / ratio).sqrt().round()
    fits = (width > 0) & (width <= size) & (height > 0) & (height <= size)
    first_fit = fits.float().argmax(1)  # 0 when none fits; replaced by the fallback below
    rows = torch.arange(n, device=width.device)
    width, height = width[rows, first_fit], height[rows, first_fit]
    fallback = ~fits.any(1)  # no attempt fitted: the whole image, as torchvision does when ratio 1 is allowed
    width, height = torch.where(fallback, size, width), torch.where(fallback, size, height)
    top = (draws.rand(n) * (size - height + 1)).floor()
    left = (draws.rand(n) * (size - width + 1)).floor()
    return torch.stack([top, left, height, width], dim=1)


def _source_coordinates(start: torch.Tensor, length: torch.Tensor, out_size: int) -> torch.Tensor:
    """Where each output pixel samples the crop, in input pixels (B, out_size), as bilinear `F.interpolate`
    (align_corners=False) computes it: pixel centres, clamped to the crop so its edge pixels repeat."""
    centres = torch.arange(out_size, device=start.device, dtype=torch.float32) + 0.5
    inside = (centres[None] * length[:, None] / out_size - 0.5).clamp_min(0)
    return start[:, None] + torch.minimum(inside, length[:, None] - 1)


def crop_and_flip(images: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor,
                  out_size: int | None = None) -> torch.Tensor:
    """Resize each image's box to `out_size` pixels a side (default: the input's), bilinear, mirrored where
    `flip`; float images (B, C, H, W). One `F.grid_sample` call for the batch: a sampling grid per image."""
    b, _, h, w = images.shape
    out = out_size or w
    top, left, height, width = boxes.unbind(1)
    x = _source_coordinates(left, width, out)
    x = torch.where(flip[:, None], x.flip(1), x)
    y = _source_coordinates(top, height, out)
    # grid_sample wants coordinates in [-1, 1] where -1 and 1 are the outer edges of the image
    grid = torch.stack([((2 * x + 1) / w - 1)[:, None, :].expand(b, out, out),
                        ((2 * y + 1) / h - 1)[:, :, None].expand(b, out, out)], dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)


def _grayscale(images: torch.Tensor) -> torch.Tensor:
    r, g, b = images.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor.view(-1, 1, 1, 1) * images + (1 - factor.view(-1, 1, 1, 1)) * other).clamp(0, 1)


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, torch.zeros_like(images), factor)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, _grayscale(images).mean((1, 2, 3), keepdim=True), factor)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, _grayscale(images), factor)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of each image by `shift` (a fraction of the colour wheel), via HSV."""
    r, g, b = images.unbind(1)
    value, argmax = images.max(1)
    chroma = value - images.min(1).values
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.stack([((g - b) / safe) % 6, (b - r) / safe + 2, (r - g) / safe + 4]).gather(0, argmax[None])[0]
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    saturation = torch.where(value > 0, chroma / torch.where(value > 0, value, torch.ones_like(value)), 0.0)
    # HSV -> RGB: each channel n in (5, 3, 1) is v - v s max(0, min(k, 4 - k, 1)) with k = (n + 6 h) mod 6
    k = (torch.tensor([5.0, 3.0, 1.0], device=images.device).view(1, 3, 1, 1) + 6 * hue.unsqueeze(1)) % 6
    weight = torch.minimum(k, 4 - k).clamp(0, 1)
    return value.unsqueeze(1) - (value * saturation).unsqueeze(1) * weight


def color_jitter(images: torch.Tensor, params: AugmentationParams, draws: Draws) -> torch.Tensor:
    """torchvision's ColorJitter with probability `jitter_p`, per-image factors and a per-image random order."""
    n = len(images)
    applied = draws.rand(n) < params.jitter_p
    identity = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
    ranges = {"brightness": (1 - params.brightness, 1 + params.brightness),
              "contrast": (1 - params.contrast, 1 + params.contrast),
              "saturation": (1 - params.saturation, 1 + params.saturation),
              "hue": (-params.hue, params.hue)}
    factors = {name: torch.where(applied, draws.uniform(low, high, n), identity[name])
               for name, (low, high) in ranges.items()}
    operations = {"brightness": adjust_brightness, "contrast": adjust_contrast,
                  "saturation": adjust_saturation, "hue": adjust_hue}
    order = draws.rand(n, 4).argsort(1)  # a random permutation of the four operations per image
    out = images.clone()
    for position in range(4):
        for index, (name, operation) in enumerate(operations.items()):
            chosen = (order[:, position] == index) & applied
            if chosen.any():
                out[chosen] = operation(out[chosen], factors[name][chosen])
    return out


def random_grayscale(images: torch.Tensor, params: AugmentationParams, draws: Draws) -> torch.Tensor:
    """torchvision's RandomGrayscale: with probability `gray_p`, the image's luma in all three channels."""
    chosen = draws.rand(len(images)) < params.gray_p
    return torch.where(chosen.view(-1, 1, 1, 1), _grayscale(images).expand_as(images), images)


def gaussian_blur(images: torch.Tensor, params: AugmentationParams, draws: Draws) -> torch.Tensor:
    """A per-image Gaussian blur (kernel `blur_kernel`, sigma in `blur_sigma`) with probability `blur_p`."""
    n, c, h, w = images.shape
    device = images.device
    applied = draws.rand(n) < params.blur_p
    sigma = draws.uniform(*params.blur_sigma, n)
    radius = params.blur_kernel // 2
    x = torch.arange(-radius, radius + 1, device=device, dtype=images.dtype)
    kernel = torch.exp(-(x[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)
    identity = (x == 0).to(images.dtype).expand(n, -1)
    kernel = torch.where(applied[:, None], kernel, identity).repeat_interleave(c, 0)  # (n * c, k)
    flat = F.pad(images.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, -1), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return flat.view(n, c, h, w)


class BatchAugmentation:
    """Call with a uint8 batch (B, 3, H, W) on any device; returns one normalised float view per image."""

    def __init__(self, params: AugmentationParams = AugmentationParams(), seed: int = 0,
                 device: torch.device | str = "cpu", normalized: bool = True):
        self.params = params
        self.normalized = normalized
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.mean = torch.tensor(CIFAR10_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD, device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor, offset: int = 0, total: int | None = None) -> torch.Tensor:
        """Augment `images`, which are rows `offset ..` of a global batch of `total` (default: all of it)."""
        n, _, size, _ = images.shape
        draws = Draws(self.generator, offset, total)
        x = images.float() / 255
        boxes = sample_crop_boxes(n, size, self.params, draws)
        flip = draws.rand(n) < self.params.flip_p
        x = crop_and_flip(x, boxes, flip, self.params.output_size)
        x = color_jitter(x, self.params, draws)
        if self.params.gray_p:  # drawn only when on: the seed's recipe keeps its random stream
            x = random_grayscale(x, self.params, draws)
        x = gaussian_blur(x, self.params, draws)
        if not self.normalized:
            return (x * 255).round().to(torch.uint8)
        return (x - self.mean) / self.std


class DeviceTwoViewLoader:
    """Batches of two views, like a DataLoader over `SSLAugmentation`, with the data kept on the device.

    The uint8 images are moved to `device` once (50,000 CIFAR images are 150 MB); each batch is indexed
    there and augmented twice by `BatchAugmentation`. Nothing crosses between host and device per batch.
    In a distributed run (`world_size` > 1) every process shuffles the same way, takes its own
    `batch_size` rows of each global batch of `batch_size * world_size`, and augments them as one process
    would augment the whole global batch: each epoch's shards are disjoint.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, params: AugmentationParams, seed: int,
                 device: torch.device | str, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.images = images.to(device)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.shuffle = shuffle
        self.augment = BatchAugmentation(params, seed, device)
        self.order_generator = torch.Generator(device=device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images) // (self.batch_size * self.world_size)  # drop the last, incomplete batch

    def resize(self, side: int) -> None:
        """Make the next batches' views `side` pixels a side (progressive resizing). The random draws do not
        depend on the side, so a run that resizes sees the same crops, flips and colours as one that does not."""
        self.augment.params = replace(self.augment.params, output_size=side)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, device = len(self.images), self.images.device
        order = torch.randperm(n, generator=self.order_generator, device=device) if self.shuffle \
            else torch.arange(n, device=device)
        global_batch = self.batch_size * self.world_size
        offset = self.rank * self.batch_size
        for start in range(0, len(self) * global_batch, global_batch):
            batch = self.images[order[start + offset:start + offset + self.batch_size]]
            yield (self.augment(batch, offset, global_batch), self.augment(batch, offset, global_batch))


Loader = DataLoader | DeviceTwoViewLoader


def two_view_loader(images: ImageSet, cfg: Config, shuffle: bool, seed: int, device: torch.device,
                    world: distributed.Distributed = distributed.SINGLE_PROCESS) -> Loader:
    """Batches of (view 1, view 2) as `cfg` asks: from this module's on-device pipeline ("fast"), or from
    torchvision's per-image transforms in a DataLoader ("reference", as the seed).

    Under torchrun each process gets its shard: batch_size / world_size images of every global batch.
    """
    params = recipe_params(cfg.augmentation_steps, cfg.crop_min_scale, cfg.train_resolution)
    if cfg.pipeline == "fast":
        return DeviceTwoViewLoader(images.images, cfg.batch_size // world.world_size, params, seed, device,
                                   shuffle, world.rank, world.world_size)
    return DataLoader(SSLAugmentation(images, simclr_transform(params)), batch_size=cfg.batch_size,
                      shuffle=shuffle, drop_last=True, num_workers=cfg.num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))
