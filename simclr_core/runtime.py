"""Where a run executes, in which number format, and how it is made repeatable: device, precision, seeding."""

from __future__ import annotations

import os
import platform
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn


def pick_device(name: str = "auto") -> torch.device:
    """"auto" takes CUDA, then Apple's MPS, then the CPU; any other name is used as given."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cpu_bf16_units() -> str:
    """The CPU's bfloat16 matrix instructions: "AMX" (Intel Sapphire Rapids and later), "AVX512-BF16" (AMD Zen 4
    and later, Intel Cooper Lake) or "none". oneDNN runs bf16 convolutions natively on the first two."""
    for units, probe, flag in (("AMX", "_is_amx_tile_supported", "amx_tile"),
                               ("AVX512-BF16", "_is_avx512_bf16_supported", "avx512_bf16")):
        found = getattr(torch.cpu, probe, None)  # torch's own probe is private: a release may drop it
        if found() if found is not None else flag in _cpu_flags():
            return units
    return "none"


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them in /proc/cpuinfo (empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    """The CPU's marketing name as the OS reports it (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """One line naming what a timing was measured on: CPU model, its bf16 units, cores and threads, GPU, torch."""
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu_model()} (bf16 units: {cpu_bf16_units()}), {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} torch threads{gpu}, torch {torch.__version__}")


def machine_kind() -> str:
    """The part of `machine_description` that decides a timing's scale: '2 cores, bf16 units: AVX512-BF16'.
    Benchmark rows are compared (and skipped as already made) within one kind."""
    return f"{os.cpu_count()} cores, bf16 units: {cpu_bf16_units()}"


def bf16_speedup(device: torch.device, repeats: int = 3) -> float:
    """Measured time of a small convolutional training step in float32 over its time in bf16 autocast.

    For devices whose capability flags do not tell whether bf16 pays (Apple's MPS): about a second of work.
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(128, 10)).to(device)
    x = torch.randn(128, 3, 32, 32, device=device)
    return probe_step_seconds(net, x, False, repeats) / probe_step_seconds(net, x, True, repeats)


def probe_step_seconds(net: nn.Module, x: torch.Tensor, bf16: bool, repeats: int) -> float:
    """Median seconds of a forward and backward pass of `net` on `x` (in bf16 autocast with `bf16`), after one
    untimed pass that sets the kernels up."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = net(x).float().square().mean()
        loss.backward()
        loss.item()  # wait for the device
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[repeats // 2]


def choose_precision(precision: str, device: torch.device) -> tuple[bool, str]:
    """Resolve the config's precision ("auto", "bf16" or "fp32") for `device`: (use bf16?, the reason why).

    "auto" takes bf16 where the hardware multiplies bf16 matrices natively, which halves a step's time at the
    same accuracy (README, Benchmarks): CUDA GPUs from Ampere on, CPUs with AMX or AVX512-BF16. Where flags cannot
    tell (MPS), a one-second measurement decides. Elsewhere bf16 is emulated and slower, so float32.
    """
    if precision != "auto":
        return precision == "bf16", f"{precision}: set by the precision option"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, "bf16: CUDA GPU with bf16 tensor cores"
        return False, "fp32: this CUDA GPU has no native bf16 (before Ampere)"
    if device.type == "cpu":
        units = cpu_bf16_units()
        if units == "none":
            return False, "fp32: this CPU has no bf16 matrix instructions (neither AMX nor AVX512-BF16)"
        return True, f"bf16: this CPU has {units}"
    speedup = bf16_speedup(device)
    choice = "bf16" if speedup > 1.1 else "fp32"
    return choice == "bf16", f"{choice}: measured bf16 {speedup:.2f}x as fast as float32 on {device.type}"


def uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether the config's precision means bf16 autocast on `device`."""
    return choose_precision(precision, device)[0]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices), so a run on the same machine repeats exactly."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process so far: allocated GPU memory on CUDA, resident set size on the CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)
