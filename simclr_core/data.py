"""Images in memory: CIFAR-10 (torchvision) or any ImageFolder tree, decoded once into uint8 tensors.

50,000 CIFAR images are 150 MB as uint8, so we decode them once and index a tensor from then on: no
per-image file or PIL work in the training loop. A dataset is either the string "cifar10" (downloaded by
torchvision into `data_root` when missing) or a folder with `train/` and `test/`, each holding one
sub-folder per class, as `torchvision.datasets.ImageFolder` reads it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .config import ENVIRONMENT

IMAGE_SIZE = 32


class DataNotFoundError(FileNotFoundError):
    """The dataset is not where the config points, and could not be fetched."""


@dataclass
class ImageSet(Dataset):
    """A split held in memory: images (N, 3, 32, 32) uint8, labels (N,) int64, and the class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def subset(self, indices: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[indices], self.labels[indices], self.classes)


def balanced_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """`n` indices drawn at random (seeded) with every class as equally represented as n allows."""
    if n <= 0 or n >= len(labels):
        return torch.arange(len(labels))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator)
    # rank of each shuffled index within its class: taking ranks 0, 1, 2, ... round-robins the classes
    shuffled = labels[order]
    rank = torch.zeros_like(shuffled)
    for c in shuffled.unique():
        members = shuffled == c
        rank[members] = torch.arange(int(members.sum()))
    by_rank = torch.argsort(rank * (len(labels) + 1) + torch.arange(len(labels)))
    return order[by_rank[:n]].sort().values


def labelled_indices(images: ImageSet, per_class: int, seed: int) -> torch.Tensor:
    """Indices of `per_class` images of every class, drawn at random (seeded): a labelled budget.

    Budgets drawn with the same seed are nested (the 5-per-class subset contains the 1-per-class one), so a
    curve over budgets adds labels rather than swapping images; another seed draws another subset.
    """
    if per_class < 1:
        raise ValueError(f"labels per class must be at least 1, not {per_class}")
    counts = images.labels.bincount(minlength=len(images.classes))
    short = [f"{images.classes[c]} ({int(n)})" for c, n in enumerate(counts) if n < per_class]
    if short:
        raise ValueError(f"{per_class} labelled images per class asked for, but these classes have fewer: "
                         f"{', '.join(short)}; ask for at most {int(counts.min())} per class or load more images")
    return balanced_indices(images.labels, per_class * len(images.classes), seed)


HOLDOUT_SEED = 0  # the validation split is the same images whatever the run's seed: runs are compared on it


def split_off_holdout(images: ImageSet, holdout: int) -> tuple[ImageSet, ImageSet]:
    """(the rest, `holdout` class-balanced images drawn with `HOLDOUT_SEED`): a validation split carved out of a
    training split, so that choices are made without looking at the test images."""
    if not 0 < holdout < len(images):
        raise ValueError(f"holdout={holdout} must lie between 1 and the {len(images)} images of the split")
    held = balanced_indices(images.labels, holdout, HOLDOUT_SEED)
    rest = torch.ones(len(images), dtype=torch.bool)
    rest[held] = False
    return images.subset(rest.nonzero().squeeze(1)), images.subset(held)


def training_images(data: str, data_root: str, subset: int, seed: int,
                    holdout: int = 0) -> tuple[ImageSet, ImageSet | None]:
    """The images a run trains on, a class-balanced `subset` (0: all) of the training split, and with a `holdout`
    the validation split it is scored on instead of the test split (without one, None). The holdout is drawn
    from the whole split first, so it is the same images whatever the subset or the seed."""
    if not holdout:
        return load_split(data, "train", data_root, subset, seed), None
    rest, validation = split_off_holdout(load_split(data, "train", data_root), holdout)
    return rest.subset(balanced_indices(rest.labels, subset, seed)), validation


