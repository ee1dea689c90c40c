"""Stopping, crashing and bad input never lose finished work, and every failure says what to do."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from simclr_core import distributed
from simclr_core.cli import main
from simclr_core.config import make_config
from simclr_core.data import load_split
from simclr_core.engine import train_ssl
from simclr_core.model import load_model
from simclr_core.resume import TrainingStopped
from simclr_core.storage import CHECKPOINT_FORMAT, RunPaths, load_checkpoint, load_json, save_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def _interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int, signum: int = signal.SIGINT) -> None:
    """Deliver a real signal to this process right after training step `step` computes its loss."""
    calls = {"n": 0}
    original = distributed.global_nt_xent

    def counting(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(distributed, "global_nt_xent", counting)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(RunPaths(out).checkpoint)["model"]


def _resume_config(pipeline: str):
    # smoke: 384 images / batch 64 = 6 steps an epoch: step 6 ends epoch 1, step 11 is inside epoch 2
    return make_config("smoke", data="cifar10", epochs=2, save_every=2, pipeline=pipeline, lr_schedule="cosine")


@pytest.fixture(scope="module")
def uninterrupted(cifar_train, cifar_test, tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted run of each pipeline, trained once for all the stop points it is compared with."""
    runs: dict[str, tuple[dict, Path]] = {}

    def run(pipeline: str) -> tuple[dict, Path]:
        if pipeline not in runs:
            out = tmp_path_factory.mktemp(f"whole-{pipeline}")
            runs[pipeline] = (train_ssl(_resume_config(pipeline), str(out), progress=False, train_set=cifar_train,
                                        eval_set=cifar_test), out)
        return runs[pipeline]

    return run


@pytest.mark.parametrize("pipeline", ["fast", "reference"])
@pytest.mark.parametrize("stop_step, signum", [(6, signal.SIGINT), (11, signal.SIGTERM)])
@pytest.mark.slow
def test_stopped_and_resumed_run_equals_uninterrupted_run(cifar_train, cifar_test, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, pipeline: str,
                                                          stop_step: int, signum: int, uninterrupted) -> None:
    cfg = _resume_config(pipeline)
    kwargs = dict(progress=False, train_set=cifar_train, eval_set=cifar_test)
    whole, whole_out = uninterrupted(pipeline)

    _interrupt_at(monkeypatch, stop_step, signum)
    with pytest.raises(TrainingStopped, match="Resume with: python -m simclr_core train --resume"):
        train_ssl(cfg, str(tmp_path / "split"), **kwargs)
    stopped = load_checkpoint(RunPaths(tmp_path / "split").checkpoint)
    assert len(stopped["log"]["step_loss"]) == stop_step
    monkeypatch.undo()

    resumed = train_ssl(cfg, str(tmp_path / "split"), resume=True, **kwargs)
    assert resumed["step_loss"] == whole["step_loss"]
    assert resumed["evals"] == whole["evals"] and resumed["finished"]
    for name, tensor in _weights(whole_out).items():
        assert torch.equal(tensor, _weights(tmp_path / "split")[name]), name


@pytest.mark.slow
def test_resume_refuses_a_different_architecture_or_batch(cifar_train, cifar_test, tmp_path: Path) -> None:
    cfg = make_config("smoke", data="cifar10", epochs=1)
    train_ssl(cfg, str(tmp_path), progress=False, train_set=cifar_train, eval_set=cifar_test)
    changed = make_config("smoke", data="cifar10", epochs=2, width=16, batch_size=32)
    with pytest.raises(ValueError, match=r"width=8, batch_size=64.*width=16, batch_size=32"):
        train_ssl(changed, str(tmp_path), progress=False, resume=True, train_set=cifar_train,
                  eval_set=cifar_test)
    more_epochs = make_config("smoke", data="cifar10", epochs=2)  # safe to change: continues the run
    log = train_ssl(more_epochs, str(tmp_path), progress=False, resume=True, train_set=cifar_train,
                    eval_set=cifar_test)
    assert [e["epoch"] for e in log["epochs"]] == [1, 2] and log["finished"]


def test_resume_without_a_checkpoint_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="does not exist: train first"):
        main(["train", "--resume", "--out", str(tmp_path)])


@pytest.mark.parametrize("sync_every", [1, 4])  # 4: the loss is read back every 4 steps, as on a GPU
@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(cifar_train, cifar_test, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  sync_every: int) -> None:
    cfg = make_config("smoke", data="cifar10", epochs=3, save_every=1, sync_every=sync_every)
    calls = {"n": 0}
    original = distributed.global_nt_xent

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = original(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 9 else loss

    monkeypatch.setattr(distributed, "global_nt_xent", poisoned)
    with pytest.raises(FloatingPointError, match=r"became nan at step 9 \(epoch 2\).*last good checkpoint"):
        train_ssl(cfg, str(tmp_path), progress=False, train_set=cifar_train, eval_set=cifar_test)
    assert load_checkpoint(RunPaths(tmp_path).checkpoint)["epoch"] == 1
    assert calls["n"] == (9 if sync_every == 1 else 10)  # read back every 4 steps: after steps 7-10 of epoch 2


def test_unwritable_output_folder_fails_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import simclr_core.engine as engine

    def no_loading(*args: object) -> None:
        raise AssertionError("loaded data before checking the folder")

    monkeypatch.setattr(engine, "training_images", no_loading)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit, match="is not writable"):
        main(["train", "--preset", "smoke", "--data", "cifar10", "--out", str(blocker / "run")])


