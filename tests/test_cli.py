"""A command line a newcomer cannot hurt themselves with: no silent overwrite, one writer a run folder,
defaults that cannot start days of work, a start-up banner. The overwrite refusal and the lock are
checked with real processes, as two terminals or two notebooks would run them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simclr_core.cli import default_preset, main
from simclr_core.config import make_config
from simclr_core.data import DataNotFoundError, load_split
from simclr_core.engine import load_or_train
from simclr_core.storage import RunExistsError, RunLock, RunPaths, load_json, save_json

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes of random 32x32 images (128 train, 64 test): runs of a second, no CIFAR copy needed."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 64), ("test", 32)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    """`train` on the tiny data: the smoke preset, 4 steps an epoch."""
    return ["train", "--preset", "smoke", "--data", str(data), "--out", str(out), "--batch-size", "32",
            "--epochs", "1", "--no-progress", *extra]


def _in_a_new_process(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "simclr_core", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, **kwargs)


@pytest.mark.slow
def test_train_names_the_run_it_would_replace_and_overwrite_clears_it(tiny_data: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    main(_train_args(tiny_data, out))
    banner = capsys.readouterr().out
    assert "training: smoke preset with epochs=1, batch_size=32 on cpu in " in banner
    assert f"data {tiny_data}: 128 training images, 64 held-out" in banner
    assert f"4 steps of 32 images (1 epochs of 4 steps); output in {out}" in banner
    paths = RunPaths(out)
    save_json(paths.probe_log, {"simclr": "a probe of this run"})
    paths.plots.mkdir()
    (paths.plots / "ssl_loss.png").write_bytes(b"a plot of this run")
    checkpoint = paths.checkpoint.read_bytes()

    again = _in_a_new_process(_train_args(tiny_data, out))
    assert again.returncode == 1
    assert (f"error: {out} already holds a finished run (smoke preset with epochs=1, batch_size=32; 1 of 1 "
            f"epochs, 4 steps done). Continue it with `python -m simclr_core train --resume --out {out}`") \
        in again.stderr
    assert "with --overwrite" in again.stderr
    assert paths.checkpoint.read_bytes() == checkpoint and paths.probe_log.is_file()

    main(_train_args(tiny_data, out, "--overwrite", "--epochs", "2"))
    assert len(load_json(paths.ssl_log)["epochs"]) == 2
    assert not paths.probe_log.exists() and not (paths.plots / "ssl_loss.png").exists()


def _wait_for_lock_holder(out: Path, process: subprocess.Popen) -> None:
    lock = out / ".run.lock"
    deadline = time.monotonic() + 120
    while not (lock.is_file() and lock.read_text().strip() == str(process.pid)):
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the training process never took the lock"
        time.sleep(0.05)


@pytest.mark.slow
def test_second_train_into_a_folder_in_use_fails_at_once_and_a_killed_holder_leaves_no_lock(
        tiny_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    days = _train_args(tiny_data, out, "--epochs", "100000", "--yes")
    holder = subprocess.Popen([sys.executable, "-m", "simclr_core", *days], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_lock_holder(out, holder)
        second = _in_a_new_process(_train_args(tiny_data, out, "--overwrite"))
        assert holder.poll() is None, holder.stderr.read() if holder.stderr else ""
        assert second.returncode == 1
        assert f"error: {out} is in use: process {holder.pid} is writing to it" in second.stderr
    finally:
        holder.kill()
        holder.wait()
    with RunLock(out):  # the kernel released the SIGKILLed holder's lock: free at once, nothing to clean up
        pass


# Two notebooks asking for the same run: each imports first, then the first trains when both are ready.
LOAD_OR_TRAIN = """
import json, sys, time
from pathlib import Path
from simclr_core.config import make_config
from simclr_core.engine import load_or_train
data, out, role = sys.argv[1:]
Path(out + "." + role).touch()
if role == "first":
    while not Path(out + ".second").exists():
        time.sleep(0.02)
else:
    lock = Path(out) / ".run.lock"
    while not (lock.is_file() and lock.read_text().strip()):
        time.sleep(0.02)
