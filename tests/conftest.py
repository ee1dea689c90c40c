"""Shared fixtures: the real CIFAR-10 copy (unpacked on first use) and small subsets of it; the rule that
a missing prerequisite skips a test on a contributor's machine but fails it in CI; pyproject.toml."""

from __future__ import annotations

import os
import sys
import tarfile
from pathlib import Path
from typing import Any, NoReturn

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI (the test extra installs it there)
    import tomli as tomllib

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


def skip_unless_ci(reason: str) -> NoReturn:
    """Skip for want of something only CI is sure to have; where the CI environment variable is set, fail
    instead, so that a run which skipped what it should have tested cannot pass."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(autouse=True, scope="session")
def _features_cache_of_the_tests(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The machine-wide features cache (probe.shared_cache) in a folder of the test session's, not ~/.cache."""
    os.environ["SIMCLR_CACHE"] = str(tmp_path_factory.mktemp("features-cache"))


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    path = cifar_copy()
    if not (path / "train").is_dir():
        skip_unless_ci(f"no CIFAR-10 copy at {path}: set SIMCLR_DATA or unpack ../shared/data/cifar10-jpeg.tar.gz")
    return path


@pytest.fixture(scope="session")
def cifar_train(cifar_dir: Path) -> ImageSet:
    return load_split(str(cifar_dir), "train", subset=384, seed=0)


@pytest.fixture(scope="session")
def cifar_test(cifar_dir: Path) -> ImageSet:
    return load_split(str(cifar_dir), "test", subset=256, seed=0)
