"""`python -m simclr_core train | probe | plots`: the reference's three scripts as one command line.

Every field of `Config` is also a flag (`--batch-size 256`, `--temperature 0.5`, ...), applied on top of
the chosen preset (train) or of the config stored in the checkpoint (probe).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import MISSING, fields
from typing import Any

from . import distributed
from .config import DATA_ENV_VAR, PRESETS, Config, make_config
from .resume import TrainingStopped


def _boolean(text: str) -> bool:
    if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("1", "true", "yes")


FIELD_TYPES = {"int": int, "float": float, "str": str, "bool": _boolean}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("config overrides (default: the preset's value)")
    for field in fields(Config):
        default = field.default if field.default is not MISSING else field.default_factory()  # type: ignore[misc]
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, default=None,
                           type=FIELD_TYPES[str(field.type)], metavar=str(field.type).upper(),
                           help=f"(reference: {default})")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {f.name: getattr(args, f.name) for f in fields(Config) if getattr(args, f.name) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simclr_core",
        description="SimCLR from scratch: contrastive pre-training, linear probe, plots. Outputs go to "
                    "OUT/checkpoints/latest.pt, OUT/logs/*.json and OUT/plots/*.png.",
        epilog=f"Data: --data cifar10 downloads CIFAR-10 into --data-root; --data PATH reads a folder "
               f"with train/ and test/ class folders; the {DATA_ENV_VAR} environment variable sets the "
               f"default. Example: python -m simclr_core train --preset quick --out runs/quick")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="contrastive pre-training (the reference's train.py)",
                                description="Pre-train the encoder with NT-Xent; writes a checkpoint and "
                                            "logs every --save-every epochs and at the end.")
    train.add_argument("--preset", default="reference", choices=sorted(PRESETS),
                       help="reference: the seed's 100-epoch run (GPU); quick: minutes on a CPU; "
                            "smoke: seconds, to check the wiring (default: reference)")
    train.add_argument("--out", default=".", help="output folder (default: current folder)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from checkpoints/latest.pt (its config, plus any "
                            "flags given here that are safe to change, such as --epochs)")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(train)

    probe = commands.add_parser("probe", help="linear probe: trained vs random-init encoder "
                                              "(the reference's linear_probe.py)",
                                description="Train a linear classifier on frozen features of the "
                                            "checkpoint in OUT and of a random-init encoder; write "
                                            "OUT/logs/probe_results.json.")
    probe.add_argument("--out", default=".", help="the training run's output folder (default: .)")
    probe.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(probe)

    _add_label_budget_commands(commands, probe)

    plots = commands.add_parser("plots", help="draw the four figures from the logs "
                                              "(the reference's visualizations.py)")
    plots.add_argument("--out", default=".", help="the run's output folder (default: .)")
    return parser


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
    for field in fields(SupervisedConfig):
        default = field.default if field.default is not MISSING else field.default_factory()  # type: ignore[misc]
        supervised.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, default=default,
                                type=FIELD_TYPES[str(field.type)], metavar=str(field.type).upper(),
                                help=f"(default: {default!r})")


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from .engine import train_ssl
        from .resume import checkpoint_config

        cfg = checkpoint_config(args.out, _overrides(args)) if args.resume else \
            make_config(args.preset, **_overrides(args))
        try:
            log = train_ssl(cfg, args.out, progress=not args.no_progress, resume=args.resume)
        finally:
            distributed.teardown()
        if log["evals"]:  # only the main process evaluates and writes
            last = log["evals"][-1]
            print(f"trained {len(log['step_loss'])} steps ({log['epochs'][-1]['epoch']} epochs) in "
                  f"{log['train_seconds']:.0f} s: held-out loss "
                  f"{last['loss']:.3f}, p_pos {last['p_pos']:.3f}, top-1 {last['top1']:.3f}; "
                  f"checkpoint in {args.out}/checkpoints/latest.pt")
    elif args.command == "probe":
        from .probe import run_probe

        log = run_probe(args.out, _overrides(args), not args.no_progress, args.labels_per_class, args.label_seed)
        print(f"linear probe test accuracy: SimCLR {log['simclr']['test_accuracy']:.4f}, "
              f"random init {log['random']['test_accuracy']:.4f} "
              f"({log['train_images']} train / {log['test_images']} test images)")
    elif args.command == "supervised":
        from .supervised import SupervisedConfig, train_supervised

        cfg = SupervisedConfig(**{f.name: getattr(args, f.name) for f in fields(SupervisedConfig)})
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
    except (ValueError, FileNotFoundError, PermissionError, FloatingPointError) as error:
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