cfg = make_config("smoke", data=data, batch_size=32, epochs=3)
_, log = load_or_train(cfg, out, progress=False)
print(json.dumps({"step_loss": log["step_loss"], "train_seconds": log["train_seconds"]}))
"""


@pytest.mark.slow
def test_load_or_train_in_a_second_process_waits_and_reuses_the_run(tiny_data: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "book")
    processes = [subprocess.Popen([sys.executable, "-c", LOAD_OR_TRAIN, str(tiny_data), out, role], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for role in ("first", "second")]
    (first_out, first_err), (second_out, second_err) = (p.communicate(timeout=120) for p in processes)
    assert [p.returncode for p in processes] == [0, 0], first_err[-2000:] + second_err[-2000:]
    assert f"{out} is in use by process {processes[0].pid}; waiting for it to finish" in second_err
    first, second = json.loads(first_out), json.loads(second_out)
    assert len(first["step_loss"]) == 12
    assert second == first  # the same run, timings included: reused, not trained again


@pytest.mark.slow
def test_load_or_train_reuses_a_matching_run_and_refuses_another_config(tiny_data: Path, tmp_path: Path) -> None:
    cfg = make_config("smoke", data=str(tiny_data), batch_size=32, epochs=1)
    _, trained = load_or_train(cfg, str(tmp_path), progress=False)
    _, reused = load_or_train(cfg, str(tmp_path), progress=False)
    assert reused == trained
    other_probe = make_config("smoke", data=str(tiny_data), batch_size=32, epochs=1, probe_train_subset=64)
    assert load_or_train(other_probe, str(tmp_path), progress=False)[1] == trained  # same encoder
    other = make_config("smoke", data=str(tiny_data), batch_size=32, epochs=1, temperature=0.5)
    with pytest.raises(RunExistsError, match=r"holds a finished run \(smoke preset with epochs=1, batch_size=32; "
                                             r"1 of 1 epochs, 4 steps done\) of another config: it was trained "
                                             r"with temperature=0.2, this run asks for temperature=0.5"):
        load_or_train(other, str(tmp_path), progress=False)
    assert load_json(RunPaths(tmp_path).ssl_log) == trained


def test_defaults_fit_the_machine_and_write_under_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_preset(torch.device("cpu")) == "quick"
    assert default_preset(torch.device("cuda")) == "reference"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"checkpoint runs/quick/checkpoints/latest.pt does not exist"):
        main(["train", "--device", "cpu", "--resume"])
    for command in ("probe", "plots"):
        with pytest.raises(SystemExit):
            main([command])  # no --out: argparse says it is required
    assert list(tmp_path.iterdir()) == [], "nothing may be written into the current folder"


def test_a_cpu_run_of_over_an_hour_starts_only_when_confirmed(tiny_data: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    days = _train_args(tiny_data, tmp_path, "--epochs", "1000000", "--device", "cpu")
    with pytest.raises(SystemExit, match=r"this run would train for about \d+ hours on this CPU .*Not started: "
                                         r"pass --yes to start it anyway"):
        main(days)  # pytest's stdin is no terminal: nobody to ask
    assert re.search(r"timing one training step on this CPU: [\d.]+ s, so 4,000,000 steps take about \d+ hours",
                     capsys.readouterr().err)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    with pytest.raises(SystemExit, match="not started"):
        main(days)
    assert not RunPaths(tmp_path).checkpoint.exists()


def test_files_are_written_with_the_umask_s_mode(tmp_path: Path) -> None:
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        previous = os.umask(umask)
        try:
            save_json(tmp_path / f"{umask:o}.json", {})
        finally:
            os.umask(previous)
        assert (tmp_path / f"{umask:o}.json").stat().st_mode & 0o777 == mode


def test_lock_nests_in_its_process_and_clears_what_killed_writers_left(tmp_path: Path) -> None:
    stale = RunPaths(tmp_path).checkpoint.parent / ".latest.pt.0123456789abcdef.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a checkpoint")
    save_json(RunPaths(tmp_path).ssl_log, {})  # writing without the lock leaves other writers' files alone
    assert stale.is_file()
    with RunLock(tmp_path), RunLock(tmp_path):
        assert not stale.exists()
    with RunLock(tmp_path):  # released when the outer one ended
        pass


def test_a_split_folder_passed_as_data_gets_a_hint(tiny_data: Path) -> None:
    with pytest.raises(DataNotFoundError, match=f"pass the folder that holds train/ and test/: --data {tiny_data}$"):
        load_split(str(tiny_data / "train"), "train")
