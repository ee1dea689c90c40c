"""Training throughput of five two-view pipelines feeding the same CIFAR ResNet-18 and NT-Xent step.

- seed:      the seed's way: PIL images, torchvision transforms per image, in a DataLoader worker;
- reference: this project's `--pipeline reference` (per-image transforms on uint8 tensors, DataLoader);
- fast:      this project's default: the batch augmented at once on the device (batch_augment.py);
- kornia:    the same recipe from kornia's batched augmentations (per-sample parameters), on the device;
- lightly:   lightly's SimCLRTransform (per-image PIL, DataLoader) and lightly's NTXentLoss.

Each measurement runs in a fresh process (so peak RSS is its own); the pipelines alternate over rounds, and
each round times `--steps` training steps after one warm-up step. A step is: fetch the next batch of two
views, forward both, NT-Xent, backward, AdamW. We report the median step time, views per second, and the
share of the step spent waiting for augmented views. Usage:

    python bench/throughput.py --data data/cifar10-jpeg [--rounds 2 --steps 3]

Results go to bench/results/throughput-{bf16,fp32}.json with the machine, data copy, precision and date.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from simclr_core.augment import CIFAR10_MEAN, CIFAR10_STD, AugmentationParams, SSLAugmentation, simclr_transform
from simclr_core.batch_augment import DeviceTwoViewLoader
from simclr_core.config import environment_default, make_config
from simclr_core.data import ImageSet, load_split
from simclr_core.engine import train_step
from simclr_core.loss import nt_xent
from simclr_core.model import SimCLRModel
from simclr_core.results import stamp
from simclr_core.runtime import uses_bf16
from simclr_core.storage import save_json

_QUICK = make_config("quick", data="cifar10")
# the quick preset as it trains, and the full-width ResNet-18 at a batch a 2-core CPU steps through in seconds
CONFIGS = {"quick": dict(width=_QUICK.width, batch_size=_QUICK.batch_size), "full": dict(width=64, batch_size=64)}
PIPELINES = ["seed", "reference", "fast", "kornia", "lightly"]
RESULTS_DIR = Path(__file__).parent / "results"


class PILTwoViews(Dataset):
    """What torchvision's CIFAR10 dataset + the seed's SSLAugmentation do: a PIL image, transformed twice."""

    def __init__(self, images: ImageSet, transform):
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images.images[index].permute(1, 2, 0).numpy())
        views = self.transform(image)
        return tuple(views) if isinstance(views, list | tuple) else (views, self.transform(image))


def kornia_augmentation(params: AugmentationParams) -> torch.nn.Module:
    """The recipe from kornia's batched transforms: float images in [0, 1] in, normalised views out."""
    import kornia.augmentation as K

    return torch.nn.Sequential(
        K.RandomResizedCrop((32, 32), scale=params.crop_scale, ratio=params.crop_ratio),
        K.RandomHorizontalFlip(p=params.flip_p),
        K.ColorJitter(params.brightness, params.contrast, params.saturation, params.hue, p=params.jitter_p),
        K.RandomGaussianBlur((params.blur_kernel,) * 2, params.blur_sigma, p=params.blur_p),
        K.Normalize(mean=torch.tensor(CIFAR10_MEAN), std=torch.tensor(CIFAR10_STD)))


def kornia_two_views(images: ImageSet, batch_size: int, params: AugmentationParams):
    """Shuffled batches of uint8 images, each augmented twice by kornia."""
    augment = kornia_augmentation(params)
    while True:
        for indices in torch.randperm(len(images)).split(batch_size)[:len(images) // batch_size]:
            batch = images.images[indices].float() / 255
            yield augment(batch), augment(batch)


def make_loader(pipeline: str, images: ImageSet, batch_size: int):
    params = AugmentationParams()
    loader_args = dict(batch_size=batch_size, shuffle=True, drop_last=True, num_workers=1,
                       persistent_workers=True, generator=torch.Generator().manual_seed(0))
    if pipeline == "fast":
        return DeviceTwoViewLoader(images.images, batch_size, params, seed=0, device="cpu")
    if pipeline == "kornia":
        return kornia_two_views(images, batch_size, params)
    if pipeline == "reference":
        return DataLoader(SSLAugmentation(images, simclr_transform(params)), **loader_args)
    if pipeline == "seed":
        from torchvision.transforms import v2

        per_image = v2.Compose([v2.PILToTensor(), simclr_transform(params)])
        return DataLoader(PILTwoViews(images, per_image), **loader_args)
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=32, cj_prob=params.jitter_p, cj_strength=0.5, min_scale=0.3,
                                random_gray_scale=0.0, gaussian_blur=params.blur_p, sigmas=params.blur_sigma,
                                vf_prob=0.0, hf_prob=params.flip_p, rr_prob=0.0,
                                normalize={"mean": list(CIFAR10_MEAN), "std": list(CIFAR10_STD)})
    return DataLoader(PILTwoViews(images, transform), **loader_args)


