"""Each of chapter 8's mistakes differs from the correct code in exactly the one way its name says."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from simclr_core import distributed, pitfalls
from simclr_core.config import make_config
from simclr_core.data import ImageSet
from simclr_core.engine import objective
from simclr_core.loss import nt_xent, simclr_logits_targets
from simclr_core.model import CifarResNet18, SimCLRModel
from simclr_core.probe import extract_features


def _embeddings(b: int = 6, d: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return F.normalize(torch.randn(b, d, generator=g), dim=1), F.normalize(torch.randn(b, d, generator=g), dim=1)


def test_unmasked_logits_keep_the_diagonal_and_nothing_else_changes() -> None:
    z1, z2 = _embeddings()
    right, targets = simclr_logits_targets(z1, z2, 0.5)
    wrong, wrong_targets = pitfalls.logits_targets_unmasked(z1, z2, 0.5)
    diagonal = torch.eye(len(right), dtype=torch.bool)
    assert torch.equal(targets, wrong_targets)
    assert torch.allclose(wrong[~diagonal], right[~diagonal])
    assert torch.isinf(right[diagonal]).all() and torch.allclose(wrong[diagonal], torch.full((12,), 2.0))


def test_off_by_one_targets_point_at_the_next_image_and_nothing_else_changes() -> None:
    z1, z2 = _embeddings()
    right, targets = simclr_logits_targets(z1, z2, 0.5)
    wrong, wrong_targets = pitfalls.logits_targets_off_by_one(z1, z2, 0.5)
    assert torch.equal(wrong, right)
    assert torch.equal(wrong_targets, (targets + 1) % len(targets))


def test_the_unnormalised_model_is_the_model_without_its_last_normalize() -> None:
    cfg = make_config("smoke", data="cifar10")
    torch.manual_seed(0)
    unnormalised = pitfalls.build_unnormalised(cfg, torch.device("cpu")).eval()
    right = SimCLRModel(cfg.width, cfg.proj_dim).eval()
    right.load_state_dict(unnormalised.state_dict())
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        z = unnormalised(x)
        assert torch.allclose(F.normalize(z, dim=1), right(x), atol=1e-6)
    assert not torch.allclose(z.norm(dim=1), torch.ones(4))


def test_the_local_loss_never_gathers_the_other_processes_embeddings() -> None:
    cfg = make_config("smoke", data="cifar10", temperature=0.5)
    z1, z2 = _embeddings()
    one = distributed.SINGLE_PROCESS
    assert torch.allclose(pitfalls.local_loss(cfg, one)(z1, z2), objective(cfg, one)(z1, z2))
    # as process 1 of 2 it computes the same loss of its own shard, with no process group to talk to; the correct
    # objective would gather from process 0 (tests/test_distributed.py checks that one against one process)
    second_of_two = distributed.Distributed(rank=1, world_size=2)
    assert torch.allclose(pitfalls.local_loss(cfg, second_of_two)(z1, z2), nt_xent(z1, z2, 0.5))


def _images(n: int = 64) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 4,
                    ["a", "b", "c", "d"])


def test_train_mode_extraction_uses_batch_statistics_and_leaves_the_encoder_alone() -> None:
    torch.manual_seed(0)
    encoder = CifarResNet18(8)
    with torch.no_grad():  # running statistics far from any batch's
        for module in encoder.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.fill_(0.5)
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    images = _images()
    wrong = pitfalls.extract_features_in_train_mode(encoder, images, batch_size=32)
    assert all(torch.equal(value, before[name]) for name, value in encoder.state_dict().items())
    right = extract_features(encoder, images, batch_size=32)
    assert not torch.allclose(wrong, right, atol=1e-3)
    half = pitfalls.extract_features_in_train_mode(encoder, images.subset(torch.arange(32)), batch_size=32)
    assert torch.allclose(half, wrong[:32], atol=1e-5)  # the same batches, the same statistics: the one change


@pytest.mark.parametrize("trainable", [False, True])
@pytest.mark.slow
def test_a_probe_with_a_trainable_backbone_changes_the_encoder(trainable: bool) -> None:
    torch.manual_seed(0)
    encoder = CifarResNet18(8)
    before = {name: value.clone() for name, value in encoder.state_dict().items()}
    images = _images()
    accuracy, trained = pitfalls.minibatch_probe(encoder, images, images, epochs=1, batch_size=32,
                                                 trainable_backbone=trainable)
    assert 0 <= accuracy <= 1
    assert all(torch.equal(value, before[name]) for name, value in encoder.state_dict().items())  # the caller's
    moved = [name for name, value in trained.state_dict().items() if not torch.equal(value.cpu(), before[name])]
    assert bool(moved) is trainable  # frozen: not even BatchNorm statistics move; trainable: the weights do


def test_the_imagenet_stem_changes_only_the_first_convolution_and_adds_a_max_pool() -> None:
    cifar, imagenet = CifarResNet18(8), CifarResNet18(8, stem="imagenet")
    shapes = {name: value.shape for name, value in cifar.state_dict().items()}
    other = {name: value.shape for name, value in imagenet.state_dict().items()}
    assert shapes.keys() == other.keys()
    assert [name for name in shapes if shapes[name] != other[name]] == ["conv1.weight"]
    assert (imagenet.conv1.kernel_size, imagenet.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(imagenet.maxpool, torch.nn.MaxPool2d) and isinstance(cifar.maxpool, torch.nn.Identity)
    with torch.no_grad():
        assert cifar.layer1(cifar.maxpool(cifar.conv1(torch.zeros(1, 3, 32, 32)))).shape[-1] == 32
        assert imagenet.layer1(imagenet.maxpool(imagenet.conv1(torch.zeros(1, 3, 32, 32)))).shape[-1] == 8
