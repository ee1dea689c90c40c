"""The engine's pieces: what train_ssl does with its config and data before the first step (the crop scale
reaches both augmentation pipelines, a set smaller than one batch is refused), the step itself, the pending
losses and the position a checkpoint stores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.transforms import v2

from simclr_core import distributed
from simclr_core.batch_augment import DeviceTwoViewLoader, Draws, sample_crop_boxes, two_view_loader
from simclr_core.config import make_config
from simclr_core.data import ImageSet
from simclr_core.engine import PendingLosses, Position, train_ssl, train_step
from simclr_core.loss import nt_xent
from simclr_core.model import SimCLRModel
from simclr_core.storage import RunPaths, load_checkpoint


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


def test_train_step_is_one_optimizer_step_on_the_nt_xent_of_both_views() -> None:
    """The step the book shows: its loss is NT-Xent of the two views' embeddings, and its update is the
    optimizer's step on that loss's gradient, nothing else."""
    cfg = make_config("smoke", data="cifar10")
    x1, x2 = torch.randn(2, 16, 3, 16, 16).unbind()
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(SimCLRModel(cfg.width, cfg.proj_dim))
    stepped, by_hand = models
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]  # the update is the gradient itself
    loss = train_step(stepped, optimizers[0], x1, x2, lambda a, b: nt_xent(a, b, 0.5), torch.device("cpu"))
    joint = by_hand(torch.cat([x1, x2]).contiguous(memory_format=torch.channels_last))
    expected = nt_xent(joint[:16], joint[16:], 0.5)  # one pass, as the step does it
    optimizers[1].zero_grad()
    expected.backward()
    optimizers[1].step()
    assert not loss.requires_grad and torch.allclose(loss, expected.detach())
    for (name, a), b in zip(stepped.state_dict().items(), by_hand.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_pending_losses_are_read_every_k_steps_and_a_non_finite_one_is_named(tmp_path: Path) -> None:
    pending = PendingLosses(every=3, world=distributed.SINGLE_PROCESS)
    pending.add(torch.tensor(2.0))
    pending.add(torch.tensor(1.5))
    assert not pending.due()
    pending.add(torch.tensor(1.0))
    assert pending.due() and pending.read(step=3, epoch=1, checkpoint=tmp_path / "c.pt") == [2.0, 1.5, 1.0]
    assert not pending.due()
    for value in (0.9, float("inf"), 0.8):
        pending.add(torch.tensor(value))
    with pytest.raises(FloatingPointError, match=r"became inf at step 5 \(epoch 2\); the last good checkpoint is "):
        pending.read(step=6, epoch=2, checkpoint=tmp_path / "c.pt")


@pytest.mark.slow
def test_a_checkpoint_stores_the_position_a_resumed_run_starts_from(cifar_train, cifar_test, tmp_path: Path) -> None:
    cfg = make_config("smoke", data="cifar10", steps=9)  # 1.5 epochs of 6 steps: saved at the end, mid-epoch
    train_ssl(cfg, str(tmp_path), progress=False, train_set=cifar_train, eval_set=cifar_test)
    saved = load_checkpoint(RunPaths(tmp_path).checkpoint)
    assert Position.of_checkpoint(saved) == Position(epoch=2, step_in_epoch=0, epoch_loss=0.0)
