"""Checkpoints and JSON logs, written so that a crash never leaves a half-written file behind.

Every write goes to a temporary file in the same folder, is flushed to disk, and then atomically replaces
the old file (`os.replace`): whoever reads the path sees either the previous complete file or the new one.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = 1


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write (one writer a path)
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_json(path: str | os.PathLike, data: Any) -> None:
    _write_atomically(Path(path), json.dumps(data, indent=1).encode())


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"log file {path} does not exist: run `python -m simclr_core train` "
                                f"(and `probe`) with the same --out folder first")
    return json.loads(path.read_text())


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save({"format_version": CHECKPOINT_FORMAT, **state}, buffer)
    _write_atomically(Path(path), buffer.getvalue())


def save_tensor(path: str | os.PathLike, tensor: torch.Tensor) -> None:
    """A tensor file (cached features), written atomically like everything else."""
    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    _write_atomically(Path(path), buffer.getvalue())


def load_tensor(path: str | os.PathLike) -> torch.Tensor:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint's dict, or an error that names the file and says what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: train first "
                                f"(`python -m simclr_core train --out {path.parent.parent}`)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise ValueError(f"{path} is not a readable simclr-book checkpoint ({type(error).__name__}: "
                         f"{error}); it may be truncated or another kind of file: retrain, or restore "
                         f"a good copy") from error
    if not isinstance(state, dict) or "format_version" not in state:
        raise ValueError(f"{path} is a torch file but not a simclr-book checkpoint (no format_version)")
    if state["format_version"] > CHECKPOINT_FORMAT:
        raise ValueError(f"{path} has checkpoint format {state['format_version']}, newer than this "
                         f"simclr_core reads ({CHECKPOINT_FORMAT}): upgrade simclr_core")
    return state


class RunPaths:
    """The layout of a run's output folder, the same as the reference's."""

    def __init__(self, out: str | os.PathLike = "."):
        self.out = Path(out)
        self.checkpoint = self.out / "checkpoints" / "latest.pt"
        self.ssl_log = self.out / "logs" / "ssl_results.json"
        self.probe_log = self.out / "logs" / "probe_results.json"
        self.supervised_log = self.out / "logs" / "supervised_results.json"  # a supervised run (supervised.py)
        self.plots = self.out / "plots"
        self.features = self.out / "features"  # cached frozen features of the probed encoders

    def check_writable(self) -> None:
        """Fail now, before any training, if the output folder cannot be written."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.out):
                pass
        except OSError as error:
            raise PermissionError(f"output folder {self.out} is not writable ({error}): "
                                  f"choose another with --out") from error
