"""Where a run executes and how it is made repeatable: device choice and seeding."""

from __future__ import annotations

import random

import numpy as np
import torch


def pick_device(name: str = "auto") -> torch.device:
    """"auto" takes CUDA, then Apple's MPS, then the CPU; any other name is used as given."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices), so a run on the same machine repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
