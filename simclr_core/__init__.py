"""SimCLR from scratch: encoder, projection head, NT-Xent, two-view augmentation, training, linear probe.

Each module holds one idea; read them in this order: model, loss, augment, data, engine, probe, plots.
"""

from .augment import AugmentationParams, SSLAugmentation, simclr_transform
from .config import PRESETS, Config, make_config
from .data import ImageSet, load_split
from .engine import train_ssl
from .loss import contrastive_metrics, nt_xent, simclr_logits_targets
from .model import CifarResNet18, ProjectionHead, SimCLRModel
from .probe import extract_features, run_probe, train_linear_probe

__all__ = [
    "AugmentationParams", "SSLAugmentation", "simclr_transform", "PRESETS", "Config", "make_config",
    "ImageSet", "load_split", "train_ssl", "contrastive_metrics", "nt_xent", "simclr_logits_targets",
    "CifarResNet18", "ProjectionHead", "SimCLRModel", "extract_features", "run_probe", "train_linear_probe",
]
