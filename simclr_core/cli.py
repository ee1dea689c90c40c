"""`python -m simclr_core train | probe | plots`: the reference's three scripts as one command line.

Every field of `Config` is also a `train` flag (`--batch-size 256`, `--temperature 0.5`, ...), applied on top
of the chosen preset; `probe` takes the probe settings, the data and the device, applied on top of the config
stored in the checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .config import ENVIRONMENT, PRESETS, Config, describe_preset, from_environment, make_config
from .engine import Run
from .knobs import PROBE, names_with_role
from .resume import TrainingStopped
from .runtime import pick_device
from .storage import RunExistsError, RunFolderBusy, WriteFailed

LONG_RUN_SECONDS = 3600  # a CPU run estimated longer than this starts only when confirmed (or with --yes)
# The fields `probe` reads: where the images are, where and how to compute, and the probe's own knobs; the rest
# (architecture, seed, ...) come from the checkpoint it probes.
PROBE_FIELDS = ("data", "data_root", "device", "precision", *names_with_role(Config, PROBE))


def _boolean(text: str) -> bool:
    if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("1", "true", "yes")


FIELD_TYPES = {"int": int, "float": float, "str": str, "bool": _boolean}


def _add_config_flags(parser: argparse.ArgumentParser, title: str, config_class: type, names: Collection[str],
                      reference: str) -> None:
    """A flag for each field of `config_class` in `names`, with the field's help and choices (knobs.py); its
    default is None, so that only the flags given override the preset (or the checkpoint)."""
    group = parser.add_argument_group(title)
    for field in fields(config_class):
        if field.name not in names:
            continue
        choices = field.metadata["choices"] or None
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, default=None,
                           type=FIELD_TYPES[str(field.type)], choices=choices,
                           metavar=None if choices else str(field.type).upper(),
                           help=f"{field.metadata['help']} ({reference}: {field.default!r})")


def _overrides(args: argparse.Namespace, config_class: type = Config) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in fields(config_class) if getattr(args, f.name, None) is not None}


def default_preset(device: torch.device) -> str:
    """The preset `train` runs when none is named: the reference with a CUDA GPU, else quick (minutes on a
    CPU), so that a bare `train` never starts a run of days."""
    return "reference" if device.type == "cuda" else "quick"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simclr_core",
        description="SimCLR from scratch: contrastive pre-training, linear probe, plots. Outputs go to "
                    "OUT/checkpoints/latest.pt, OUT/logs/*.json and OUT/plots/*.png.",
        epilog=f"Data: --data cifar10 downloads CIFAR-10 into --data-root; --data PATH reads a folder "
               f"with train/ and test/ class folders; the {ENVIRONMENT['data']} environment variable sets the "
               f"default. Example: python -m simclr_core train --preset quick")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_train_command(commands)
    probe = _add_probe_command(commands)
    _add_label_budget_commands(commands, probe)
    plots = commands.add_parser("plots", help="draw the four figures from the logs "
                                              "(the reference's visualizations.py)")
    plots.add_argument("--out", required=True, help="the run's output folder, e.g. runs/quick")
    return parser


def _add_train_command(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train", help="contrastive pre-training (the reference's train.py)",
        description="Pre-train the encoder with NT-Xent; writes a checkpoint and logs every --save-every epochs "
                    "and at the end. A folder that already holds a run is never replaced unless you say so "
                    "(--resume or --overwrite), and one process at a time trains into a folder. On a CPU, a "
                    "few steps are timed first; a run estimated at over an hour asks before it starts.")
    train.add_argument("--preset", choices=sorted(PRESETS),
                       help="reference: the seed's 100-epoch run (for a GPU); fast: tuned for one GPU; quick: "
                            "minutes on a CPU; smoke: a few steps, to check the wiring (default: reference "
                            "with a CUDA GPU, else quick)")
    train.add_argument("--out", help="output folder (default: runs/PRESET)")
    existing = train.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue the run in --out from checkpoints/latest.pt (its config, plus any "
                               "flags given here that are safe to change, such as --epochs)")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace the run in --out: its checkpoint, logs and plots are deleted when the "
                               "new run starts")
    train.add_argument("--yes", action="store_true",
                       help="start a CPU run estimated at over an hour without asking")
    train.add_argument("--stop-at-step", type=int, default=0, metavar="N",
                       help="save a checkpoint and stop after step N, to continue later with --resume (a long "
                            "run in pieces)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(train, "config overrides (default: the preset's value; in brackets: the reference's)",
                      Config, [f.name for f in fields(Config)], "reference")


def _add_probe_command(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    probe = commands.add_parser("probe", help="linear probe: trained vs random-init encoder "
                                              "(the reference's linear_probe.py)",
                                description="Train a linear classifier on frozen features of the "
                                            "checkpoint in OUT and of a random-init encoder; write "
                                            "OUT/logs/probe_results.json. Everything else (architecture, "
                                            "seed) comes from the checkpoint.")
    probe.add_argument("--out", help="the training run's output folder, e.g. runs/quick (with --pretrained: where "
                                     "its probe log goes, default runs/pretrained-NAME)")
    probe.add_argument("--pretrained", metavar="NAME",
                       help="probe the encoder shipped with the package instead of a run (simclr_core/weights: "
                            "long, the book's long CPU run)")
    probe.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(probe, "probe settings (default: the checkpoint's value; in brackets: the reference's)",
                      Config, PROBE_FIELDS, "reference")
    return probe


def _duration(seconds: float) -> str:
    """Seconds as a person reads them: "41 s", "7 min", "245 hours"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.0f} hours"


