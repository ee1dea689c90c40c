"""Weights a reader can load: the encoders of the book's long CPU run, shipped in the repository.

`load("long")` returns the trained SimCLR model and the config it was trained with, after checking the file against
the sha256 written here: a file that was truncated, edited or swapped is refused before anything reads it, and it is
read with `torch.load(weights_only=True)`, which runs no code a file may hold. `python -m simclr_core probe
--pretrained long` probes it against random init on your copy of CIFAR-10. The model card, weights/README.md, says
how each was trained, on which data copy and machine, and what it scores.

The files hold the model's tensors in half precision (a width-32 ResNet-18 with its head is about 5.7 MB) and are
turned back into float32 when loaded; `export` writes one from a run's checkpoint.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from .config import Config
from .model import SimCLRModel
from .storage import RunExistsError, RunPaths, load_checkpoint, save_checkpoint

WEIGHTS = Path(__file__).parent / "weights"
FORMAT = 1
# name -> (file in WEIGHTS, its sha256): what `load` accepts
SHIPPED: dict[str, tuple[str, str]] = {
    "long": ("long.pt", "d85482f0297dac1cabdd79fecbe8b48b003379a8a1c55f41ab29a04fcb091e7b"),  # 40 epochs
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked_file(name: str) -> Path:
    """The shipped file of `name`, after its sha256 is checked; else an error that says what to do."""
    if name not in SHIPPED:
        raise ValueError(f"no pretrained weights named {name!r}: choose one of {sorted(SHIPPED) or 'none yet'}")
    file, expected = SHIPPED[name]
    path = WEIGHTS / file
    restore = f"restore it with `git checkout -- simclr_core/weights/{file}` (the weights ship with the repository)"
    if not path.is_file():
        raise FileNotFoundError(f"the pretrained weights {path} are missing: {restore}")
    found = sha256(path)
    if found != expected:
        raise ValueError(f"the pretrained weights {path} are not the file shipped (sha256 {found[:12]}..., expected "
                         f"{expected[:12]}...): it is truncated or was changed; {restore}")
    return path


def load(name: str = "long", device: torch.device | str = "cpu") -> tuple[SimCLRModel, Config]:
    """The shipped SimCLR model `name` (encoder f and head g, float32, eval mode) and its training config."""
    state = torch.load(_checked_file(name), map_location="cpu", weights_only=True)
    cfg = Config.from_dict(state["config"])
    model = SimCLRModel(cfg.width, cfg.proj_dim, cfg.head, cfg.stem)
    model.load_state_dict({key: tensor.float() if tensor.is_floating_point() else tensor
                           for key, tensor in state["model"].items()})
    return model.to(device).eval(), cfg


def card(name: str = "long") -> dict[str, Any]:
    """What the file says of its run: steps, images seen, seconds, machine, data copy, probe accuracies."""
    return torch.load(_checked_file(name), map_location="cpu", weights_only=True)["card"]


def as_run(name: str, out: str, overrides: dict[str, Any] | None = None) -> str:
    """A run folder in `out` holding the shipped model as a checkpoint (with `overrides` of its config, such as where
    the data is on this machine), so that everything that reads runs (the probe, the chapters) reads it too."""
    paths = RunPaths(out)
    if paths.checkpoint.is_file() and load_checkpoint(paths.checkpoint).get("pretrained") != name:
        raise RunExistsError(f"{out} already holds a run of its own: choose another --out for the pretrained "
                             f"weights {name!r}")
    model, cfg = load(name)
    config = {**cfg.to_dict(), **(overrides or {})}
    Config.from_dict(config).validate()
    save_checkpoint(paths.checkpoint, {"config": config, "model": model.state_dict(), "pretrained": name})
    return out


def export(run: str, file: Path, card: dict[str, Any]) -> str:
    """Write the model of the run in `run` to `file` in half precision with its config and `card`; returns the
    sha256 to enter in `SHIPPED`."""
    state = load_checkpoint(RunPaths(run).checkpoint)
    half = {key: tensor.half() if tensor.is_floating_point() else tensor for key, tensor in state["model"].items()}
    config = {**state["config"], "data": "cifar10"}  # where the images are is the reader's (the card names the copy)
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FORMAT, "config": config, "model": half, "card": card}, file)
    return sha256(file)
