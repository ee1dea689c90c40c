"""Checkpoints and JSON logs, written so that a crash never leaves a half-written file behind; a run folder's
layout, the lock that keeps it to one writer, and the policy that never lets a new run replace a finished one
by accident.

Every write goes to a temporary file in the same folder, is flushed to disk, and then atomically replaces
the old file (`os.replace`): whoever reads the path sees either the previous complete file or the new one.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import secrets
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any, ClassVar, TypedDict

import torch

from .config import REUSE_MAY_CHANGE, Config, describe_preset
from .knobs import changed_fields, describe_changes

CHECKPOINT_FORMAT = 1
TEMPORARY_SUFFIX = ".tmp"


class WriteFailed(OSError):
    """A file could not be written (a full disk, a folder that cannot be written); the previous one is intact."""


def _write_atomically(path: Path, payload: bytes) -> None:
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}{TEMPORARY_SUFFIX}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # mode 0o666 less the umask, as `open` would give (mkstemp's 0o600 hid runs from the rest of a group)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        kept = "the previous version is kept" if path.is_file() else "nothing was written"
        raise WriteFailed(f"could not write {path} ({error.strerror or error}); {kept}: free some disk space or make "
                          f"the folder writable, then run the command again (a training run: with --resume)") from error
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    except Exception as error:  # torch's own message advises weights_only=False, which runs any code a file holds
        raise ValueError(f"{path} is not a readable simclr-book checkpoint (torch cannot read it as weights: "
                         f"{type(error).__name__}); it may be truncated or another kind of file. Retrain into "
                         f"this folder (train --overwrite --out {path.parent.parent}), or restore a good copy; "
                         f"do not load a file you did not make with weights_only=False") from None
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

    def written_files(self) -> list[Path]:
        """What a run leaves here: checkpoint, logs and plots (a new run in this folder removes them all)."""
        return [self.checkpoint, self.ssl_log, self.probe_log, *sorted(self.plots.glob("*.png"))]


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


class RunLock:
    """One writer a run folder: an exclusive advisory lock (flock) on OUT/.run.lock, held while training.

    The kernel drops the lock when its process ends in any way, SIGKILL included, so a lock is never stale
    and needs no clean-up. Taking it again in the process that holds it nests. Whoever takes it may delete
    the temporary files that writers killed mid-write left behind: no other writer of the folder is alive.
    """

    _held: ClassVar[dict[Path, tuple[IO[str], int]]] = {}  # folder -> (open lock file, nesting depth), this process

    def __init__(self, out: str | os.PathLike, wait: bool = False):
        self.paths = RunPaths(out)
        self.path = self.paths.out / ".run.lock"
        self.wait = wait

    def holder(self) -> str:
        """The process that holds the lock, as its lock file names it."""
        pid = self.path.read_text().strip() if self.path.is_file() else ""
        return f"process {pid}" if pid else "another process"

    def __enter__(self) -> RunLock:
        key = self.paths.out.resolve()
        if key in self._held:
            lock_file, depth = self._held[key]
            self._held[key] = (lock_file, depth + 1)
            return self
        self.paths.check_writable()
        lock_file = open(self.path, "a+")  # stays open as long as the lock is held
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.wait:
                lock_file.close()
                raise RunFolderBusy(
                    f"{self.paths.out} is in use: {self.holder()} is writing to it (lock {self.path}); wait for "
                    f"it to finish, stop it (Ctrl-C or kill; training saves a checkpoint), or choose another "
                    f"--out") from None
            print(f"{self.paths.out} is in use by {self.holder()}; waiting for it to finish", file=sys.stderr)
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        self._held[key] = (lock_file, 1)
        for stale in self.paths.out.rglob(f".*{TEMPORARY_SUFFIX}"):
            stale.unlink(missing_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        key = self.paths.out.resolve()
        lock_file, depth = self._held.pop(key)
        if depth > 1:
            self._held[key] = (lock_file, depth - 1)
        else:
            lock_file.close()  # closing the file releases the lock


class RunExistsError(FileExistsError):
    """The output folder already holds a run, and this one would replace it."""


class TrainingLog(TypedDict, total=False):
    """A pre-training run's record, `logs/ssl_results.json` (and inside its checkpoint): what the chapters, the
    plots, the command line and the bench scripts read of a run."""

    config: dict[str, Any]  # Config.to_dict() of the run
    device: str
    precision: str  # "bf16" or "fp32", as resolved on this machine
    precision_reason: str
    machine: str  # runtime.machine_description()
    finished: bool
    train_images: int
    steps_per_epoch: int
    total_steps: int  # the run's planned steps (a time budget's plan, else the config's)
    step_loss: list[float]  # the loss of every step taken, in order
    epochs: list[dict[str, float]]  # per epoch (the last may be partial, 7.5): epoch, loss, lr, seconds
    evals: list[dict[str, float]]  # per evaluation, from epoch 0: epoch, loss, p_pos, top1 (and knn)
    train_seconds: float  # wall clock of training, evaluations included
    budget: dict[str, Any]  # budget.TimeBudget.record, for a run with a time budget
    peak_memory_mb: float


def stored_run_log(out: str) -> TrainingLog | None:
    """The log of the run in `out` (its JSON copy, else the checkpoint's), or None when there is no run."""
    paths = RunPaths(out)
    if paths.ssl_log.is_file():
        return load_json(paths.ssl_log)
    if paths.checkpoint.is_file():
        return load_checkpoint(paths.checkpoint)["log"]
    return None


def describe_run(log: TrainingLog) -> str:
    """'a finished run (smoke preset with epochs=4; 4 of 4 epochs, 24 steps done)'."""
    state = "a finished run" if log.get("finished") else "an unfinished run"
    return (f"{state} ({describe_preset(log['config'])}; {len(log['epochs'])} of {log['config']['epochs']} "
            f"epochs, {len(log['step_loss'])} steps done)")


def refuse_to_replace(out: str, overwrite: bool) -> None:
    """A new run replaces the run already in `out` only when asked to: else name that run and the choices."""
    log = stored_run_log(out)
    if log is not None and not overwrite:
        raise RunExistsError(f"{out} already holds {describe_run(log)}. Continue it with "
                             f"`python -m simclr_core train --resume --out {out}` (add --epochs N for more), "
                             f"replace it and its probe log and plots with --overwrite, or choose another --out")


def check_same_config(log: TrainingLog, cfg: Config, out: str) -> None:
    """Refuse to reuse (or continue) the run whose `log` is in `out` as a run of `cfg` when it was trained
    differently: everything but the probe's settings (`REUSE_MAY_CHANGE`) must match. Fields added since the run
    was stored count with their defaults."""
    changed = changed_fields(Config, log["config"], cfg.to_dict(), REUSE_MAY_CHANGE)
    if changed:
        raise RunExistsError(f"{out} holds {describe_run(log)} of another config: "
                             f"{describe_changes({**Config().to_dict(), **log['config']}, cfg.to_dict(), changed)}. "
                             f"Pass another folder, or delete {out} to train this config there")