def confirm_long_run(cfg: Config, assume_yes: bool) -> None:
    """On a CPU, time one training step and say how long the run will take; a run of over an hour starts
    only when the user confirms it (or passed --yes), so no default can start days of work."""
    from .data import split_size
    from .engine import seconds_per_step

    device = pick_device(cfg.device)
    if device.type != "cpu" or distributed.setup().world_size > 1:
        return
    if 0 < cfg.time_budget <= LONG_RUN_SECONDS:
        return  # the run plans its own steps to fit its budget
    images = split_size(cfg.data, "train")
    steps = cfg.steps or cfg.epochs * (min(cfg.train_subset or images, images) // cfg.batch_size)
    print("timing one training step on this CPU: ", end="", file=sys.stderr, flush=True)
    per_step = seconds_per_step(cfg, device)
    length = _duration(steps * per_step)
    print(f"{per_step:.2f} s, so {steps:,} steps take about {length}, plus evaluations", file=sys.stderr)
    if steps * per_step <= LONG_RUN_SECONDS:
        return
    warning = (f"this run would train for about {length} on this CPU (a GPU takes far less; on a CPU, choose "
               f"a smaller --preset or fewer --epochs)")
    if assume_yes:
        print(f"warning: {warning}", file=sys.stderr)
    elif not sys.stdin.isatty():
        raise ValueError(f"{warning}. Not started: pass --yes to start it anyway")
    elif input(f"{warning}. Start it? [y/N] ").strip().lower() not in ("y", "yes"):
        raise ValueError("not started")


def run_train(args: argparse.Namespace) -> None:
    """`train`: pick the preset and folder, hold the folder, check what is in it, confirm long runs, train."""
    from .engine import hold_run_folder, train_ssl
    from .resume import checkpoint_config
    from .storage import refuse_to_replace

    preset = args.preset or default_preset(pick_device(args.device or "auto"))
    out = args.out or str(Path("runs") / preset)
    if args.preset is None and not args.resume:
        print(f"no --preset given: {preset}, sized for this machine (see --help)", file=sys.stderr)
    cfg = (checkpoint_config(out, _overrides(args)) if args.resume
           else make_config(preset, **{**from_environment(), **_overrides(args)}))
    try:
        with hold_run_folder(out):
            if not args.resume:  # before timing anything: a folder in use or holding a run fails at once
                refuse_to_replace(out, args.overwrite)
                confirm_long_run(cfg, args.yes)
            log = train_ssl(cfg, out, progress=not args.no_progress, resume=args.resume, overwrite=args.overwrite,
                            on_start=lambda run: print(start_banner(run), flush=True),
                            stop_at_step=args.stop_at_step)
    finally:
        distributed.teardown()
    if log["evals"]:  # only the main process evaluates and writes
        last = log["evals"][-1]
        print(f"trained {len(log['step_loss'])} steps ({log['epochs'][-1]['epoch']} epochs) in "
              f"{log['train_seconds']:.0f} s: held-out loss "
              f"{last['loss']:.3f}, p_pos {last['p_pos']:.3f}, top-1 {last['top1']:.3f}; checkpoint in "
              f"{out}/checkpoints/latest.pt. Next: python -m simclr_core probe --out {out}")


def start_banner(run: Run) -> str:
    """Two lines that say what is about to run and where it goes, before the first step."""
    cfg, log = run.cfg, run.log
    data = f"{cfg.data} in {cfg.data_root}" if cfg.data == "cifar10" else cfg.data
    done, total, per_epoch = len(log["step_loss"]), log["total_steps"], log["steps_per_epoch"]
    resumed = f", resuming after step {done:,}" if done else ""
    plan = f"the {cfg.time_budget:g} s budget fits {total:,} steps" if cfg.time_budget else f"{total:,} steps"
    return (f"training: {describe_preset(cfg.to_dict())} on {run.device} in {log['precision_reason']}; data {data}: "
            f"{len(run.train_set):,} training images, {len(run.eval_set):,} held-out\n"
            f"{plan} of {cfg.batch_size} images ({total / per_epoch:.3g} epochs of {per_epoch:,} steps)"
            f"{resumed}; output in {run.out}")


def _add_label_budget_commands(commands: argparse._SubParsersAction, probe: argparse.ArgumentParser) -> None:
    """`probe --labels-per-class N` and the `supervised` command: what a few labels buy (chapter 7)."""
    from .supervised import SupervisedConfig

    budget = probe.add_argument_group("label budget")
    budget.add_argument("--labels-per-class", type=int, default=0,
                        help="train the probes on N labelled images of each class (default: all the images); "
                             "the log goes to OUT/logs/probe_results_N_per_class_seedS.json")
    budget.add_argument("--label-seed", type=int, default=0, help="which labelled images (default: 0)")
    supervised = commands.add_parser(
        "supervised", help="train the ResNet-18 with labels: from scratch, or fine-tuning a SimCLR run (--init)",
        description="Cross-entropy on --labels-per-class labelled images of each class, with the SimCLR "
                    "augmentations; writes OUT/checkpoints/latest.pt and OUT/logs/supervised_results.json.")
    supervised.add_argument("--out", required=True, help="output folder of this run")
    supervised.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(supervised, "settings", SupervisedConfig, [f.name for f in fields(SupervisedConfig)],
                      "default")


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        run_train(args)
    elif args.command == "probe":
        from .probe import run_probe

        out, overrides = args.out, _overrides(args)
        if args.pretrained:
            from .pretrained import as_run

            out = as_run(args.pretrained, out or f"runs/pretrained-{args.pretrained}",
                         {**from_environment(), **overrides})
        elif out is None:
            raise ValueError("probe needs --out RUN_FOLDER (a run trained with `train`), or --pretrained NAME")
        log = run_probe(out, overrides, not args.no_progress, args.labels_per_class, args.label_seed)
        validation = (f"; on the {log['validation_images']} held-out training images: SimCLR "
                      f"{log['validation']['simclr']:.4f}, random init {log['validation']['random']:.4f}"
                      if "validation" in log else "")
        print(f"linear probe test accuracy: SimCLR {log['simclr']['test_accuracy']:.4f}, "
              f"random init {log['random']['test_accuracy']:.4f} "
              f"({log['train_images']} train / {log['test_images']} test images){validation}")
    elif args.command == "supervised":
        from .supervised import SupervisedConfig, train_supervised

        cfg = SupervisedConfig(**{**from_environment(), **_overrides(args, SupervisedConfig)})
        log = train_supervised(cfg, args.out, progress=not args.no_progress)
        print(f"{'fine-tuned ' + cfg.init if cfg.init else 'from scratch'}: {log['train_images']} labelled images, "
              f"{len(log['step_loss'])} steps in {log['train_seconds']:.0f} s: test accuracy "
              f"{log['test_accuracy']:.4f} ({log['test_images']} images); run in {args.out}")
    else:
        from .plots import save_all

        for path in save_all(args.out):
            print(path)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes end with one line that says what to do, not a traceback."""
    try:
        run(argv)
    except (ValueError, FileNotFoundError, PermissionError, FloatingPointError, RunExistsError,
            RunFolderBusy, WriteFailed) as error:
        sys.exit(f"error: {error}")
    except TrainingStopped as stopped:
        print(stopped, file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit("interrupted: the last checkpoint written (if any) is kept; resume with train --resume")


def train_main() -> None:
    main(["train", *sys.argv[1:]])


def probe_main() -> None:
    main(["probe", *sys.argv[1:]])


def plots_main() -> None:
    main(["plots", *sys.argv[1:]])
