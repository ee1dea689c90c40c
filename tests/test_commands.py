"""The commands a user types: the installed console scripts, what a stopped run exits with and says, and
plots drawn before any probe has run."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from conftest import ROOT, pyproject, skip_unless_ci

import simclr_core.engine as engine
from simclr_core import data, distributed
from simclr_core.cli import main
from simclr_core.data import ImageSet
from simclr_core.storage import RunPaths, load_checkpoint, save_json

SCRIPTS: dict[str, str] = pyproject()["project"]["scripts"]
# what each script's --help must show: the sub-commands, or the usage of its one command
HELP_SHOWS = {"simclr": "{train,probe,supervised,plots}",
              **{f"simclr-{command}": f"usage: python -m simclr_core {command}"
                 for command in ("train", "probe", "plots")}}


def test_every_script_in_pyproject_resolves_and_is_known_here() -> None:
    assert set(SCRIPTS) == set(HELP_SHOWS)
    for target in SCRIPTS.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target


@pytest.mark.parametrize("name", sorted(HELP_SHOWS))
def test_script_functions_answer_help(name: str, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    module, function = SCRIPTS[name].split(":")
    monkeypatch.setattr(sys, "argv", [name, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        getattr(importlib.import_module(module), function)()
    assert exit_info.value.code == 0 and HELP_SHOWS[name] in capsys.readouterr().out


def _installed(name: str) -> str | None:
    candidate = Path(sysconfig.get_path("scripts")) / name
    return str(candidate) if candidate.is_file() else shutil.which(name)


@pytest.mark.slow
def test_installed_scripts_run() -> None:
    """`pip install -e .` puts the four scripts on PATH, each calling its function from pyproject; `simclr`
    starts and answers --help (with this checkout's code; one process only: each one imports torch)."""
    missing = [name for name in SCRIPTS if _installed(name) is None]
    if missing:
        skip_unless_ci(f"console scripts {missing} are not installed: pip install -e .")
    for name, target in SCRIPTS.items():
        assert target.split(":")[1] in Path(_installed(name)).read_text(errors="replace"), name
    result = subprocess.run([_installed("simclr"), "--help"], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0 and HELP_SHOWS["simclr"] in result.stdout, result.stderr[-2000:]


def _tiny_split(data: str, split: str, *args: object) -> ImageSet:
    """Random images instead of files: 4 training steps an epoch (batch 16) and an evaluation set."""
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return ImageSet(images, torch.arange(64) % 10, [str(c) for c in range(10)])


@pytest.mark.parametrize("signals, code", [
    ([signal.SIGTERM], 130),
    ([signal.SIGINT, signal.SIGINT], "interrupted: the last checkpoint written (if any) is kept; "
                                     "resume with train --resume"),
])
def test_a_stopped_run_exits_130_and_a_second_signal_stops_at_once(
        signals: list[int], code: int | str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """One signal: the run stops at the step boundary, saves, and exits 130 (128 + SIGINT, as shells expect)
    saying how to resume; a second one stops at once, before anything is written."""
    monkeypatch.setattr(engine, "load_split", _tiny_split)
    monkeypatch.setattr(data, "load_split", _tiny_split)  # the training images
    original, handlers = distributed.global_nt_xent, [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]

    def signalling(*args, **kwargs):
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:  # the training loop listens: not the step
            for signum in signals:  # timing that `train` does before it on a CPU
                os.kill(os.getpid(), signum)
        return original(*args, **kwargs)

    monkeypatch.setattr(distributed, "global_nt_xent", signalling)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "smoke", "--data", "cifar10", "--out", str(tmp_path), "--batch-size", "16",
              "--epochs", "2", "--no-progress"])
    assert exit_info.value.code == code
    checkpoint = RunPaths(tmp_path).checkpoint
    if code == 130:
        assert "stopped by SIGTERM at step 1 (epoch 1)" in capsys.readouterr().err
        assert (load_checkpoint(checkpoint)["epoch"], load_checkpoint(checkpoint)["step_in_epoch"]) == (0, 1)
    else:
        assert not checkpoint.exists()
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers  # given back


def test_plots_without_a_probe_log_draw_the_ssl_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = {"step_loss": [5.0, 4.8, 4.7, 4.5], "evals": [{"epoch": 1, "loss": 4.9, "p_pos": 0.1, "top1": 0.2},
                                                        {"epoch": 2, "loss": 4.6, "p_pos": 0.2, "top1": 0.3}],
           "epochs": [{"epoch": 1, "loss": 4.9, "lr": 1e-3, "seconds": 1.0},
                      {"epoch": 2, "loss": 4.6, "lr": 1e-3, "seconds": 2.0}]}
    save_json(RunPaths(tmp_path).ssl_log, log)
    main(["plots", "--out", str(tmp_path)])
    plots = RunPaths(tmp_path).plots
    assert capsys.readouterr().out.split() == [str(plots / "ssl_loss.png"), str(plots / "ssl_metrics.png")]
    assert sorted(p.name for p in plots.iterdir()) == ["ssl_loss.png", "ssl_metrics.png"]
    assert all((plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for name in ("ssl_loss.png", "ssl_metrics.png"))
