"""Learning from few labels: labelled subsets, supervised runs, fine-tuning a SimCLR encoder, reuse, the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from simclr_core import data, probe, supervised
from simclr_core.cli import _overrides, build_parser
from simclr_core.config import make_config
from simclr_core.data import ImageSet, labelled_indices
from simclr_core.model import SimCLRModel
from simclr_core.probe import budget_weight_decay, label_efficiency, run_probe
from simclr_core.runtime import seed_everything
from simclr_core.storage import RunPaths, save_checkpoint
from simclr_core.supervised import SupervisedConfig, initial_classifier, train_supervised


def _labels_only(per_class: list[int]) -> ImageSet:
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(per_class)])
    classes = [f"c{c}" for c in range(len(per_class))]
    return ImageSet(torch.zeros(len(labels), 3, 4, 4, dtype=torch.uint8), labels, classes)


def test_labelled_subsets_are_balanced_seeded_and_nested() -> None:
    images = _labels_only([30, 50, 40])
    five = labelled_indices(images, 5, seed=1)
    assert images.labels[five].bincount().tolist() == [5, 5, 5] and len(five.unique()) == 15
    assert torch.equal(five, labelled_indices(images, 5, seed=1))
    assert not torch.equal(five, labelled_indices(images, 5, seed=2))
    assert set(labelled_indices(images, 2, seed=1).tolist()) < set(five.tolist())  # more labels add images


def test_labelled_subset_names_the_classes_that_are_too_small() -> None:
    with pytest.raises(ValueError, match=r"c0 \(30\).*at most 30 per class"):
        labelled_indices(_labels_only([30, 50, 40]), 35, seed=0)
    with pytest.raises(ValueError, match="at least 1"):
        labelled_indices(_labels_only([3, 3]), 0, seed=0)


def test_label_efficiency_gives_one_accuracy_per_subset() -> None:
    images = _labels_only([40] * 4)
    g = torch.Generator().manual_seed(0)
    features = 6 * torch.eye(4)[images.labels] + torch.randn(160, 4, generator=g)
    accuracies = label_efficiency(features, images, features, images.labels, {1: 3, 10: 1}, steps=20)
    assert [len(accuracies[1]), len(accuracies[10])] == [3, 1]
    assert accuracies[10][0] > 0.9  # separable classes, ten labels each
    assert budget_weight_decay(1e-4, 50_000, 50_000) == 1e-4 and budget_weight_decay(1e-4, 50_000, 10) == 0.5


def test_probe_with_a_label_budget_writes_its_own_log(pretrained_run: Path, cifar_train: ImageSet,
                                                      cifar_test: ImageSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe, "load_split", lambda data, split, *args: cifar_train if split == "train" else cifar_test)
    monkeypatch.setattr(data, "load_split", lambda data, split, *args: cifar_train if split == "train" else cifar_test)
    log = run_probe(str(pretrained_run), progress=False, labels_per_class=5, label_seed=1)
    assert (log["train_images"], log["labels_per_class"], log["label_seed"]) == (50, 5, 1)
    assert (pretrained_run / "logs" / "probe_results_5_per_class_seed1.json").is_file()
    assert not RunPaths(pretrained_run).probe_log.exists()  # the full probe's log is left alone


@pytest.fixture
def pretrained_run(tmp_path: Path, cifar_dir: Path) -> Path:
    """A SimCLR run folder whose weights (seed 7) differ from any supervised initialisation (seed 0)."""
    cfg = make_config("smoke", data=str(cifar_dir), seed=7)
    seed_everything(cfg.seed)
    run = tmp_path / "simclr"
    save_checkpoint(RunPaths(run).checkpoint, {"config": cfg.to_dict(), "model": SimCLRModel(cfg.width).state_dict()})
    return run


def _tiny(cifar_dir: Path, **changes: object) -> SupervisedConfig:
    return SupervisedConfig(**{"data": str(cifar_dir), "labels_per_class": 38, "width": 8, "steps": 60,
                               "batch_size": 64, "lr": 3e-3, **changes})


@pytest.mark.slow
def test_a_short_supervised_run_learns(tmp_path: Path, cifar_dir: Path, cifar_train: ImageSet,
                                       cifar_test: ImageSet) -> None:
    log = train_supervised(_tiny(cifar_dir), str(tmp_path), False, cifar_train, cifar_test)
    # 60 steps of width 8 on 380 images reached 0.25-0.32 on the 256 held-out images over seeds 0-3 (chance: 0.1)
    assert log["test_accuracy"] > 0.18
    assert log["finished"] and len(log["step_loss"]) == 60 and log["train_images"] == 380
    assert sum(log["step_loss"][-10:]) < sum(log["step_loss"][:10])
    assert RunPaths(tmp_path).checkpoint.is_file() and RunPaths(tmp_path).supervised_log.is_file()


def test_fine_tuning_starts_from_the_pretrained_encoder(pretrained_run: Path, cifar_dir: Path) -> None:
    pretrained = torch.load(RunPaths(pretrained_run).checkpoint, weights_only=True)["model"]
    tuned, encoder_lr = initial_classifier(_tiny(cifar_dir, init=str(pretrained_run)), num_classes=10)
    scratch, scratch_lr = initial_classifier(_tiny(cifar_dir), num_classes=10)
    for name, value in tuned.encoder.state_dict().items():
        assert torch.equal(value, pretrained[f"encoder.{name}"]), f"encoder.{name} is not the checkpoint's"
    assert not torch.equal(tuned.encoder.conv1.weight, scratch.encoder.conv1.weight)
    assert torch.equal(tuned.classifier.weight, scratch.classifier.weight)  # a fresh layer, seeded alike
    assert encoder_lr == pytest.approx(0.1 * scratch_lr)
    with pytest.raises(ValueError, match="width 8.*width=16"):
        _tiny(cifar_dir, init=str(pretrained_run), width=16).validate()


@pytest.mark.slow
def test_a_time_budget_plans_the_steps_and_keeps_to_it(tmp_path: Path, cifar_dir: Path, cifar_train: ImageSet,
                                                       cifar_test: ImageSet) -> None:
    log = train_supervised(_tiny(cifar_dir, time_budget=15.0), str(tmp_path), False, cifar_train, cifar_test)
    budget = log["budget"]
    assert budget["planned_steps"] >= supervised.MIN_BUDGET_STEPS
    # planned from calibration, planned again from the first tenth of the real steps (unless the run was cut short:
    # budget.py's rules, tested with a fake clock in test_budget.py)
    assert budget["replan_at_step"] == max(supervised.MIN_BUDGET_STEPS, round(0.1 * budget["planned_steps"]))
    followed = budget.get("stopped_early_at_step", budget.get("replanned_steps"))
    assert len(log["step_loss"]) == log["total_steps"] == followed


def test_a_budget_too_short_for_the_run_is_refused_with_the_seconds_it_needs(tmp_path: Path, cifar_dir: Path,
                                                                              cifar_train: ImageSet,
                                                                              cifar_test: ImageSet) -> None:
    with pytest.raises(ValueError, match=r"time budget of 0.2 s leaves room for only \d+ steps of this supervised "
                                         r"run.*fewer than the 20 it needs: give it at least \d+ s"):
        train_supervised(_tiny(cifar_dir, time_budget=0.2), str(tmp_path), False, cifar_train, cifar_test)
    assert not RunPaths(tmp_path).supervised_log.exists()


def test_validation_images_are_held_out_of_every_labelled_subset(cifar_train: ImageSet) -> None:
    cfg = SupervisedConfig(labels_per_class=20, validation_per_class=10)
    pixels = {tuple(image.flatten().tolist()) for image in cifar_train.images}
    assert len(pixels) == len(cifar_train)  # every image is distinct, so sets of pixels identify images
    validations = []
    for seed in (0, 1):
        labelled, validation = supervised.split_labelled(cifar_train, dataclasses.replace(cfg, label_seed=seed))
        assert validation is not None and validation.labels.bincount().tolist() == [10] * 10
        assert labelled.labels.bincount().tolist() == [20] * 10
        held_out = {tuple(image.flatten().tolist()) for image in validation.images}
        assert not held_out & {tuple(image.flatten().tolist()) for image in labelled.images}
        validations.append(held_out)
    assert validations[0] == validations[1]  # the same validation images, whichever labels are drawn


def test_lp_ft_starts_from_the_probe_and_trains_the_whole_network(pretrained_run: Path, cifar_dir: Path,
                                                                  cifar_train: ImageSet) -> None:
    cfg = _tiny(cifar_dir, init=str(pretrained_run), head="probe", labels_per_class=10, encoder_lr_scale=1.0)
    labelled = cifar_train.subset(labelled_indices(cifar_train, 10, 0))
    model, encoder_lr = initial_classifier(cfg, 10, labelled, len(cifar_train))
    assert encoder_lr == cfg.lr
    assert all(p.requires_grad for p in model.parameters()) and model.training  # nothing is left frozen
    features = probe.extract_features(model.encoder, labelled)
    direct = probe.train_linear_probe(features, labelled.labels, features, labelled.labels,
                                      weight_decay=budget_weight_decay(1e-4, len(cifar_train), len(labelled)))
    with torch.no_grad():
        head_accuracy = (model.classifier(features).argmax(1) == labelled.labels).float().mean().item()
    assert head_accuracy == pytest.approx(direct.train_accuracy, abs=1 / len(labelled))  # the probe, folded in
    with pytest.raises(ValueError, match="head='probe' fits the linear probe on a pre-trained encoder"):
        _tiny(cifar_dir, head="probe").validate()


def test_command_line_builds_the_config() -> None:
    args = build_parser().parse_args(["supervised", "--labels-per-class", "5", "--init", "runs/book", "--width", "32",
                                      "--time-budget", "40", "--out", "runs/payoff"])
    cfg = SupervisedConfig(**_overrides(args, SupervisedConfig))
    assert (cfg.labels_per_class, cfg.init, cfg.width, cfg.time_budget, cfg.lr) == (5, "runs/book", 32, 40.0, 1e-3)
    probe = build_parser().parse_args(["probe", "--out", "runs/book", "--labels-per-class", "25", "--label-seed", "2"])
    assert (probe.labels_per_class, probe.label_seed) == (25, 2)
