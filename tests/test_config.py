"""Config validation, presets, and the command line's flags."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from simclr_core.cli import _overrides, build_parser, main
from simclr_core.config import (
    PRESETS,
    RESUME_MAY_CHANGE,
    REUSE_MAY_CHANGE,
    Config,
    environment_default,
    from_environment,
    make_config,
)
from simclr_core.knobs import PROBE, TRAINED, changed_fields
from simclr_core.storage import RunExistsError, check_same_config
from simclr_core.supervised import SupervisedConfig

# A valid value other than the reference's for every text field (a new text field must be added here), and
# for numbers whose generic change (int + 1, float / 2) would be invalid
SPECIAL_VALUES = {"data": str(Path(__file__).parent), "data_root": "elsewhere", "optimizer": "lars",
                  "lr_schedule": "cosine", "pipeline": "reference", "device": "cpu", "precision": "bf16",
                  "train_resolution": 16, "loss": "dcl", "augmentations": "crop,jitter", "head": "linear",
                  "stem": "imagenet", "start_resolution": 16}


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
    *[(name, 0, f"{name}=0 must be at least 1") for name in
      ("width", "proj_dim", "eval_every", "eval_batches", "save_every", "probe_steps")],
    *[(name, -1, f"{name}=-1 must not be negative") for name in
      ("train_subset", "probe_train_subset", "num_workers", "weight_decay", "warmup_epochs", "steps",
       "time_budget", "sync_every", "probe_weight_decay")],
    ("lr", 0.0, "lr=0.0 must be > 0"),
    ("lr", -1e-3, "lr=-0.001 must be > 0"),
    ("train_resolution", 7, "train_resolution=7 must lie in [8, 32]"),
    ("train_resolution", 33, "train_resolution=33 must lie in [8, 32]"),
    ("pipeline", "gpu", "pipeline='gpu': use 'fast' or 'reference'"),
    ("loss", "infonce", "loss='infonce': use 'nt_xent' or 'dcl'"),
    ("augmentations", "crop,colour", "augmentations='crop,colour': give a comma-separated choice of crop, flip"),
    ("augmentations", "", "augmentations='': give a comma-separated choice"),
    ("device", "tpu", "device='tpu': use auto, cpu, cuda, cuda:N or mps"),
    ("device", "cud:0", "device='cud:0'"),
    ("data", "/no/such/folder", "data='/no/such/folder' is neither 'cifar10' nor an existing folder"),
])
def test_bad_values_are_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        make_config("quick", **{"data": "cifar10", field: value})


def test_unknown_preset_and_field_are_named() -> None:
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_config("huge")
    with pytest.raises(ValueError, match=r"unknown config field\(s\) \['tempreature'\]"):
        Config.from_dict({"tempreature": 0.5})


@pytest.mark.parametrize("field, value", [("device", "cuda:1"), ("device", "cuda"), ("device", "mps"),
                                          ("crop_min_scale", 1.0), ("momentum", 0.0), ("weight_decay", 0.0),
                                          ("train_subset", 0), ("batch_size", 2), ("warmup_epochs", 99),
                                          ("train_resolution", 8), ("train_resolution", 32),
                                          ("augmentations", "jitter"), ("augmentations", "crop, flip")])
def test_values_on_the_edge_are_accepted(field: str, value: object) -> None:
    """The checks reject what they name and nothing more (epochs is 100 in the reference)."""
    assert getattr(make_config("reference", data="cifar10", **{field: value}), field) == value


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name: str) -> None:
    cfg = make_config(name, data="cifar10")
    reference = Config(data="cifar10")
    for field in fields(Config):  # the preset's values, the reference's everywhere else
        wanted = PRESETS[name].get(field.name, getattr(reference, field.name))
        assert getattr(cfg, field.name) == wanted, field.name
    if cfg.train_subset:  # what validate cannot see: the subset must hold a batch, or training refuses to start
        assert cfg.train_subset >= cfg.batch_size
    assert Config.from_dict(cfg.to_dict()) == cfg  # as checkpoints store and restore it
    args = build_parser().parse_args(["train", "--preset", name, "--data", "cifar10"])
    assert make_config(args.preset, **_overrides(args)) == cfg  # the command line adds nothing unasked


def _flag_value(field_name: str, field_type: str, default: object) -> tuple[str, object]:
    """A valid value other than the reference's for one field, as typed on the command line and as parsed."""
    if field_name in SPECIAL_VALUES:
        return str(SPECIAL_VALUES[field_name]), SPECIAL_VALUES[field_name]
    if field_type == "bool":
        return ("false", False) if default else ("true", True)
    if field_type == "int":
        return str(default + 1), default + 1
    if field_type == "float":
        value = default / 2 if default else 1.5
        return repr(value), value
    assert field_type != "str", f"{field_name}: add a valid value for it to SPECIAL_VALUES"
    raise AssertionError(f"{field_name}: the CLI test does not know the type {field_type}")


