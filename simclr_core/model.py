"""The encoder f (a CIFAR ResNet-18) and the projection head g of SimCLR.

torchvision's ResNet-18 is built for 224x224 ImageNet images: a 7x7 stride-2 stem and a max-pool shrink
a 32x32 CIFAR image to 8x8 before the first residual block. The CIFAR variant keeps the resolution with a
3x3 stride-1 stem and no max-pool. We assemble the network from torchvision's own `BasicBlock` so that
at width 64 it is torchvision's `resnet18` with that stem, parameter for parameter (a test checks that
its state dict loads into ours), and a `width` knob lets a CPU train a narrow copy in minutes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from .config import Config
from .knobs import knob_fields
from .storage import load_checkpoint

HEADS, STEMS = (knob_fields(Config)[name].metadata["choices"] for name in ("head", "stem"))
# Devices whose convolutions run faster on channels_last tensors: 18% faster steps measured on a CPU (README)
CHANNELS_LAST_DEVICES = ("cpu", "cuda")


class CifarResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs; `forward` returns the pooled features h = f(x), 8 * width wide.

    `stem="imagenet"` gives it torchvision's ImageNet stem instead (7x7 stride-2 convolution, then a 3x3 stride-2
    max-pool): the classic mistake on CIFAR (bench/pretraining.py measures it), which shrinks a 32x32 image to
    8x8 at once.
    """

    def __init__(self, width: int = 64, stem: str = "cifar"):
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r}: use one of {', '.join(STEMS)}")
        self.feature_dim = 8 * width
        imagenet = stem == "imagenet"
        self.conv1 = nn.Conv2d(3, width, kernel_size=7 if imagenet else 3, stride=2 if imagenet else 1,
                               padding=3 if imagenet else 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if imagenet else nn.Identity()
        self._in_channels = width
        self.layer1 = self._make_layer(width, stride=1)
        self.layer2 = self._make_layer(2 * width, stride=2)
        self.layer3 = self._make_layer(4 * width, stride=2)
        self.layer4 = self._make_layer(8 * width, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, channels: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._in_channels != channels:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        blocks = [BasicBlock(self._in_channels, channels, stride, downsample), BasicBlock(channels, channels)]
        self._in_channels = channels
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 32, 32) -> (B, 8 * width)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class ProjectionHead(nn.Module):
    """g: the 2-layer MLP (d -> d -> 128) whose output the loss sees; the probe uses h, before g."""

    def __init__(self, in_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def projection_head(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """g as `kind` says: "mlp" (SimCLR's, the default), "linear" (one layer d -> out_dim) or "none" (the loss sees
    h itself): the paper's head ablation (bench/pretraining.py's heads)."""
    if kind not in HEADS:
        raise ValueError(f"head={kind!r}: use one of {', '.join(HEADS)}")
    if kind == "mlp":
        return ProjectionHead(in_dim, out_dim)
    return nn.Linear(in_dim, out_dim) if kind == "linear" else nn.Identity()


class SimCLRModel(nn.Module):
    """x -> z = normalize(g(f(x))): unit-length embeddings, so z_i . z_j is a cosine similarity."""

    def __init__(self, width: int = 64, proj_dim: int = 128, head: str = "mlp", stem: str = "cifar"):
        super().__init__()
        self.encoder = CifarResNet18(width, stem)
        self.head = projection_head(head, self.encoder.feature_dim, proj_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.encoder(x)), dim=1)


def embed_pairs(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor, device: torch.device,
                bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """z for both views, in the layout the device's convolutions prefer; with `bf16` the network runs in
    bfloat16 (autocast) while the loss stays in float32."""
    x1, x2 = (x.to(device, non_blocking=True).contiguous(memory_format=memory_format(device)) for x in (x1, x2))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        z = model(torch.cat([x1, x2]))  # one pass: both views share the BatchNorm statistics
    return z[:len(x1)].float(), z[len(x1):].float()


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout the model and its inputs use on `device`."""
    return torch.channels_last if device.type in CHANNELS_LAST_DEVICES else torch.contiguous_format


def build_model(cfg: Config, device: torch.device) -> SimCLRModel:
    """The SimCLR model `cfg` describes, on `device`, in the memory layout its convolutions run fastest in."""
    return SimCLRModel(cfg.width, cfg.proj_dim, cfg.head, cfg.stem).to(device, memory_format=memory_format(device))


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[SimCLRModel, Config]:
    """The model saved in a checkpoint, with the config it was trained with."""
    state = load_checkpoint(checkpoint)
    cfg = Config.from_dict(state["config"])
    model = SimCLRModel(cfg.width, cfg.proj_dim, cfg.head, cfg.stem)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as error:
        raise ValueError(f"the weights in {checkpoint} do not match its config (width={cfg.width}, "
                         f"proj_dim={cfg.proj_dim}, head={cfg.head}, stem={cfg.stem}): the file was edited or "
                         f"mixed up; retrain") from error
    return model.to(device), cfg
