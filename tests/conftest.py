"""Shared fixtures: the real CIFAR-10 copy (unpacked on first use) and small subsets of it."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from simclr_core.data import ImageSet, load_split

ROOT = Path(__file__).resolve().parent.parent
LOCAL_COPY = ROOT / "data" / "cifar10-jpeg"
SHARED_TARBALL = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def cifar_copy() -> Path:
    """The ImageFolder copy of CIFAR-10: $SIMCLR_DATA, else data/cifar10-jpeg, unpacked from ../shared."""
    if os.environ.get("SIMCLR_DATA", "cifar10") != "cifar10":
        return Path(os.environ["SIMCLR_DATA"])
    if not LOCAL_COPY.is_dir() and SHARED_TARBALL.is_file():
        with tarfile.open(SHARED_TARBALL) as tar:
            tar.extractall(LOCAL_COPY.parent, filter="data")
    return LOCAL_COPY


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    path = cifar_copy()
    if not (path / "train").is_dir():
        pytest.skip(f"no CIFAR-10 copy at {path}: set SIMCLR_DATA or unpack ../shared/data/cifar10-jpeg.tar.gz")
    return path


@pytest.fixture(scope="session")
def cifar_train(cifar_dir: Path) -> ImageSet:
    return load_split(str(cifar_dir), "train", subset=384, seed=0)


@pytest.fixture(scope="session")
def cifar_test(cifar_dir: Path) -> ImageSet:
    return load_split(str(cifar_dir), "test", subset=256, seed=0)
