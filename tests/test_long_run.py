"""What the long CPU run is built from: the warm-up-stable-decay schedule and its branches, stopping at a step,
progressive resizing, the validation split held out of the training split, and random grayscale's place in a
config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from simclr_core.batch_augment import two_view_loader
from simclr_core.config import make_config
from simclr_core.data import ImageSet, balanced_indices, split_off_holdout, training_images
from simclr_core.engine import train_ssl, view_side
from simclr_core.optim import DECAY_SHARE, decay_start, lr_factor
from simclr_core.probe import run_probe
from simclr_core.resume import TrainingStopped
from simclr_core.storage import RunPaths


def test_wsd_is_constant_then_falls_linearly_to_zero_over_the_last_fifth() -> None:
    total = 100
    factors = [lr_factor(step, total, warmup_steps=5, schedule="wsd") for step in range(total)]
    assert factors[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert decay_start(total) == 80 == total - DECAY_SHARE * total
    assert factors[5:80] == [1.0] * 75
    assert factors[80:] == pytest.approx([(total - step) / 20 for step in range(80, total)])
    # a longer run takes the same rates up to the shorter run's decay: the shorter run branches off it
    longer = [lr_factor(step, 400, 5, "wsd") for step in range(80)]
    assert longer == factors[:80]


@pytest.mark.slow
def test_a_branch_off_a_longer_wsd_run_is_the_shorter_run_exactly(cifar_train, cifar_test, tmp_path: Path) -> None:
    """Stop the long run where the short one's decay begins (stop_at_step), copy it, continue it with the short run's
    steps: every loss equals the short run's, trained alone."""
    kwargs = dict(progress=False, train_set=cifar_train, eval_set=cifar_test)
    short = make_config("smoke", data="cifar10", steps=10, lr_schedule="wsd")
    alone = train_ssl(short, str(tmp_path / "alone"), **kwargs)
    trunk = tmp_path / "trunk"
    with pytest.raises(TrainingStopped, match="stopped by --stop-at-step 8 at step 8"):
        train_ssl(make_config("smoke", data="cifar10", steps=40, lr_schedule="wsd"), str(trunk), stop_at_step=8,
                  **kwargs)
    shutil.copytree(trunk, tmp_path / "branch")
    branched = train_ssl(short, str(tmp_path / "branch"), resume=True, **kwargs)
    assert branched["step_loss"] == alone["step_loss"] and branched["finished"]
    with pytest.raises(ValueError, match="already at step 10; give a later step"):
        train_ssl(short, str(tmp_path / "branch"), resume=True, stop_at_step=9, **kwargs)


@pytest.mark.slow
def test_progressive_resizing_switches_at_the_decay_and_resumes_exactly(cifar_train, cifar_test,
                                                                        tmp_path: Path) -> None:
    cfg = make_config("smoke", data="cifar10", steps=10, lr_schedule="wsd", start_resolution=16)
    assert [view_side(cfg, step, 10) for step in (0, 7, 8, 9)] == [16, 16, 32, 32]
    kwargs = dict(progress=False, train_set=cifar_train, eval_set=cifar_test)
    whole = train_ssl(cfg, str(tmp_path / "whole"), **kwargs)
    with pytest.raises(TrainingStopped):
        train_ssl(cfg, str(tmp_path / "split"), stop_at_step=9, **kwargs)  # stopped after the switch
    assert train_ssl(cfg, str(tmp_path / "split"), resume=True, **kwargs)["step_loss"] == whole["step_loss"]
    constant = train_ssl(make_config("smoke", data="cifar10", steps=10, lr_schedule="wsd"), str(tmp_path / "32"),
                         **kwargs)
    assert constant["step_loss"][0] != whole["step_loss"][0], "the first steps saw 16-pixel views"
    assert RunPaths(tmp_path / "whole").checkpoint.is_file()


def test_resized_views_see_the_same_crops(cifar_train: ImageSet) -> None:
    small = make_config("smoke", data="cifar10", train_resolution=16)
    images = cifar_train.subset(torch.arange(64))
    resized = two_view_loader(images, make_config("smoke", data="cifar10"), shuffle=False, seed=0,
                              device=torch.device("cpu"))
    resized.resize(16)
    (a, _), (b, _) = next(iter(resized)), next(iter(two_view_loader(images, small, False, 0, torch.device("cpu"))))
    assert a.shape[-1] == 16 and torch.equal(a, b)


def test_start_resolution_needs_steps_and_the_fast_pipeline() -> None:
    with pytest.raises(ValueError, match="start_resolution needs pipeline='fast' and no time_budget"):
        make_config("quick", data="cifar10", start_resolution=8)
    with pytest.raises(ValueError, match="start_resolution=4 must be 0 \\(off\\) or lie in \\[8, 32\\]"):
        make_config("smoke", data="cifar10", start_resolution=4)


def test_the_holdout_is_balanced_disjoint_and_the_same_for_every_seed(cifar_train: ImageSet) -> None:
    rest, held = split_off_holdout(cifar_train, 100)
    assert len(held) == 100 and len(rest) == len(cifar_train) - 100
    assert held.labels.bincount().tolist() == [10] * 10
    pixels = {tuple(image.flatten().tolist()) for image in held.images}
    assert not pixels & {tuple(image.flatten().tolist()) for image in rest.images}
    again, held_again = split_off_holdout(cifar_train, 100)
    assert torch.equal(held.images, held_again.images) and torch.equal(rest.images, again.images)
    with pytest.raises(ValueError, match="holdout=0 must lie between 1 and"):
        split_off_holdout(cifar_train, 0)


def test_a_run_with_a_holdout_trains_and_is_scored_without_the_test_split(cifar_dir: Path) -> None:
    for seed in (0, 1):
        train, validation = training_images(str(cifar_dir), "data", subset=200, seed=seed, holdout=100)
        assert validation is not None and len(validation) == 100 and len(train) == 200
        fixed = validation.images
    assert torch.equal(fixed, training_images(str(cifar_dir), "data", 0, 0, holdout=100)[1].images)
    assert training_images(str(cifar_dir), "data", 0, 0)[1] is None


def test_balanced_subset_of_the_rest_never_takes_a_held_out_image(cifar_train: ImageSet) -> None:
    rest, held = split_off_holdout(cifar_train, 200)
    chosen = rest.subset(balanced_indices(rest.labels, 300, seed=3))
    assert not {tuple(i.flatten().tolist()) for i in chosen.images} & {tuple(i.flatten().tolist())
                                                                      for i in held.images}


@pytest.mark.slow
def test_the_probe_of_a_run_with_a_holdout_reports_validation_beside_test(cifar_dir: Path, tmp_path: Path) -> None:
    cfg = make_config("smoke", data=str(cifar_dir), epochs=1, holdout=100)
    log = train_ssl(cfg, str(tmp_path), progress=False)
    assert log["evals"][0]["epoch"] == 0
    probed = run_probe(str(tmp_path), progress=False)
    assert probed["validation_images"] == 100 and set(probed["validation"]) == {"simclr", "random"}
    assert probed["train_images"] == 512 and probed["test_images"] == 10_000
