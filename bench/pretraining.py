"""Pre-training runs of the `quick` preset at fixed steps, each measured in full: the seed spread, accuracy
against pre-training compute, and the head, temperature and pitfall variants.

Every row trains the `quick` preset with a few fields changed, for a fixed number of steps (no time budget,
so the machine's speed cannot change what is learned), then measures the encoder:

- the book's linear probe on h = f(x) and on z = g(h) (all 50,000 training / 10,000 test images);
- the weighted 200-NN accuracy on h (all 50,000 training features as the bank, the published protocol);
- the effective rank (RankMe) and the covariance spectrum of h and z on the 50,000 training images;
- alignment and uniformity of z on two views of 2,000 test images (chapter 6's protocol);
- the run's last held-out SSL metrics (loss, p_pos, top-1) and its seconds.

Groups (`--group`), all at the base configuration's 1,000 steps unless named otherwise:
- `seeds`: seeds 0-4 (the seed also draws the 10,000 training images): the seed-to-seed spread;
- `scaling`: seed 0 at 275 to 4,400 steps (16x; 8,800 is in the group too, not yet run): accuracy against
  images seen;
- `heads`: no projection head and a linear one, seeds 0-2 (the MLP head's are `seeds` 0-2);
- `temperatures`: T = 0.1 and 0.2 (seeds 0 and 1), 0.5 and 1.0 (seed 0); T = 0.05 is the base;
- `augmentations`: chapter 1's ablation again (bench/ablation.py trained it without these measures), seed 0;
- `pitfalls`: the classic mistakes in pre-training (simclr_core.pitfalls, or a config field where the choice is
  legitimate elsewhere): the ImageNet stem, the self-similarity left unmasked, the positive's index off by one,
  embeddings not normalised, pre-training on the test images too (against the same number of training
  images), and negatives not gathered across two processes (against the gathered loss, both under torchrun
  with Gloo); and two in the probe of `seed 0`: features extracted with BatchNorm in training mode, and a
  "linear probe" whose backbone trains (against the same minibatch probe with it frozen);
- `hard negatives`: the runs at T = 0.05 (`seed 0`), 0.2 and 1.0 again, and how often each test image's five
  hardest negatives (its most similar other images, in z and in h) share its class (chapter 4).

Rows are appended to bench/results/pretraining.json as each one finishes (`results.RowFile`); a row already there
(same group and name, same machine kind) is skipped, so the script can be stopped and run again. A row that needs
two processes runs this script again under torchrun, with `--train-row NAME`, to train that row alone. A run whose
loss became NaN is measured at its last checkpoint (pitfall runs save every epoch) and says where it stopped.
Checkpoints stay in runs/bench/NAME. Usage (about 5 minutes a row on a 2-core CPU):

    python bench/pretraining.py --data data/cifar10-jpeg --group seeds scaling heads temperatures \
        augmentations pitfalls
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from simclr_core import distributed, pitfalls
from simclr_core.analysis import (
    alignment,
    covariance_spectrum,
    effective_rank,
    nearest_neighbours,
    uniformity,
    weighted_knn_accuracy,
)
from simclr_core.augment import SSLAugmentation, normalize
from simclr_core.config import REUSE_MAY_CHANGE, Config, environment_default, make_config
from simclr_core.data import ImageSet, load_split
from simclr_core.engine import train_ssl
from simclr_core.knobs import changed_fields
from simclr_core.model import SimCLRModel, load_model
from simclr_core.probe import cached_features, train_linear_probe
from simclr_core.results import RowFile
from simclr_core.runtime import pick_device, uses_bf16
from simclr_core.storage import RunPaths, stored_run_log

BASE_STEPS = 1000  # the ablation's size: 128,000 images seen, about 3 minutes on a 2-core CPU
BASE = dict(steps=BASE_STEPS)
SAVED = dict(steps=BASE_STEPS, save_every=1)  # a run that may diverge keeps a checkpoint of every epoch
# group -> row name -> the row's overrides of the quick preset, and (pitfalls) what else is made wrong: `HOW`
GROUPS: dict[str, dict[str, dict[str, Any]]] = {
    "seeds": {f"seed {seed}": dict(seed=seed, **BASE) for seed in range(5)},
    "scaling": {f"steps {steps}": dict(steps=steps) for steps in (275, 550, 1100, 2200, 4400, 8800)},
    "heads": {f"head {head} seed {seed}": dict(head=head, seed=seed, **BASE)
              for head in ("none", "linear") for seed in range(3)},
    "temperatures": {f"T {t:g} seed {seed}": dict(temperature=t, seed=seed, **BASE)
                     for t, seeds in ((0.1, 2), (0.2, 2), (0.5, 1), (1.0, 1)) for seed in range(seeds)},
    "augmentations": {name: dict(augmentations=steps, **BASE) for name, steps in (  # chapter 1's ablation
        ("crop only", "crop,flip"), ("colour only", "flip,jitter"), ("crop + colour", "crop,flip,jitter"))},
    "pitfalls": {
        "imagenet stem": dict(stem="imagenet", train_resolution=32, **BASE),  # 16x16 views: layer3 gets 1x1
        "self-similarity unmasked": dict(make_loss=pitfalls.unmasked_loss, **SAVED),
        "positive off by one": dict(make_loss=pitfalls.off_by_one_loss, **SAVED),
        "embeddings not normalised": dict(build=pitfalls.build_unnormalised, **SAVED),
        "train + test images": dict(images="train+test", **BASE),
        "20,000 training images": dict(train_subset=20_000, **BASE),  # the control: as many images, none of them test
        "negatives gathered, 2 processes": dict(processes=2, **BASE),
        "negatives not gathered, 2 processes": dict(processes=2, make_loss=pitfalls.local_loss, **BASE),
    },
}
PROBE_PITFALLS = ("BatchNorm in training mode at extraction", "minibatch probe, backbone frozen",
                  "minibatch probe, backbone trains")
# The row keys that say how a pitfall is made, not config fields: "build" and "make_loss" replace the model or the
# loss (train_ssl's arguments), "images": "train+test" pre-trains on both splits, "processes": 2 trains under torchrun
HOW = ("build", "make_loss", "images", "processes")
RESULTS = Path(__file__).parent / "results" / "pretraining.json"
RUNS = Path(__file__).parent.parent / "runs" / "bench"
GEOMETRY_IMAGES = 2000
PROBE_EPOCHS = 1  # the minibatch probes' passes over the 50,000 labelled images (Adam, batch 256)
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
        z1, z2 = (F.normalize(model(torch.stack(v).to(device)).float().cpu(), dim=1) for v in zip(*views, strict=True))
    row["alignment"] = round(alignment(z1, z2), 4)
    row["uniformity"] = round(uniformity(z1), 4)
    row["measure_seconds"] = round(time.perf_counter() - start, 1)
    return row


def split_spec(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A row's config overrides, and how (if at all) it is made wrong."""
    return ({k: v for k, v in spec.items() if k not in HOW}, {k: v for k, v in spec.items() if k in HOW})