@pytest.mark.slow
def test_a_full_disk_ends_the_run_in_one_line_and_keeps_the_last_checkpoint(
        cifar_train, cifar_test, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import simclr_core.engine as engine
    import simclr_core.storage as storage

    monkeypatch.setattr(engine, "load_sets", lambda cfg, *_: (cifar_train, cifar_test))
    writes = {"n": 0}
    fsync = os.fsync

    def filling_up(fd: int) -> None:
        writes["n"] += 1
        if writes["n"] > 2:  # epoch 1's checkpoint and log fit, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", filling_up)
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"^error: could not write .*latest.pt \(No space left on device\); the "
                                         r"previous version is kept: free some disk space"):
        main(["train", "--preset", "smoke", "--data", "cifar10", "--out", str(out), "--save-every", "1",
              "--no-progress"])
    monkeypatch.undo()
    assert load_checkpoint(RunPaths(out).checkpoint)["epoch"] == 1  # what the run had finished is still there
    assert not list(out.rglob("*.tmp"))


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable simclr-book checkpoint"),
    (b"just some text, not a torch file", "not a readable simclr-book checkpoint"),
    (b"cos\nsystem\n(S'echo hi'\ntR.", "not a readable simclr-book checkpoint"),  # a pickle that runs a command
])
def test_files_that_are_not_checkpoints_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "latest.pt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        load_checkpoint(path)
    assert "weights_only=False" not in str(error.value).replace("do not load a file you did not make with "
                                                                "weights_only=False", ""), "never advise it"
    assert error.value.__cause__ is None  # torch's message (which advises it) is not chained either


def test_torch_file_that_is_not_ours_and_newer_format_are_named(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a simclr-book checkpoint"):
        load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    torch.save({"format_version": CHECKPOINT_FORMAT + 1}, newer)
    with pytest.raises(ValueError, match="upgrade simclr_core"):
        load_checkpoint(newer)


@pytest.mark.slow
def test_checkpoint_of_another_architecture_is_named(cifar_train, cifar_test, tmp_path: Path) -> None:
    train_ssl(make_config("smoke", data="cifar10", epochs=1), str(tmp_path), progress=False,
              train_set=cifar_train, eval_set=cifar_test)
    state = load_checkpoint(RunPaths(tmp_path).checkpoint)
    state["config"]["width"] = 16  # weights of width 8 under a config that says 16
    save_checkpoint(RunPaths(tmp_path).checkpoint, {k: v for k, v in state.items() if k != "format_version"})
    with pytest.raises(ValueError, match="do not match its config"):
        load_model(RunPaths(tmp_path).checkpoint)


def test_images_in_other_modes_are_converted_and_truncated_ones_named(tmp_path: Path) -> None:
    for split in ("train", "test"):
        folder = tmp_path / split / "things"
        folder.mkdir(parents=True)
        base = Image.new("RGB", (32, 32), (200, 30, 60))
        base.convert("CMYK").save(folder / "cmyk.jpg")
        base.convert("P").save(folder / "palette.png")
        base.convert("RGBA").save(folder / "rgba.png")
        base.convert("L").resize((48, 40)).save(folder / "gray_big.png")
    with pytest.warns(UserWarning, match="1 of 4 images"):
        images = load_split(str(tmp_path), "train")
    assert images.images.shape == (4, 3, 32, 32)
    truncated = tmp_path / "train" / "things" / "truncated.jpg"
    Image.new("RGB", (32, 32), (1, 2, 3)).save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.jpg"):
        load_split(str(tmp_path), "train")


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_torn_checkpoint(cifar_dir: Path, tmp_path: Path) -> None:
    """Kill a real training process at random moments; what is on disk always loads and resumes."""
    out = tmp_path / "run"
    base = [sys.executable, "-m", "simclr_core", "train", "--preset", "smoke", "--data", str(cifar_dir),
            "--out", str(out), "--train-subset", "384", "--epochs", "40", "--save-every", "1", "--no-progress"]
    rng = random.Random(0)
    kills = 0
    for attempt in range(4):
        resume = ["--resume"] if RunPaths(out).checkpoint.is_file() else []
        process = subprocess.Popen(base + resume, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if attempt == 0:  # however busy the machine, the first process lives until it has saved once
            deadline = time.monotonic() + 120
            while not RunPaths(out).checkpoint.is_file() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(rng.uniform(2.0, 4.0))
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
        assert process.returncode in (0, -signal.SIGKILL), process.stderr.read().decode()[-2000:]
        if RunPaths(out).checkpoint.is_file():
            state = load_checkpoint(RunPaths(out).checkpoint)  # raises on a torn file
            assert state["epoch"] >= 1
            # a kill mid-write leaves one temporary file; the next process to take the run's lock clears it
            assert len(list(RunPaths(out).checkpoint.parent.glob(".latest.pt.*.tmp"))) <= 1
            # the JSON mirror is written right after the checkpoint: complete, and at most one save behind
            assert load_json(RunPaths(out).ssl_log)["epochs"][-1]["epoch"] >= state["epoch"] - 1
    assert kills >= 3, "the process finished before it could be killed: lengthen the run"
    finished = subprocess.run(base + ["--resume", "--epochs", str(load_checkpoint(RunPaths(out).checkpoint)
                                                                  ["epoch"] + 1)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert load_json(RunPaths(out).ssl_log)["finished"]
