"""The shipped weights: loaded by one call after a sha256 check, refused in one line when missing or changed, and
probed by the command line as a run would be."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from simclr_core import pretrained
from simclr_core.cli import main
from simclr_core.config import make_config
from simclr_core.model import SimCLRModel
from simclr_core.storage import RunExistsError, RunPaths, load_json, save_checkpoint


@pytest.fixture()
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A smoke-sized model exported as the package exports the long run's, and registered as "tiny"."""
    torch.manual_seed(0)
    model = SimCLRModel(width=8)
    run = tmp_path / "run"
    save_checkpoint(RunPaths(run).checkpoint, {"config": make_config("smoke", data="cifar10").to_dict(),
                                               "model": model.state_dict()})
    weights = tmp_path / "weights"
    digest = pretrained.export(str(run), weights / "tiny.pt", {"steps": 3, "probe_test": 0.5})
    monkeypatch.setattr(pretrained, "WEIGHTS", weights)
    monkeypatch.setattr(pretrained, "SHIPPED", {"tiny": ("tiny.pt", digest)})
    return weights / "tiny.pt"


def test_one_call_loads_the_model_in_float32_from_half_precision(shipped: Path) -> None:
    model, cfg = pretrained.load("tiny")
    torch.manual_seed(0)
    original = SimCLRModel(width=8)
    assert cfg.width == 8 and cfg.data == "cifar10" and not model.training
    for name, tensor in model.state_dict().items():
        assert tensor.dtype == original.state_dict()[name].dtype
        torch.testing.assert_close(tensor, original.state_dict()[name], atol=2e-3, rtol=1e-3)  # half precision
    assert pretrained.card("tiny") == {"steps": 3, "probe_test": 0.5}


def test_a_missing_or_changed_file_is_refused_in_one_line_that_says_what_to_do(shipped: Path) -> None:
    shipped.write_bytes(shipped.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"not the file shipped \(sha256 .*truncated or was changed; restore it "
                                         r"with `git checkout -- simclr_core/weights/tiny.pt`"):
        pretrained.load("tiny")
    shipped.unlink()
    with pytest.raises(FileNotFoundError, match="are missing: restore it with `git checkout"):
        pretrained.load("tiny")
    with pytest.raises(ValueError, match="no pretrained weights named 'huge': choose one of"):
        pretrained.load("huge")


@pytest.mark.slow
def test_the_command_line_probes_the_shipped_encoder(shipped: Path, cifar_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "probed"
    main(["probe", "--pretrained", "tiny", "--out", str(out), "--data", str(cifar_dir), "--no-progress"])
    assert "linear probe test accuracy: SimCLR" in capsys.readouterr().out
    log = load_json(RunPaths(out).probe_log)
    assert log["config"]["data"] == str(cifar_dir) and log["train_images"] == 512  # the smoke probe subset
    trained = tmp_path / "trained"
    save_checkpoint(RunPaths(trained).checkpoint, {"config": make_config("smoke").to_dict(),
                                                   "model": SimCLRModel(8).state_dict()})
    with pytest.raises(RunExistsError, match="already holds a run of its own"):
        pretrained.as_run("tiny", str(trained))


def test_every_shipped_file_matches_its_checksum() -> None:
    for name in pretrained.SHIPPED:
        model, cfg = pretrained.load(name)
        assert sum(p.numel() for p in model.parameters()) > 0 and cfg.holdout >= 0


def test_every_shipped_file_loads_matches_its_card_and_fits_the_size_limit() -> None:
    """The weights in the repository (not a test's): each passes its sha256, holds a model of its config's shape,
    and its card names what the model card promises; all together stay under the 25 MB the repository allows."""
    assert pretrained.SHIPPED, "no weights are shipped"
    total = 0
    for name, (file, _) in pretrained.SHIPPED.items():
        model, cfg = pretrained.load(name)
        card = pretrained.card(name)
        total += (pretrained.WEIGHTS / file).stat().st_size
        with torch.no_grad():
            h = model.encoder(torch.zeros(2, 3, 32, 32))
        assert h.shape == (2, 8 * cfg.width)
        assert card["steps"] == cfg.steps and 0.1 < card["probe_test"] <= 1
        assert {"recipe", "data", "machine", "clock_seconds", "probe_val", "few_label_probe_test",
                "licence"} <= set(card)
    assert total < 25e6