@pytest.mark.parametrize("field", fields(Config), ids=lambda field: field.name)
def test_cli_flag_of_every_field_reaches_the_config(field) -> None:
    reference = make_config("reference")
    text, value = _flag_value(field.name, str(field.type), getattr(reference, field.name))
    flag = "--" + field.name.replace("_", "-")
    args = build_parser().parse_args(["train", "--preset", "reference", flag, text])
    cfg = make_config(args.preset, **_overrides(args))
    assert getattr(cfg, field.name) == value and type(getattr(cfg, field.name)) is type(value)
    assert getattr(cfg, field.name) != getattr(reference, field.name)
    others = [f.name for f in fields(Config) if f.name != field.name]
    assert [getattr(cfg, name) for name in others] == [getattr(reference, name) for name in others]


@pytest.mark.parametrize("text, value", [("true", True), ("Yes", True), ("1", True), ("false", False),
                                         ("no", False), ("0", False)])
def test_boolean_flags_read_common_spellings(text: str, value: bool) -> None:
    assert build_parser().parse_args(["train", "--sync-bn", text]).sync_bn is value


def test_boolean_flag_rejects_other_words(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--compile", "maybe"])
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


def test_cli_reports_bad_config_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--preset", "smoke", "--temperature", "-1", "--data", "cifar10", "--out", str(tmp_path)])
    assert "error: config field temperature=-1.0 must be > 0" in str(exit_info.value)


def test_help_describes_every_flag_and_probe_lists_only_its_own(monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line a flag, so that each help text appears whole
    for command, config_class in (("train", Config), ("supervised", SupervisedConfig)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = capsys.readouterr().out
        for field in fields(config_class):
            flag, meta = f"--{field.name.replace('_', '-')}", field.metadata
            assert meta["help"] and flag in shown and meta["help"] in shown, (command, field.name)
            if meta["choices"]:
                assert f"{flag} {{{','.join(meta['choices'])}}}" in shown
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    probe_flags = set(re.findall(r"--[a-z-]+", capsys.readouterr().out))
    assert {"--out", "--data", "--device", "--probe-train-subset"} <= probe_flags
    assert not {"--temperature", "--width", "--epochs", "--batch-size", "--preset"} & probe_flags


def test_the_supervised_config_shares_the_simclr_knobs_it_has_in_common() -> None:
    simclr = {f.name: f for f in fields(Config)}
    for field in fields(SupervisedConfig):
        if field.name in simclr and field.name != "head":  # the one name that means another thing here
            # the same role, choices and range: declared once, in Config
            keys = ("role", "choices", "at_least", "above", "at_most", "below")
            assert [field.metadata[k] for k in keys] == [simclr[field.name].metadata[k] for k in keys], field.name
    with pytest.raises(ValueError, match="supervised config field crop_min_scale=1.5 must lie in"):
        SupervisedConfig(crop_min_scale=1.5).validate()
    with pytest.raises(ValueError, match="supervised config field precision='fp16': use 'auto', 'bf16' or"):
        SupervisedConfig(precision="fp16").validate()


def test_choice_fields_are_checked_by_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--optimizer", "adam"])
    assert "invalid choice: 'adam'" in capsys.readouterr().err


@pytest.mark.parametrize("field", fields(Config), ids=lambda field: field.name)
def test_which_changes_make_another_run_follows_each_fields_role(field) -> None:
    """One rule, from the roles: resuming may change all but what the weights are trained from; reusing a finished
    run (load_or_train, the bench scripts) may change only the probe's settings."""
    saved = make_config("reference").to_dict()
    text, value = _flag_value(field.name, str(field.type), saved[field.name])
    wanted = {**saved, field.name: value}
    role = field.metadata["role"]
    assert (changed_fields(Config, saved, wanted, RESUME_MAY_CHANGE) == [field.name]) == (role == TRAINED)
    assert (changed_fields(Config, saved, wanted, REUSE_MAY_CHANGE) == [field.name]) == (role != PROBE)


def test_the_environment_sets_the_command_line_and_chapters_not_the_dataclass(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIMCLR_PRECISION", "fp32")
    monkeypatch.setenv("SIMCLR_DATA", str(tmp_path))
    assert Config().precision == "auto" and Config().data == "cifar10"
    assert from_environment() == {"precision": "fp32", "data": str(tmp_path)}
    assert environment_default("precision") == "fp32"
    args = build_parser().parse_args(["train", "--preset", "smoke"])
    assert make_config(args.preset, **{**from_environment(), **_overrides(args)}).precision == "fp32"
    # a run trained with $SIMCLR_PRECISION=fp32 is another run for a chapter that asks for the default
    trained_in_fp32 = {"config": make_config("smoke", precision="fp32").to_dict(), "finished": True,
                       "epochs": [], "step_loss": []}
    with pytest.raises(RunExistsError, match="precision='fp32'.*precision='auto'"):
        check_same_config(trained_in_fp32, make_config("smoke"), "runs/book")