def load_split(data: str, split: str, data_root: str = "data", subset: int = 0, seed: int = 0) -> ImageSet:
    """The `split` ("train" or "test") of `data`, optionally a class-balanced subset of `subset` images."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    if data == "cifar10":
        return _load_cifar10(split, data_root, subset, seed)
    return _load_image_folder(Path(data), split, subset, seed)


CIFAR10_SPLIT_SIZES = {"train": 50_000, "test": 10_000}


def split_size(data: str, split: str) -> int:
    """How many images the split holds, without decoding them (for estimates before loading)."""
    if data == "cifar10":
        return CIFAR10_SPLIT_SIZES[split]
    return len(_scan_split(_split_dir(Path(data), split))[0])


CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"  # what torchvision downloads, and unpacks instead when it is there
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def _load_cifar10(split: str, data_root: str, subset: int, seed: int) -> ImageSet:
    from torchvision.datasets import CIFAR10

    try:
        dataset = CIFAR10(root=data_root, train=(split == "train"), download=True)
    except Exception as error:  # offline, proxy, disk full: all end the same way for the user
        raise DataNotFoundError(
            f"CIFAR-10 is not in {os.path.abspath(data_root)!r} and could not be downloaded ({error}); "
            f"go online once, copy {CIFAR10_ARCHIVE} (from {CIFAR10_URL}) into that folder, or point the "
            f"project at a local copy laid out as train/ and test/ class folders with --data PATH or "
            f"{ENVIRONMENT['data']}=PATH"
        ) from error
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    keep = balanced_indices(labels, subset, seed)
    images = torch.from_numpy(dataset.data[keep.numpy()]).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, labels[keep], list(dataset.classes))


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


def _scan_split(split_dir: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
    if not classes:
        raise DataNotFoundError(f"{split_dir} holds no class folders: put each class's images in "
                                f"{split_dir}/<class name>/")
    paths, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((split_dir / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(path)
                labels.append(label)
    if not paths:
        raise DataNotFoundError(f"{split_dir} has class folders {classes} but no image files in them")
    return paths, labels, classes


def _split_dir(root: Path, split: str) -> Path:
    """`root`/`split`, or an error that says how to lay the folder out (or which folder to pass instead)."""
    split_dir = root / split
    if not split_dir.is_dir():
        if root.name in ("train", "test") and (root.parent / split).is_dir():
            raise DataNotFoundError(f"dataset folder {root} is itself a split; pass the folder that holds "
                                    f"train/ and test/: --data {root.parent}")
        raise DataNotFoundError(f"dataset folder {root} has no {split}/ folder: lay it out as "
                                f"{root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg")
    return split_dir


def _load_image_folder(root: Path, split: str, subset: int, seed: int) -> ImageSet:
    split_dir = _split_dir(root, split)
    paths, labels, classes = _scan_split(split_dir)
    other = root / ("test" if split == "train" else "train")
    if other.is_dir():
        other_classes = sorted(d.name for d in other.iterdir() if d.is_dir())
        if other_classes != classes:
            raise DataNotFoundError(f"the class folders of {split_dir} {classes} differ from those of "
                                    f"{other} {other_classes}: both splits need the same classes")
    label_tensor = torch.tensor(labels, dtype=torch.int64)
    keep = balanced_indices(label_tensor, subset, seed)
    decoded = [_decode(paths[i]) for i in keep.tolist()]
    resized = sum(was_resized for _, was_resized in decoded)
    if resized:
        warnings.warn(f"{resized} of {len(decoded)} images in {split_dir} were not {IMAGE_SIZE}x{IMAGE_SIZE} and "
                      f"were resized to it", stacklevel=3)
    images = np.stack([pixels for pixels, _ in decoded])
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), label_tensor[keep], classes)


def _decode(path: Path) -> tuple[np.ndarray, bool]:
    """One image as (32, 32, 3) uint8 RGB (other modes are converted), and whether it had to be resized."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            resized = image.size != (IMAGE_SIZE, IMAGE_SIZE)
            if resized:
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC)
            return np.asarray(image, dtype=np.uint8), resized
    except OSError as error:
        raise ValueError(f"cannot read image {path} ({error}): remove or replace the file") from error
