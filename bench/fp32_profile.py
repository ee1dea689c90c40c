"""Where a float32 training step and a float32 feature extraction spend their time, and what moves them.

On a CPU without bf16 units (most laptops; the project's Intel Ice Lake machines) the network runs in float32.
This script measures, in float32 on the machine it runs on (pass `--precision bf16` to compare):

- the FLOPs of one `quick` training step (forward and backward, counted by torch's FlopCounterMode) and the
  fraction of the machine's float32 peak the step reaches (`--peak-gflops`, from cores x clock x FLOP a cycle);
- the step's time by operator (torch.profiler, forward and backward kernels apart), largest first;
- levers at equal work: memory layout (channels_last against contiguous), batch size (time per image),
  flushing denormals to zero, and torch.compile;
- feature extraction (the probe's cost) in images per second, by batch size and layout.

Each timing is the median of `--repeats` measurements after warm-up, on one process. Results go to
bench/results/fp32_profile.json (one row per run, with the machine). Usage (about 5 minutes):

    python bench/fp32_profile.py [--precision fp32] [--peak-gflops 166]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from simclr_core.augment import normalize
from simclr_core.batch_augment import two_view_loader
from simclr_core.config import make_config
from simclr_core.data import ImageSet
from simclr_core.engine import objective, train_step
from simclr_core.model import build_model
from simclr_core.optim import make_optimizer
from simclr_core.results import RowFile

RESULTS = Path(__file__).parent / "results" / "fp32_profile.json"


def random_images(n: int) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    return ImageSet(images, torch.arange(n) % 10, [str(c) for c in range(10)])


def step_setup(batch_size: int, layout: torch.memory_format, compile_model: bool = False):
    """A quick-preset model, optimizer and an endless supply of augmented batches, in `layout`."""
    cfg = make_config("quick", data="cifar10", batch_size=batch_size)
    device = torch.device("cpu")
    torch.manual_seed(0)
    model = build_model(cfg, device).to(memory_format=layout)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
    loader = two_view_loader(random_images(4 * batch_size), cfg, shuffle=True, seed=0, device=device)
    batches = (pair for _ in iter(int, 1) for pair in loader)
    forward = torch.compile(model) if compile_model else model
    return cfg, model, forward, optimizer, batches


def median_seconds(run, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_seconds(batch_size: int, layout: torch.memory_format, bf16: bool, repeats: int,
                 compile_model: bool = False) -> float:
    cfg, model, forward, optimizer, batches = step_setup(batch_size, layout, compile_model)
    loss_fn = objective(cfg)

    def run() -> None:
        x1, x2 = next(batches)
        x1, x2 = (x.contiguous(memory_format=layout) for x in (x1, x2))
        train_step(forward, optimizer, x1, x2, loss_fn, torch.device("cpu"), bf16).item()

    return median_seconds(run, repeats, warmup=8 if compile_model else 3)


def step_flops(bf16: bool) -> int:
    cfg, model, forward, optimizer, batches = step_setup(128, torch.channels_last)
    x1, x2 = next(batches)
    with FlopCounterMode(display=False) as counter:
        train_step(forward, optimizer, x1, x2, objective(cfg), torch.device("cpu"), bf16)
    return counter.get_total_flops()


def operator_profile(bf16: bool, top: int = 12) -> list[dict[str, Any]]:
    cfg, model, forward, optimizer, batches = step_setup(128, torch.channels_last)
    loss_fn = objective(cfg)
    for _ in range(3):
        train_step(forward, optimizer, *next(batches), loss_fn, torch.device("cpu"), bf16)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            train_step(forward, optimizer, *next(batches), loss_fn, torch.device("cpu"), bf16)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3),
             "ms_per_step": round(e.self_cpu_time_total / 5 / 1000, 2)} for e in events[:top]]


def extraction_images_per_second(batch_size: int, layout: torch.memory_format, bf16: bool, repeats: int) -> float:
    """The probe's extraction loop (`probe.encode`: normalise, forward in eval mode) with weights and inputs in
    `layout`."""
    cfg = make_config("quick", data="cifar10")
    torch.manual_seed(0)
    encoder = build_model(cfg, torch.device("cpu")).encoder.to(memory_format=layout).eval()
    images = normalize()(random_images(2048).images)

    @torch.inference_mode()
    def run() -> None:
        for i in range(0, len(images), batch_size):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                encoder(images[i:i + batch_size].contiguous(memory_format=layout)).float()

    return len(images) / median_seconds(run, repeats, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--peak-gflops", type=float, default=0.0,
                        help="this machine's peak in the chosen precision (cores x GHz x FLOP a cycle), for the "
                             "fraction of peak; 0: not reported")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args()
    bf16 = args.precision == "bf16"
    row: dict[str, Any] = {"precision": args.precision}
    flops = step_flops(bf16)
    base = step_seconds(128, torch.channels_last, bf16, args.repeats)
    row["step"] = {"gflop": round(flops / 1e9, 2), "seconds": round(base, 4),
                   "gflops_per_second": round(flops / 1e9 / base, 1)}
    if args.peak_gflops:
        row["step"]["fraction_of_peak"] = round(flops / 1e9 / base / args.peak_gflops, 3)
        row["peak_gflops"] = args.peak_gflops
    print(json.dumps(row), flush=True)
    row["operators"] = operator_profile(bf16)
    row["levers"] = {"contiguous layout": round(step_seconds(128, torch.contiguous_format, bf16, args.repeats), 4)}
    for batch in (64, 256):
        row["levers"][f"batch {batch} (seconds per 128 images)"] = round(
            step_seconds(batch, torch.channels_last, bf16, args.repeats) * 128 / batch, 4)
    torch.set_flush_denormal(True)
    row["levers"]["denormals flushed"] = round(step_seconds(128, torch.channels_last, bf16, args.repeats), 4)
    torch.set_flush_denormal(False)
    if not args.skip_compile:
        row["levers"]["torch.compile"] = round(step_seconds(128, torch.channels_last, bf16, args.repeats, True), 4)
    print(json.dumps(row["levers"]), flush=True)
    row["extraction_images_per_second"] = {
        f"batch {batch}, {name}": round(extraction_images_per_second(batch, layout, bf16, 3), 1)
        for batch in (64, 128, 256, 512)
        for name, layout in (("channels_last", torch.channels_last), ("contiguous", torch.contiguous_format))}
    print(json.dumps(row["extraction_images_per_second"]), flush=True)
    RowFile(RESULTS).record("fp32 profile", f"quick step, {args.precision}", lambda: row, "random images",
                            redo=True)


if __name__ == "__main__":
    main()
