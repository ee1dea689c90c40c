"""The batched augmentation against torchvision's own per-image transforms.

Two kinds of checks. Each operation, given the same parameters, computes what torchvision's functional
op computes (to float tolerance). And the random parameters follow the same distributions: two-sample
Kolmogorov-Smirnov distances between our samples and torchvision's, and application rates against the
recipe's probabilities. With n = 4000 samples per side, the KS distance of two samples of one distribution
exceeds 0.045 with probability below 0.1% (critical value 1.95 * sqrt(2 / n)); rates are held to 4.5
standard errors. All seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from simclr_core.augment import GRAY_P, AugmentationParams, recipe_params, recipe_steps
from simclr_core.batch_augment import (
    BatchAugmentation,
    DeviceTwoViewLoader,
    Draws,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    crop_and_flip,
    gaussian_blur,
    random_grayscale,
    sample_crop_boxes,
)
from simclr_core.config import RECIPE_STEPS, SEED_AUGMENTATIONS

N = 4000
KS_CRITICAL = 1.95 * math.sqrt(2 / N)
PARAMS = AugmentationParams()


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest gap between the empirical CDFs of two samples."""
    values = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, values, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, values, right=True) / len(b)
    return (cdf_a - cdf_b).abs().max().item()


def assert_rate(observed: float, p: float, n: int = N) -> None:
    assert abs(observed - p) < 4.5 * math.sqrt(p * (1 - p) / n), (observed, p)


@pytest.fixture(scope="module")
def images(cifar_test) -> torch.Tensor:
    return cifar_test.images[:64].float() / 255


# --- the operations match torchvision's given the same parameters -------------------------------------

def test_colour_operations_match_torchvision(images: torch.Tensor) -> None:
    for factor in (0.6, 1.0, 1.37):
        f = torch.full((len(images),), factor)
        torch.testing.assert_close(adjust_brightness(images, f), TF.adjust_brightness(images, factor))
        torch.testing.assert_close(adjust_contrast(images, f), TF.adjust_contrast(images, factor))
        torch.testing.assert_close(adjust_saturation(images, f), TF.adjust_saturation(images, factor))
    for shift in (-0.1, 0.0, 0.07):
        torch.testing.assert_close(adjust_hue(images, torch.full((len(images),), shift)),
                                   TF.adjust_hue(images, shift), atol=1e-5, rtol=0)


def test_blur_matches_torchvision(images: torch.Tensor) -> None:
    params = AugmentationParams(blur_p=1.0, blur_sigma=(0.8, 0.8))
    ours = gaussian_blur(images, params, Draws(torch.Generator().manual_seed(0)))
    torch.testing.assert_close(ours, TF.gaussian_blur(images, [3, 3], [0.8, 0.8]), atol=1e-5, rtol=0)


def test_crop_and_flip_match_torchvision(images: torch.Tensor) -> None:
    box = torch.tensor([[3.0, 5.0, 20.0, 24.0]]).expand(len(images), 4)
    for flip in (False, True):
        ours = crop_and_flip(images, box, torch.full((len(images),), flip))
        reference = TF.resized_crop(images, 3, 5, 20, 24, [32, 32], antialias=False)
        reference = TF.horizontal_flip(reference) if flip else reference
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_whole_image_box_without_flip_is_the_identity(images: torch.Tensor) -> None:
    box = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).expand(len(images), 4)
    torch.testing.assert_close(crop_and_flip(images, box, torch.zeros(len(images), dtype=torch.bool)), images)


# --- the random parameters follow torchvision's distributions -----------------------------------------

def test_crop_boxes_follow_random_resized_crop() -> None:
    ours = sample_crop_boxes(N, 32, PARAMS, Draws(torch.Generator().manual_seed(0)))
    torch.manual_seed(0)
    crop = v2.RandomResizedCrop(32, scale=PARAMS.crop_scale, ratio=PARAMS.crop_ratio)
    blank = torch.zeros(3, 32, 32)
    theirs = torch.tensor([[p["top"], p["left"], p["height"], p["width"]]
                           for p in (crop.make_params([blank]) for _ in range(N))], dtype=torch.float32)
    for name, column in {"area": lambda b: b[:, 2] * b[:, 3], "aspect": lambda b: b[:, 3] / b[:, 2],
                         "top": lambda b: b[:, 0], "left": lambda b: b[:, 1]}.items():
        assert ks_distance(column(ours), column(theirs)) < KS_CRITICAL, name
    assert ((ours[:, 0] + ours[:, 2]) <= 32).all() and ((ours[:, 1] + ours[:, 3]) <= 32).all()
    area = ours[:, 2] * ours[:, 3] / 1024
    assert area.min() >= 0.3 - 0.03 and area.max() <= 1.0


