"""Time to accuracy on this machine: train each candidate CPU configuration, then probe it.

Each candidate is the `quick` preset with a few fields changed; the result is the linear-probe test accuracy
(SimCLR and the same network at random init) against the seconds the training took. The winner becomes the
`quick` preset. Usage:

    python bench/time_to_accuracy.py --data data/cifar10-jpeg [--only NAME ...]
    python bench/time_to_accuracy.py --record RUN_DIR NAME   # a run trained and probed by the command line

Results are appended to bench/results/time_to_accuracy.json with the machine (CPU model and bf16 units), data
copy and date. Rows before 2026-11-28 changed the `quick` preset of their day (fixed epochs, no time budget).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any

from simclr_core.config import Config, environment_default, make_config
from simclr_core.engine import train_ssl
from simclr_core.probe import run_probe
from simclr_core.results import RowFile
from simclr_core.storage import RunPaths, load_json

# Each candidate is the `quick` preset (5 minutes of training, whatever the machine) with these fields changed;
# the adopted preset is the empty one. Earlier candidates (epochs, widths, temperatures, LARS) are in the results.
CANDIDATES: dict[str, dict] = {
    "quick": {},  # adopted: width 32, 10k images, 16x16 views, T 0.05, 300 s
    "res32": dict(train_resolution=32),  # the full resolution: a third of the steps
    "res24": dict(train_resolution=24),
    "sub25k": dict(train_subset=25_000),  # more images, fewer passes over each
    "all50k": dict(train_subset=0),
}
RESULTS = Path(__file__).parent / "results" / "time_to_accuracy.json"


def result_row(overrides: dict[str, Any], log: dict[str, Any], probe: dict[str, Any]) -> dict[str, Any]:
    return {
        "overrides": overrides, "train_seconds": log["train_seconds"], "precision": log["precision"],
        "steps": len(log["step_loss"]), "epochs": log["epochs"][-1]["epoch"],
        "simclr_test_accuracy": round(probe["simclr"]["test_accuracy"], 4),
        "random_test_accuracy": round(probe["random"]["test_accuracy"], 4),
        "probe_train_images": probe["train_images"], "test_images": probe["test_images"],
        "probe_seconds": probe.get("probe_seconds")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--only", nargs="*", default=sorted(CANDIDATES), choices=sorted(CANDIDATES))
    parser.add_argument("--record", nargs=2, metavar=("RUN_DIR", "NAME"),
                        help="append the result of a run already trained and probed with the command line")
    parser.add_argument("--note", default="", help="with --record: how the run was made, stored with it")
    args = parser.parse_args()
    results = RowFile(RESULTS)
    if args.record:
        run, name = args.record
        log, probe = load_json(RunPaths(run).ssl_log), load_json(RunPaths(run).probe_log)
        quick = make_config("quick").to_dict()
        overrides = {key: value for key, value in log["config"].items() if quick[key] != value and key != "data"}
        results.record("recorded", name, lambda: {**result_row(overrides, log, probe), "note": args.note},
                       log["config"]["data"], redo=True)
        return
    for name in args.only:
        cfg = make_config("quick", data=args.data, eval_batches=2, save_every=100, **CANDIDATES[name])
        out = tempfile.mkdtemp(prefix=f"tta-{name}-")

        def trained_and_probed(cfg: Config = cfg, out: str = out, name: str = name) -> dict[str, Any]:
            log = train_ssl(cfg, out, progress=False)
            return result_row(CANDIDATES[name], log, run_probe(out, progress=False))

        results.record("candidates", name, trained_and_probed, args.data, redo=True)
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
