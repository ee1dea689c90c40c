"""How long the linear probe's feature extraction takes on this machine, by batch size.

The probe's cost is almost all in running the frozen encoder over 60,000 images (the L-BFGS fit on cached
features takes seconds). This times `extract_features` on the 10,000 test images at several batch sizes, with
the quick preset's encoder (width 32) in the precision `auto` picks here, and records the median of `--rounds`
passes with the machine. Usage:

    python bench/probe_speed.py --data data/cifar10-jpeg [--checkpoint runs/book/checkpoints/latest.pt]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from simclr_core.config import environment_default, make_config
from simclr_core.data import load_split
from simclr_core.probe import extract_features, load_encoder, random_encoder
from simclr_core.results import RowFile
from simclr_core.runtime import pick_device, uses_bf16

RESULTS = Path(__file__).parent / "results" / "probe_speed.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--checkpoint", help="an encoder to time (default: the quick preset's, at random init)")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[128, 256, 512, 1024])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cfg = make_config("quick", data=args.data)
    device = pick_device(cfg.device)
    encoder = load_encoder(args.checkpoint, device)[0] if args.checkpoint else random_encoder(cfg, device)
    bf16 = uses_bf16(cfg.precision, device)
    images = load_split(args.data, "test", cfg.data_root)
    seconds: dict[int, list[float]] = {size: [] for size in args.batch_sizes}
    for _ in range(args.rounds):  # rounds alternate the sizes, so a slow spell of the machine hits them all
        for size in args.batch_sizes:
            start = time.perf_counter()
            extract_features(encoder, images, device, size, bf16)
            seconds[size].append(time.perf_counter() - start)
    row = {"images": len(images), "width": cfg.width, "precision": "bf16" if bf16 else "fp32",
           "median_seconds": {str(size): round(statistics.median(s), 2) for size, s in seconds.items()},
           "images_per_second": {str(size): round(len(images) / statistics.median(s)) for size, s in seconds.items()},
           "rounds": args.rounds}
    name = f"width {cfg.width}, {'trained' if args.checkpoint else 'random init'}, {row['precision']}"
    RowFile(RESULTS).record("probe speed", name, lambda: row, args.data, redo=True)


if __name__ == "__main__":
    main()