def measure(pipeline: str, config: str, steps: int, data: str, bf16: bool) -> dict:
    """Time `steps` training steps after one warm-up; run in its own process."""
    torch.manual_seed(0)
    width, batch_size = CONFIGS[config]["width"], CONFIGS[config]["batch_size"]
    images = load_split(data, "train", subset=batch_size * (steps + 2), seed=0)
    model = SimCLRModel(width).to(memory_format=torch.channels_last)  # as the engine trains on the CPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=1e-4)
    if pipeline == "lightly":
        from lightly.loss import NTXentLoss

        lightly_loss = NTXentLoss(temperature=0.2)
        loss_fn = lambda z1, z2: lightly_loss(z1, z2)  # noqa: E731
    else:
        loss_fn = lambda z1, z2: nt_xent(z1, z2, 0.2)  # noqa: E731
    batches = iter(make_loader(pipeline, images, batch_size))
    step_times, wait_times = [], []
    for step in range(steps + 1):
        start = time.perf_counter()
        x1, x2 = next(batches)
        fetched = time.perf_counter()
        train_step(model, optimizer, x1, x2, loss_fn, torch.device("cpu"), bf16)
        if step:  # the first step warms up workers, caches and allocators
            step_times.append(time.perf_counter() - start)
            wait_times.append(fetched - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + \
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"step_times": step_times, "wait_times": wait_times, "peak_rss_mb": peak_kb / 1024}


def augmentation_only(data: str, batch_size: int = 256, repeats: int = 5) -> dict:
    """Seconds to make one batch of two views, single process, per pipeline (no training)."""
    images = load_split(data, "train", subset=batch_size, seed=0)
    per_image = simclr_transform()
    from simclr_core.batch_augment import BatchAugmentation

    batched = BatchAugmentation()
    kornia = kornia_augmentation(AugmentationParams())
    makers = {"per-image (torchvision)": lambda: [per_image(img) for img in images.images for _ in (0, 1)],
              "batched (fast)": lambda: (batched(images.images), batched(images.images)),
              "batched (kornia)": lambda: (kornia(images.images.float() / 255), kornia(images.images.float() / 255))}
    timings = {}
    for name, make in makers.items():
        make()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            make()
            times.append(time.perf_counter() - start)
        timings[name] = statistics.median(times)
    return {"batch_size": batch_size, "seconds_per_batch_of_two_views": timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=environment_default("data"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--pipelines", nargs="*", default=PIPELINES, choices=PIPELINES)
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                        help="as the config field: auto = bf16 on CPUs with AMX, else fp32")
    parser.add_argument("--one", nargs=2, metavar=("PIPELINE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    bf16 = uses_bf16(args.precision, torch.device("cpu"))
    if args.one:
        print(json.dumps(measure(*args.one, args.steps, args.data, bf16)))
        return

    samples: dict[tuple[str, str], list[dict]] = {}
    for config in CONFIGS:
        for round_ in range(args.rounds):
            for pipeline in args.pipelines:
                command = [sys.executable, __file__, "--one", pipeline, config, "--steps", str(args.steps),
                           "--data", args.data, "--precision", args.precision]
                result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
                samples.setdefault((pipeline, config), []).append(result)
                print(f"round {round_ + 1} {config:>5} {pipeline:>9}: median step "
                      f"{statistics.median(result['step_times']):.2f} s", flush=True)

    rows = []
    for (pipeline, config), runs in samples.items():
        step = statistics.median(t for r in runs for t in r["step_times"])
        wait = statistics.median(t for r in runs for t in r["wait_times"])
        views = 2 * CONFIGS[config]["batch_size"]
        rows.append({"pipeline": pipeline, "config": config, **CONFIGS[config], "median_step_s": round(step, 3),
                     "views_per_s": round(views / step, 1), "share_waiting_for_views": round(wait / step, 3),
                     "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs))})
    for config in CONFIGS:
        fast = next(r for r in rows if r["pipeline"] == "fast" and r["config"] == config)
        for row in rows:
            if row["config"] == config:
                row["fast_speedup"] = round(row["median_step_s"] / fast["median_step_s"], 2)
    report = {**stamp(args.data), "precision": "bf16" if bf16 else "fp32", "rounds": args.rounds,
              "steps": args.steps, "augmentation_only": augmentation_only(args.data), "rows": rows}
    save_json(RESULTS_DIR / f"throughput-{report['precision']}.json", report)  # one report a precision, rewritten
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