def row_config(overrides: dict[str, Any], data: str) -> Config:
    """The quick preset at fixed steps (no time budget), saved at the end, with the row's overrides."""
    return make_config("quick", **{"data": data, "time_budget": 0.0, "save_every": 1000, **overrides})


def train_row(name: str, spec: dict[str, Any], data: str, out: Path) -> dict[str, Any]:
    """Train the row's run into `out` (one process, or under torchrun when it asks for processes)."""
    overrides, how = split_spec(spec)
    cfg = row_config(overrides, data)
    if how.get("processes", 1) > 1 and "WORLD_SIZE" not in os.environ:
        command = ["torchrun", "--standalone", f"--nproc_per_node={how['processes']}", __file__, "--data", data,
                   "--train-row", name]
        subprocess.run(command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return stored_run_log(str(out))
    train_set = None
    if how.get("images") == "train+test":
        train, test = load_split(data, "train", cfg.data_root, cfg.train_subset, cfg.seed), load_split(data, "test")
        train_set = ImageSet(torch.cat([train.images, test.images]), torch.cat([train.labels, test.labels]),
                             train.classes)
    kwargs = {key: how[key] for key in ("build", "make_loss") if key in how}
    try:
        return train_ssl(cfg, str(out), progress=False, overwrite=True, train_set=train_set, **kwargs)
    except FloatingPointError as error:  # the run diverged: keep what it learned before
        log = stored_run_log(str(out))
        return {**log, "diverged": str(error)}


def run_row(name: str, spec: dict[str, Any], data: str) -> dict[str, Any]:
    overrides, how = split_spec(spec)
    cfg = row_config(overrides, data)
    out = RUNS / name.replace(" ", "-").replace(",", "")
    log = stored_run_log(str(out))
    if log is None or not log["finished"] or changed_fields(Config, log["config"], cfg.to_dict(), REUSE_MAY_CHANGE):
        log = train_row(name, spec, data, out)
    device = pick_device(cfg.device)
    build = how.get("build")
    model, _ = load_model(RunPaths(out).checkpoint, device)
    if build is not None:  # the variant's forward (its weights are the checkpoint's)
        variant = build(cfg, device)
        variant.load_state_dict(model.state_dict())
        model = variant
    train, test = load_split(data, "train", cfg.data_root), load_split(data, "test", cfg.data_root)
    measured = measure(model, cfg.probe_steps, cfg.probe_weight_decay, train, test, RunPaths(out).features,
                       device, uses_bf16(cfg.precision, device))
    last = log["evals"][-1]
    return {"name": name, "overrides": overrides, "variant": {k: getattr(v, "__name__", v) for k, v in how.items()},
            "steps": len(log["step_loss"]), "diverged": log.get("diverged"),
            "images_seen": len(log["step_loss"]) * cfg.batch_size, "train_seconds": log["train_seconds"],
            "precision": log["precision"], **measured,
            **{f"ssl_{name}": round(last[name], 4) for name in ("loss", "p_pos", "top1")},
            "step_loss_every_10": log["step_loss"][::10], "train_images": log["train_images"],
            "probe_train_images": len(train), "test_images": len(test)}


HARD_NEGATIVES = {"T 0.05": "seed 0", "T 0.2": "T 0.2 seed 0", "T 1": "T 1 seed 0"}  # row -> the run it measures
HARD_K, HARD_IMAGES = 5, 2000  # each anchor's hardest negatives, among this many test images (chapter 4's protocol)


def hard_negative_row(name: str, data: str) -> dict[str, Any]:
    """After training at one temperature: how often an image's hardest negatives (its `HARD_K` most similar other
    test images, in z and in h) share its class, and how similar the hardest one is."""
    run = HARD_NEGATIVES[name]
    spec = next(rows[run] for rows in GROUPS.values() if run in rows)
    out = RUNS / run.replace(" ", "-").replace(",", "")
    cfg = row_config(split_spec(spec)[0], data)
    log = stored_run_log(str(out))
    if log is None or not log["finished"] or changed_fields(Config, log["config"], cfg.to_dict(), REUSE_MAY_CHANGE):
        train_row(run, spec, data, out)
    model = load_model(RunPaths(out).checkpoint)[0].eval()
    test = load_split(data, "test", cfg.data_root, subset=HARD_IMAGES, seed=0)
    with torch.no_grad():
        h = model.encoder(normalize()(test.images))
        layers = {"z": F.normalize(model.head(h), dim=1), "h": F.normalize(h, dim=1)}
    row: dict[str, Any] = {"of": run, "temperature": cfg.temperature, "anchors": len(test), "k": HARD_K}
    for layer, x in layers.items():
        hardest = nearest_neighbours(x, x, HARD_K, exclude_self=True)
        same_class = test.labels[hardest] == test.labels[:, None]
        row[f"same_class_share_{layer}"] = round(same_class.float().mean().item(), 4)
        row[f"hardest_similarity_{layer}"] = round((x * x[hardest[:, 0]]).sum(1).mean().item(), 4)
    return row


def probe_pitfall_rows(data: str) -> dict[str, dict[str, Any]]:
    """The probe's mistakes, on the `seed 0` run: BatchNorm in training mode, a backbone that trains."""
    out = RUNS / "seed-0"
    cfg = make_config("quick", data=data)
    device = pick_device(cfg.device)
    bf16 = uses_bf16(cfg.precision, device)
    model, _ = load_model(RunPaths(out).checkpoint, device)
    train, test = load_split(data, "train", cfg.data_root), load_split(data, "test", cfg.data_root)
    rows = {}
    start = time.perf_counter()
    train_x, test_x = (pitfalls.extract_features_in_train_mode(model.encoder, images, device, bf16=bf16)
                       for images in (train, test))
    probe = train_linear_probe(train_x, train.labels, test_x, test.labels, cfg.probe_steps, cfg.probe_weight_decay)
    rows[PROBE_PITFALLS[0]] = {"probe_h": round(probe.test_accuracy, 4),
                                                        "seconds": round(time.perf_counter() - start, 1)}
    for trainable in (False, True):
        start = time.perf_counter()
        accuracy, _ = pitfalls.minibatch_probe(model.encoder, train, test, epochs=PROBE_EPOCHS,
                                               trainable_backbone=trainable, device=device, bf16=bf16)
        rows[PROBE_PITFALLS[1 + trainable]] = {"probe_h": round(accuracy, 4), "epochs": PROBE_EPOCHS,
                      "seconds": round(time.perf_counter() - start, 1)}
    return {name: {**row, "of": "seed 0"} for name, row in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--group", nargs="+", default=[*GROUPS, "hard negatives"],
                        choices=[*GROUPS, "hard negatives"])
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file rows are added to")
    parser.add_argument("--train-row", metavar="NAME",
                        help="train that row's run only (what each process of a two-process row runs under torchrun)")
    args = parser.parse_args()
    if args.train_row:
        spec = next(rows[args.train_row] for rows in GROUPS.values() if args.train_row in rows)
        train_row(args.train_row, spec, args.data, RUNS / args.train_row.replace(" ", "-").replace(",", ""))
        distributed.teardown()
        return
    results = RowFile(args.results)
    for group in args.group:
        if group == "hard negatives":
            for name in HARD_NEGATIVES:
                results.record(group, name, lambda name=name: hard_negative_row(name, args.data), args.data)
            continue
        for name, spec in GROUPS[group].items():
            results.record(group, name, lambda name=name, spec=spec: run_row(name, spec, args.data), args.data)
        if group == "pitfalls":
            probe_rows = functools.cache(lambda: probe_pitfall_rows(args.data))  # all three, measured once
            for name in PROBE_PITFALLS:
                results.record(group, name, lambda name=name, rows=probe_rows: rows()[name], args.data)


if __name__ == "__main__":
    main()
