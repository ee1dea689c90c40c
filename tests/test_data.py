"""Loading the real CIFAR-10 copy and ImageFolder trees, and the errors for bad layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr_core.config import make_config
from simclr_core.data import DataNotFoundError, balanced_indices, load_split


def test_real_copy_loads_as_uint8_tensors(cifar_dir: Path) -> None:
    test = load_split(str(cifar_dir), "test", subset=100, seed=0)
    assert test.images.shape == (100, 3, 32, 32) and test.images.dtype == torch.uint8
    assert test.classes[:3] == ["airplane", "automobile", "bird"] and len(test.classes) == 10
    assert test.labels.bincount().tolist() == [10] * 10
    assert test.images.float().std() > 30, "real photographs, not blank images"


def test_balanced_indices_are_balanced_seeded_and_unique() -> None:
    labels = torch.arange(10).repeat_interleave(50)
    picked = balanced_indices(labels, 95, seed=3)
    assert len(picked.unique()) == 95
    counts = labels[picked].bincount()
    assert counts.max() - counts.min() <= 1
    assert torch.equal(picked, balanced_indices(labels, 95, seed=3))
    assert not torch.equal(picked, balanced_indices(labels, 95, seed=4))
    assert torch.equal(balanced_indices(labels, 0, seed=0), torch.arange(500))


def _write_tree(root: Path, splits: dict[str, list[str]], size: int = 32, mode: str = "RGB") -> None:
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).convert(mode).save(root / split / name / f"{i}.png")


def test_image_folder_converts_modes_and_resizes(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": ["a", "b"], "test": ["a", "b"]}, size=40, mode="L")
    with pytest.warns(UserWarning, match="6 of 6 images .* were resized"):  # said once, not per image
        split = load_split(str(tmp_path), "train")
    assert split.images.shape == (6, 3, 32, 32)
    assert split.labels.tolist() == [0, 0, 0, 1, 1, 1]


def test_missing_split_folder_says_how_to_lay_it_out(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": ["a"]})
    with pytest.raises(DataNotFoundError, match="no test/ folder"):
        load_split(str(tmp_path), "test")


def test_empty_dataset_folders_say_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DataNotFoundError, match="holds no class folders"):
        load_split(str(tmp_path), "train")
    (tmp_path / "train" / "cats").mkdir()
    (tmp_path / "train" / "cats" / "notes.txt").write_text("no images here")
    with pytest.raises(DataNotFoundError, match="no image files"):
        load_split(str(tmp_path), "train")


def test_classes_that_differ_between_splits_are_named(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": ["a", "b"], "test": ["a", "c"]})
    with pytest.raises(DataNotFoundError, match="differ"):
        load_split(str(tmp_path), "train")


def test_file_that_is_not_an_image_is_named(tmp_path: Path) -> None:
    _write_tree(tmp_path, {"train": ["a"], "test": ["a"]})
    (tmp_path / "train" / "a" / "broken.jpg").write_text("not an image")
    with pytest.raises(ValueError, match="broken.jpg"):
        load_split(str(tmp_path), "train")


def test_cifar10_offline_error_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataNotFoundError, match="SIMCLR_DATA"):
        load_split("cifar10", "train", data_root=str(tmp_path))


def test_unknown_dataset_is_rejected_before_work() -> None:
    with pytest.raises(ValueError, match="neither 'cifar10' nor an existing folder"):
        make_config("quick", data="/no/such/folder")
