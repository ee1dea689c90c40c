"""bfloat16 autocast: when the config's precision turns it on, and that it computes what float32 does."""

from __future__ import annotations

import math

import torch

from simclr_core.engine import embed_pairs
from simclr_core.model import SimCLRModel
from simclr_core.runtime import has_bf16_matrix_units, uses_bf16

CPU = torch.device("cpu")


def test_precision_setting_resolves_per_device() -> None:
    assert uses_bf16("bf16", CPU) and not uses_bf16("fp32", CPU)
    assert uses_bf16("auto", CPU) == has_bf16_matrix_units(CPU)
    assert not uses_bf16("auto", torch.device("mps"))  # no bf16 autocast on Apple GPUs here


def test_bf16_embeddings_stay_close_to_float32() -> None:
    torch.manual_seed(0)
    model = SimCLRModel(width=16).eval()
    x1, x2 = torch.randn(2, 32, 3, 32, 32)
    with torch.no_grad():
        exact = embed_pairs(model, x1, x2, CPU, bf16=False)
        rounded = embed_pairs(model, x1, x2, CPU, bf16=True)
    for a, b in zip(exact, rounded, strict=True):
        assert b.dtype == torch.float32  # the loss always sees float32
        cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
        assert cosine.min() > 0.99, cosine.min()  # bf16 keeps 8 bits of mantissa: close, not equal
        assert not torch.equal(a, b)


def test_training_log_records_the_precision_used(cifar_train, cifar_test, tmp_path) -> None:
    from simclr_core.config import make_config
    from simclr_core.engine import train_ssl

    for precision in ("fp32", "bf16"):
        cfg = make_config("smoke", data="cifar10", epochs=1, precision=precision)
        log = train_ssl(cfg, str(tmp_path / precision), progress=False, train_set=cifar_train, eval_set=cifar_test)
        assert log["precision"] == precision and all(math.isfinite(loss) for loss in log["step_loss"])
