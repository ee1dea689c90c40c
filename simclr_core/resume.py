"""What it takes to stop a run and continue it later as if it had never stopped.

A checkpoint holds the weights, the optimizer and schedule, the log, the position in the epoch and every
random state the loop draws from. Stop signals (Ctrl-C, SIGTERM) become a request the loop honours at the
next step boundary, so the checkpoint it writes is consistent. Resuming restores the random states of the
start of the interrupted epoch and redraws its first steps unused, which puts every stream exactly where
the stopped run left it.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from .batch_augment import DeviceTwoViewLoader
from .config import RESUME_MAY_CHANGE, Config
from .knobs import changed_fields, describe_changes
from .storage import RunPaths, load_checkpoint


class TrainingStopped(Exception):
    """A stop signal arrived; the checkpoint of the step it stopped at is on disk."""


def check_resumable(saved: Config, wanted: Config, checkpoint: Path) -> None:
    """Refuse to continue a run with settings that would make it a different run (`RESUME_MAY_CHANGE`)."""
    changed = changed_fields(Config, saved.to_dict(), wanted.to_dict(), RESUME_MAY_CHANGE)
    if changed:
        raise ValueError(f"cannot resume {checkpoint}: {describe_changes(saved.to_dict(), wanted.to_dict(), changed)}"
                         f"; resume with the checkpoint's values or train into a new --out folder")


def checkpoint_config(out: str, overrides: dict[str, Any] | None = None) -> Config:
    """The config stored in the run in `out`, with `overrides` applied and validated."""
    stored = load_checkpoint(RunPaths(out).checkpoint)["config"]
    return Config.from_dict({**stored, **(overrides or {})}).validate()


def _loader_generators(loader: DataLoader | DeviceTwoViewLoader) -> list[torch.Generator]:
    if isinstance(loader, DeviceTwoViewLoader):
        return [loader.order_generator, loader.augment.generator]
    return [loader.generator]


def capture_rng(loader: DataLoader | DeviceTwoViewLoader) -> dict[str, Any]:
    """Every random state the training loop draws from, in a form `torch.load(weights_only=True)` reads."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position,
                                                   has_gauss, cached),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loader": [g.get_state() for g in _loader_generators(loader)]}


def restore_rng(states: dict[str, Any], loader: DataLoader | DeviceTwoViewLoader) -> None:
    random.setstate(states["python"])
    name, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])
    for generator, state in zip(_loader_generators(loader), states["loader"], strict=True):
        generator.set_state(state)


@contextlib.contextmanager
def stop_requests() -> Iterator[list[str]]:
    """Turn SIGINT (Ctrl-C) and SIGTERM into a request that the loop honours at the next step boundary.

    A second signal stops at once; the checkpoint on disk is then the last one written (never a torn file).
    """
    requested: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def request(signum: int, frame: object) -> None:
        if requested:
            raise KeyboardInterrupt
        requested.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
