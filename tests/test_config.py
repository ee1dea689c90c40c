"""Config validation, presets, and the command line's flags."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from simclr_core.cli import build_parser, main
from simclr_core.config import FIELD_CHOICES, FIELD_HELP, PRESETS, Config, make_config


def test_reference_preset_is_the_seeds_configuration() -> None:
    cfg = make_config("reference", data="cifar10")
    assert (cfg.width, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.temperature, cfg.epochs) == \
        (64, 128, 3e-4, 1e-4, 0.2, 100)
    assert (cfg.eval_every, cfg.eval_batches, cfg.save_every, cfg.crop_min_scale) == (2, 40, 10, 0.3)


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 1, "batch_size=1 must be at least 2"),
    ("temperature", 0.0, "temperature=0.0 must be > 0"),
    ("crop_min_scale", 1.5, "crop_min_scale=1.5 must lie in"),
    ("epochs", 0, "epochs=0 must be at least 1"),
    ("lr_schedule", "linear", "lr_schedule='linear'"),
    ("optimizer", "adam", "optimizer='adam': use 'adamw', 'sgd' or 'lars'"),
    ("warmup_epochs", 1000, "warmup_epochs=1000 must be below epochs="),
    ("momentum", 1.0, "momentum=1.0 must lie in"),
    ("precision", "fp16", "precision='fp16': use 'auto', 'bf16' or 'fp32'"),
])
def test_bad_values_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_config("quick", data="cifar10", **{field: value})


def test_unknown_preset_and_field_are_named() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_config("huge")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['tempreature'\]"):
        Config.from_dict({"tempreature": 0.5})


def test_every_preset_is_valid() -> None:
    for name in PRESETS:
        make_config(name, data="cifar10")


def test_cli_flags_cover_every_field_and_parse_types() -> None:
    args = build_parser().parse_args(["train", "--preset", "quick", "--batch-size", "64", "--temperature",
                                      "0.5", "--data", "cifar10"])
    assert (args.batch_size, args.temperature, args.data, args.epochs) == (64, 0.5, "cifar10", None)


def test_cli_reports_bad_config_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "smoke", "--temperature", "-1", "--data", "cifar10", "--out", str(tmp_path)])
    assert "error: config field temperature=-1.0 must be > 0" in str(exit_info.value)


def test_help_describes_every_flag_and_probe_lists_only_its_own(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert set(FIELD_HELP) == {f.name for f in fields(Config)}, "every config field needs one line of help"
    monkeypatch.setenv("COLUMNS", "1000")  # one line a flag, so that each help text appears whole
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    train_help = capsys.readouterr().out
    for name, line in FIELD_HELP.items():
        assert f"--{name.replace('_', '-')}" in train_help and line in train_help, name
    for name, allowed in FIELD_CHOICES.items():
        assert f"--{name.replace('_', '-')} {{{','.join(allowed)}}}" in train_help
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    probe_flags = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    assert {"--out", "--data", "--device", "--probe-train-subset"} <= probe_flags
    assert not {"--temperature", "--width", "--epochs", "--batch-size", "--preset"} & probe_flags


def test_choice_fields_are_checked_by_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--optimizer", "adam"])
    assert "invalid choice: 'adam'" in capsys.readouterr().err
