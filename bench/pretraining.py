"""Pre-training runs of the `quick` preset at fixed steps, each measured in full: the seed spread, accuracy
against pre-training compute, and (chapter 8) the head, temperature and pitfall variants.

Every row trains the `quick` preset with a few fields changed, for a fixed number of steps (no time budget,
so the machine's speed cannot change what is learned), then measures the encoder:

- the book's linear probe on h = f(x) and on z = g(h) (all 50,000 training / 10,000 test images);
- the weighted 200-NN accuracy on h (all 50,000 training features as the bank, the published protocol);
- the effective rank (RankMe) and the covariance spectrum of h and z on the 50,000 training images;
- alignment and uniformity of z on two views of 2,000 test images (chapter 6's protocol);
- the run's last held-out SSL metrics (loss, p_pos, top-1) and its seconds.

Groups (`--group`): `seeds` (the base configuration at 1,000 steps, seeds 0-4: the seed-to-seed spread) and
`scaling` (seed 0 at 550 to 8,800 steps: accuracy against images seen). Rows are appended to
bench/results/pretraining.json as each one finishes; a row already there (same name, same machine kind) is
skipped, so the script can be stopped and run again. Checkpoints stay in runs/bench/NAME. Usage:

    python bench/pretraining.py --data data/cifar10-jpeg --group seeds scaling
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from simclr_core.analysis import alignment, covariance_spectrum, effective_rank, uniformity, weighted_knn_accuracy
from simclr_core.augment import SSLAugmentation
from simclr_core.config import make_config
from simclr_core.data import ImageSet, load_split
from simclr_core.engine import train_ssl
from simclr_core.model import SimCLRModel, load_model
from simclr_core.probe import cached_features, train_linear_probe
from simclr_core.runtime import cpu_bf16_units, pick_device, uses_bf16
from simclr_core.storage import RunPaths, stored_run_log

BASE_STEPS = 1000  # the ablation's size: 128,000 images seen, about 3 minutes on a 2-core CPU
GROUPS: dict[str, dict[str, dict[str, Any]]] = {  # group -> row name -> overrides of the quick preset
    "seeds": {f"seed {seed}": dict(seed=seed, steps=BASE_STEPS) for seed in range(5)},
    "scaling": {f"steps {steps}": dict(steps=steps) for steps in (550, 1100, 2200, 4400, 8800)},
}
RESULTS = Path(__file__).parent / "results" / "pretraining.json"
RUNS = Path(__file__).parent.parent / "runs" / "bench"
GEOMETRY_IMAGES = 2000
SPECTRUM_VALUES = 64  # the largest eigenvalues stored per layer (enough to draw the spectrum's shape)


def embeddings(model: SimCLRModel, images: ImageSet, cache: Path, device: torch.device,
               bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """h = f(x) (cached like the probe's) and z = normalize(g(h)) for every image."""
    h = cached_features(model.encoder, images, cache, device, bf16)
    with torch.no_grad():
        z = F.normalize(model.head.cpu().eval()(h), dim=1)
    model.head.to(device)
    return h, z


def measure(model: SimCLRModel, cfg_probe_steps: int, probe_weight_decay: float, train: ImageSet, test: ImageSet,
            cache: Path, device: torch.device, bf16: bool) -> dict[str, Any]:
    """Every label-using and label-free measure of one encoder (see the module docstring)."""
    start = time.perf_counter()
    (h_train, z_train), (h_test, z_test) = (embeddings(model, images, cache, device, bf16) for images in (train, test))
    row: dict[str, Any] = {}
    for layer, (x_train, x_test) in {"h": (h_train, h_test), "z": (z_train, z_test)}.items():
        probe = train_linear_probe(x_train, train.labels, x_test, test.labels, cfg_probe_steps, probe_weight_decay)
        row[f"probe_{layer}"] = round(probe.test_accuracy, 4)
        row[f"effective_rank_{layer}"] = round(effective_rank(x_train), 2)
        row[f"spectrum_{layer}"] = [float(f"{v:.4g}") for v in covariance_spectrum(x_train)[:SPECTRUM_VALUES]]
    row["knn200_h"] = round(weighted_knn_accuracy(h_train, train.labels, h_test, test.labels), 4)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)  # the same views for every row
    pairs = SSLAugmentation(test.subset(torch.arange(GEOMETRY_IMAGES)))
    views = [pairs[i] for i in range(len(pairs))]
    torch.random.set_rng_state(generator_state)
    model.eval()
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        z1, z2 = (model(torch.stack(v).to(device)).float().cpu() for v in zip(*views, strict=True))
    row["alignment"] = round(alignment(z1, z2), 4)
    row["uniformity"] = round(uniformity(z1), 4)
    row["measure_seconds"] = round(time.perf_counter() - start, 1)
    return row


def machine_kind() -> str:
    return f"{os.cpu_count()} cores, bf16 units: {cpu_bf16_units()}"


def run_row(name: str, overrides: dict[str, Any], data: str) -> dict[str, Any]:
    cfg = make_config("quick", data=data, time_budget=0.0, save_every=1000, **overrides)
    out = RUNS / name.replace(" ", "-")
    log = stored_run_log(str(out))
    if log is None or not log["finished"] or log["config"] != cfg.to_dict():
        log = train_ssl(cfg, str(out), progress=False, overwrite=True)
    device = pick_device(cfg.device)
    model, _ = load_model(RunPaths(out).checkpoint, device)
    train, test = load_split(data, "train", cfg.data_root), load_split(data, "test", cfg.data_root)
    measured = measure(model, cfg.probe_steps, cfg.probe_weight_decay, train, test, RunPaths(out).features,
                       device, uses_bf16(cfg.precision, device))
    last = log["evals"][-1]
    return {"name": name, "overrides": overrides, "steps": log["total_steps"],
            "images_seen": log["total_steps"] * cfg.batch_size, "train_seconds": log["train_seconds"],
            "precision": log["precision"], **measured,
            **{f"ssl_{name}": round(last[name], 4) for name in ("loss", "p_pos", "top1")},
            "probe_train_images": len(train), "test_images": len(test),
            "data": os.path.basename(os.path.normpath(data)), "machine": log["machine"],
            "machine_kind": machine_kind(), "date": datetime.date.today().isoformat()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("SIMCLR_DATA", "cifar10"))
    parser.add_argument("--group", nargs="+", default=list(GROUPS), choices=list(GROUPS))
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file rows are added to")
    args = parser.parse_args()
    for group in args.group:
        for name, overrides in GROUPS[group].items():
            rows = json.loads(args.results.read_text()) if args.results.is_file() else []
            if any(r["name"] == name and r["machine_kind"] == machine_kind() for r in rows):
                continue
            row = {"group": group, **run_row(name, overrides, args.data)}
            rows = json.loads(args.results.read_text()) if args.results.is_file() else []
            args.results.write_text(json.dumps(rows + [row], indent=1) + "\n")
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("spectrum")}), flush=True)


if __name__ == "__main__":
    main()