def _changed(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return (before - after).flatten(1).abs().amax(1) > 1e-4


def test_jitter_and_blur_rates_match_the_recipe(images: torch.Tensor) -> None:
    batch = images.repeat(N // len(images) + 1, 1, 1, 1)[:N]
    draws = Draws(torch.Generator().manual_seed(1))
    assert_rate(_changed(batch, color_jitter(batch, PARAMS, draws)).float().mean().item(), PARAMS.jitter_p)
    assert_rate(_changed(batch, gaussian_blur(batch, PARAMS, draws)).float().mean().item(), PARAMS.blur_p)


def test_grayscale_matches_torchvision_at_the_recipes_rate(images: torch.Tensor) -> None:
    params = recipe_params(["gray"])
    batch = images.repeat(N // len(images) + 1, 1, 1, 1)[:N]
    out = random_grayscale(batch, params, Draws(torch.Generator().manual_seed(3)))
    chosen = torch.rand(N, generator=torch.Generator().manual_seed(3)) < GRAY_P  # the draw it made
    assert_rate(chosen.float().mean().item(), GRAY_P)
    torch.testing.assert_close(out[chosen], TF.rgb_to_grayscale(batch[chosen], num_output_channels=3),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(out[~chosen], batch[~chosen])


def test_the_seed_recipe_draws_no_grayscale(cifar_test) -> None:
    """Without "gray" the batched views are those the recipe made before the step existed: no draw is added."""
    images = cifar_test.images[:32]
    seed_params = recipe_params(SEED_AUGMENTATIONS.split(","))
    assert seed_params.gray_p == 0 and "gray" not in recipe_steps(seed_params)
    with_gray = BatchAugmentation(recipe_params([*SEED_AUGMENTATIONS.split(","), "gray"]), seed=0)(images)
    without = BatchAugmentation(seed_params, seed=0)(images)
    assert not torch.equal(with_gray, without)
    generator = torch.Generator().manual_seed(0)
    draws = Draws(generator)
    x = images.float() / 255
    x = crop_and_flip(x, sample_crop_boxes(len(x), 32, seed_params, draws), draws.rand(len(x)) < seed_params.flip_p)
    x = gaussian_blur(color_jitter(x, seed_params, draws), seed_params, draws)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
    torch.testing.assert_close(without, (x - mean) / std)


def test_flip_rate_matches_the_recipe() -> None:
    # an image whose left and right halves differ, and a crop box covering all of it: only the flip changes it
    ramp = torch.linspace(0, 1, 32).expand(N, 3, 32, 32).contiguous()
    params = AugmentationParams(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), jitter_p=0.0, blur_p=0.0)
    out = BatchAugmentation(params, seed=2, normalized=False)((ramp * 255).round().to(torch.uint8))
    flipped = out[:, 0, 0, 0] > out[:, 0, 0, -1]
    assert_rate(flipped.float().mean().item(), PARAMS.flip_p)


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation", "hue"])
def test_jitter_factor_distributions_match_color_jitter(name: str) -> None:
    """One jitter component alone, always applied, on one coloured image: compare output pixel values."""
    only = {key: 0.0 for key in ("brightness", "contrast", "saturation", "hue")}
    only[name] = getattr(PARAMS, name)
    params = AugmentationParams(jitter_p=1.0, **only)
    image = torch.tensor([0.7, 0.4, 0.2]).view(3, 1, 1).expand(3, 2, 2).clone()
    image[:, 0, 0] = torch.tensor([0.1, 0.3, 0.6])  # two colours, so contrast has something to act on
    ours = color_jitter(image.expand(N, 3, 2, 2), params, Draws(torch.Generator().manual_seed(3)))
    torch.manual_seed(3)
    jitter = v2.ColorJitter(**{key: (value if value else None) for key, value in only.items()})
    theirs = torch.stack([jitter(image) for _ in range(N)])
    for channel in range(3):
        for pixel in ((0, 0), (1, 1)):
            # rounded: a value both pipelines hit exactly (a clamped channel) must not split on float noise
            a, b = (t[:, channel, pixel[0], pixel[1]].mul(1e4).round() for t in (ours, theirs))
            assert ks_distance(a, b) < KS_CRITICAL, (name, channel, pixel)


# --- the pipeline as training uses it -------------------------------------------------------------------

def test_views_are_seeded_normalised_and_differ(cifar_test) -> None:
    batch = cifar_test.images[:128]
    first = BatchAugmentation(seed=5)(batch)
    assert first.shape == (128, 3, 32, 32) and first.dtype == torch.float32
    torch.testing.assert_close(first, BatchAugmentation(seed=5)(batch))
    assert not torch.equal(first, BatchAugmentation(seed=6)(batch))
    augment = BatchAugmentation(seed=5)
    assert (augment(batch) - augment(batch)).flatten(1).abs().amax(1).min() > 0.01  # two views always differ


def test_slices_of_a_global_batch_are_the_views_of_the_whole(cifar_test) -> None:
    """Two processes that each augment half of a batch make exactly the views of one process doing all."""
    batch = cifar_test.images[:96]
    whole = BatchAugmentation(seed=7)(batch)
    halves = [BatchAugmentation(seed=7)(batch[i * 48:(i + 1) * 48], offset=i * 48, total=96) for i in (0, 1)]
    torch.testing.assert_close(torch.cat(halves), whole)


def test_distributed_shards_are_disjoint_and_make_the_single_process_views(cifar_test) -> None:
    """Each of 2 processes gets its half of every global batch, with the views one process would make."""
    images = cifar_test.images[:256]
    single = list(DeviceTwoViewLoader(images, 64, PARAMS, seed=3, device="cpu"))
    shards = [list(DeviceTwoViewLoader(images, 32, PARAMS, seed=3, device="cpu", rank=r, world_size=2))
              for r in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == len(single) == 4
    for step, (x1, x2) in enumerate(single):
        torch.testing.assert_close(torch.cat([shards[0][step][0], shards[1][step][0]]), x1)
        torch.testing.assert_close(torch.cat([shards[0][step][1], shards[1][step][1]]), x2)


def test_device_loader_batches_like_a_dataloader(cifar_test) -> None:
    loader = DeviceTwoViewLoader(cifar_test.images, 100, PARAMS, seed=0, device="cpu")
    batches = list(loader)
    assert len(loader) == len(batches) == len(cifar_test) // 100
    assert all(x1.shape == x2.shape == (100, 3, 32, 32) for x1, x2 in batches)


# --- ablations: a recipe with steps left out ------------------------------------------------------------

def test_a_recipe_of_flips_only_returns_the_images_or_their_mirrors(cifar_test) -> None:
    images = cifar_test.images[:256]
    views = BatchAugmentation(recipe_params(["flip"]), seed=0, normalized=False)(images)
    same = (views == images).flatten(1).all(1)
    mirrored = (views == images.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all(), "without crop, jitter and blur a view is the image, maybe mirrored"
    assert 0.3 < mirrored.float().mean() < 0.7


def test_leaving_a_step_out_switches_off_exactly_that_step() -> None:
    full = recipe_params(RECIPE_STEPS, crop_min_scale=0.3, output_size=16)
    assert full == AugmentationParams(output_size=16, gray_p=GRAY_P)
    assert recipe_params(SEED_AUGMENTATIONS.split(",")) == AugmentationParams()
    no_crop = recipe_params(["flip", "jitter", "blur"])
    boxes = sample_crop_boxes(500, 32, no_crop, Draws(torch.Generator().manual_seed(0)))
    assert (boxes == torch.tensor([0.0, 0.0, 32.0, 32.0])).all(), "no crop: every box is the whole image"
    crop_only = recipe_params(["crop"])
    assert (crop_only.flip_p, crop_only.jitter_p, crop_only.blur_p) == (0.0, 0.0, 0.0)
    assert crop_only.crop_scale == PARAMS.crop_scale
    assert set(recipe_steps(full)) == set(RECIPE_STEPS), "the config's step names are the recipe's"
