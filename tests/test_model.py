"""The CIFAR stem, the feature and projection sizes, and equivalence with torchvision's ResNet-18."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from simclr_core.model import CifarResNet18, ProjectionHead, SimCLRModel


def test_width_64_is_torchvisions_resnet18_with_the_cifar_stem() -> None:
    reference = resnet18(num_classes=10)
    reference.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    reference.maxpool = nn.Identity()
    reference.fc = nn.Identity()
    ours = CifarResNet18(64)
    ours.load_state_dict(reference.state_dict(), strict=True)  # same names, same shapes
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(ours(x), reference(x))


def test_cifar_stem_keeps_resolution() -> None:
    encoder = CifarResNet18(16)
    assert encoder.conv1.kernel_size == (3, 3) and encoder.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in encoder.modules())
    stem = encoder.relu(encoder.bn1(encoder.conv1(torch.randn(1, 3, 32, 32))))
    assert stem.shape == (1, 16, 32, 32)
    assert encoder.layer4(encoder.layer3(encoder.layer2(encoder.layer1(stem)))).shape == (1, 128, 4, 4)


@pytest.mark.parametrize("width", [8, 16, 64])
def test_feature_and_embedding_sizes(width: int) -> None:
    model = SimCLRModel(width, proj_dim=128)
    x = torch.randn(3, 3, 32, 32)
    assert model.encoder(x).shape == (3, 8 * width)
    z = model(x)
    assert z.shape == (3, 128)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))


def test_projection_head_layers() -> None:
    head = ProjectionHead(512, 128)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 512), (512, 128)]
    assert any(isinstance(m, nn.ReLU) for m in head.modules())
