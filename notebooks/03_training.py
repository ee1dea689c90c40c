# %% [markdown]
# # 3. Training: watching the contrastive task get solved
#
# This chapter answers: **what happens when we minimise NT-Xent on real images?** We pre-train a ResNet-18
# {cite:p}`he2016resnet` with `simclr_core.engine.train_ssl`, the same function `python -m simclr_core train`
# calls, and read its log: the loss, and the two SSL metrics of chapter 2 (p_pos and top-1) measured on
# held-out views.
#
# The default here is the `quick` preset: a ResNet-18 of width 32 (half the channels) on a class-balanced
# 10,000-image subset of CIFAR-10's training split, with T = 0.05, trained for a fixed time (its `time_budget`, in
# seconds, printed below) on a 2-core CPU. It trains on views resized to `train_resolution` pixels a side, fewer
# than the images' 32, which makes each step cheaper; the probe and the later chapters use the full 32x32 images.
# On a GPU, set `PRESET = "reference"` for the seed's 100-epoch run (see the page on the full run).

# %% tags=["parameters"]
import os

PRESET = "quick"  # "reference" on a GPU
DATA = os.environ.get("SIMCLR_DATA", "cifar10")  # "cifar10" downloads; or a folder with train/ and test/
DEVICE = "auto"  # cuda, then mps, then cpu
RUN_DIR = "../runs/book"  # the run every chapter shares, laid out as the command line writes it

# %%
import math

import matplotlib.pyplot as plt

from simclr_core.config import make_config
from simclr_core.engine import load_or_train
from simclr_core.plots import ssl_loss, ssl_metrics
from simclr_core.storage import RunPaths

cfg = make_config(PRESET, data=DATA, device=DEVICE)
print({k: getattr(cfg, k) for k in ["width", "train_subset", "epochs", "time_budget", "train_resolution",
                                     "batch_size", "lr", "lr_schedule", "temperature"]})

# %% [markdown]
# ## Train (or reuse the finished run)
#
# `load_or_train` reuses `RUN_DIR` when it already holds a finished run with exactly this configuration,
# so re-running the book does not re-train; otherwise it trains now and writes
# `checkpoints/latest.pt` and `logs/ssl_results.json` there, as `python -m simclr_core train --out RUN_DIR`
# would. With a time budget (`time_budget` above, in seconds), the run first times a few steps and plans as many
# steps as fit, then plans again after its first epoch from the seconds its real steps took (a few timed steps
# can be off by a fifth either way); how many epochs that is depends on the machine, so this chapter reads it
# from the log.

# %%
# NBVAL_IGNORE_OUTPUT
model, log = load_or_train(cfg, RUN_DIR, progress=False)
epochs_done = log["epochs"][-1]["epoch"]  # fractional when a time-budgeted run ends mid-epoch
print(f"{log['train_images']} images, {epochs_done} epochs ({len(log['step_loss'])} steps of "
      f"{log['steps_per_epoch']} per epoch) on {log['device']}: {log['train_seconds']:.0f} s")
print("precision:", log["precision_reason"])
paths = RunPaths(RUN_DIR)
print("checkpoint:", paths.checkpoint.is_file(), " log:", paths.ssl_log.is_file())

# %% [markdown]
# The precision line says how the arithmetic was done and why. **bf16** (bfloat16) is a 16-bit floating-point
# format that keeps float32's 8-bit exponent, so the same range of magnitudes, but only 8 bits of significand,
# about 3 significant digits. Under `precision="auto"` the convolutions and matrix products run in bf16 wherever
# the hardware multiplies bf16 natively, which makes a step faster (the README's benchmarks say by how much); the
# loss is always computed in float32. On CPUs that means **AMX** (Advanced Matrix Extensions: matrix-multiply
# units in Intel Xeon CPUs from Sapphire Rapids on) or **AVX512-BF16** (vector instructions for bf16 dot
# products, in AMD Zen 4 and Intel Cooper Lake); on GPUs, tensor cores from NVIDIA's Ampere on. Elsewhere bf16
# would be emulated and slower, so the run uses float32 (fp32).

# %% [markdown]
# ## The loss
#
# Each step's loss is faint, each epoch's mean and the held-out loss (the same views every time) are bold.
# The run starts near $\log(N - 1)$ ($\log 255 \approx 5.54$ for the `quick` preset's batch of 128 images),
# the value of a collapsed embedding (chapter 2), and falls quickly: the network learns to tell the two views of
# an image from the views of the other images in its batch. Nothing here measures classes: no label is used in
# training, and whether the features separate classes is what the linear probe of chapter 5 answers, for the
# finished encoder.

# %%
fig = ssl_loss(log)
plt.show()

# %% [markdown]
# The two bold curves are not measured the same way, which is why their order can change. An epoch's training
# loss is the mean over its steps, taken while the network was still improving, in training mode; the held-out
# loss is measured once, at the epoch's end, in evaluation mode (BatchNorm uses its running statistics). In the
# first epoch, when the loss falls fastest, the mean drags the early high losses along, so the training point can
# sit above the held-out one even though the held-out images were never trained on. Later the loss changes less
# within an epoch, and a different effect can show: the network has seen its training images repeatedly and may
# fit them better than unseen ones. The cell below measures both: the first epoch's mean against the mean of its
# last tenth of steps, and, for the finished network, the held-out measurement (same protocol, evaluation mode,
# same number of batches) run on its own training images as well as on the test images.

# %%
# NBVAL_IGNORE_OUTPUT
from simclr_core.data import load_split
from simclr_core.engine import evaluate_ssl
from simclr_core.runtime import pick_device, uses_bf16

steps_per_epoch = log["steps_per_epoch"]
first_epoch = log["step_loss"][:steps_per_epoch]
first_epoch_mean = sum(first_epoch) / len(first_epoch)
tail = first_epoch[-max(1, steps_per_epoch // 10):]
first_epoch_end = sum(tail) / len(tail)
first_eval = log["evals"][0]
print(f"epoch 1: mean training loss {first_epoch_mean:.3f}, over its last {len(tail)} steps {first_epoch_end:.3f}; "
      f"held-out at epoch {first_eval['epoch']}: {first_eval['loss']:.3f}")

device = pick_device(cfg.device)
train_images = load_split(cfg.data, "train", cfg.data_root, cfg.train_subset, cfg.seed)
on_train = evaluate_ssl(model, train_images, cfg, device, uses_bf16(cfg.precision, device))["loss"]
on_test = log["evals"][-1]["loss"]
print(f"finished network, evaluation mode: loss {on_train:.3f} on its training images, {on_test:.3f} on test images")

# %%
# Checks: the first epoch's mean training loss lies well above the loss of its last steps (the network improved
# during the epoch), and the finished network scores a lower loss on the images it trained on than on unseen
# ones.
assert first_epoch_mean > first_epoch_end + 0.2
assert on_train < on_test

# %% [markdown]
# So the first epoch's training point carries the early losses of a falling curve, whichever side of the
# held-out point it lands on in a given run; and the finished network scores a lower loss on the images it
# trained on than on unseen ones, by the margin printed above.

# %% [markdown]
# ## p_pos and top-1 on held-out views
#
# On test images the network never trained on, the share of views whose partner is the nearest of its
# $N - 1$ candidates (top-1) and the probability mass on the partner (p_pos) both climb. Chance for both is
# $1/(N-1)$: $1/255 \approx 0.004$ for the `quick` preset.

# %%
fig = ssl_metrics(log)
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
first, last = log["evals"][0], log["evals"][-1]
for name in ("loss", "p_pos", "top1"):
    print(f"{name:>6}: epoch {first['epoch']} {first[name]:.3f} -> epoch {last['epoch']} {last[name]:.3f}")

# %%
# Checks on what the text claims: the loss starts near log(N - 1) and falls; held-out top-1 ends far above
# chance (1 / (N - 1)): above 0.5, over 100 times chance; top-1 and p_pos both climb, by more than 0.2 (the
# book's run on a 2-core AMD CPU: top-1 0.27 -> 0.78, p_pos 0.07 -> 0.61).
chance = 1 / (2 * cfg.batch_size - 1)
assert abs(log["step_loss"][0] - math.log(2 * cfg.batch_size - 1)) < 0.5
assert log["epochs"][-1]["loss"] < log["epochs"][0]["loss"] - 0.5
assert last["top1"] > max(0.5, 100 * chance) and last["top1"] > first["top1"] + 0.2
assert last["p_pos"] > first["p_pos"] + 0.2

# %% [markdown]
# **What to take away**
# - The loss falls from the collapsed value $\log(N-1)$ as the network learns to pick each view's partner.
# - top-1 is retrieval within a batch, not accuracy on classes; whether the features also separate classes
#   is what the linear probe of [chapter 5](05_linear_probe) measures.
# - The checkpoint in `RUN_DIR` is what chapters 4-6 analyse.
#
# **Exercises.** Each trains a new run (about as long as the book's, minutes on a CPU), so give it its own
# folder: set `RUN_DIR = "../runs/NAME"` in the parameter cell and pass the change to `make_config`, e.g.
# `make_config(PRESET, data=DATA, device=DEVICE, batch_size=256)`. To probe it, make the same two changes in
# chapter 5 (or run `python -m simclr_core train --preset quick --batch-size 256 --out runs/NAME`, then
# `python -m simclr_core probe --out runs/NAME`). Never point a changed configuration at `../runs/book`: the
# other chapters share that run.
# 1. *Batch size.* `batch_size=256`. Predict the first loss ($\log 511 \approx 6.24$), the chance level of
#    top-1 ($1/511$) and the number of steps (half as many per epoch). Each step now sees twice the negatives;
#    whether that buys a better probe in the same number of epochs is what to find out (the README's
#    time-to-accuracy table has runs at batch 64 and 256, at width 16).
# 2. *The reference's temperature.* `temperature=0.2`. The loss curves of two temperatures are not comparable
#    (the same embeddings give a different loss at each $T$), so compare held-out top-1 and the probe instead.
#    The project's sweeps on this preset as it was before its time budget (`bench/results/time_to_accuracy.json`:
#    7 epochs on 32x32 views) found the probe 1.5 points lower at 0.2 than at 0.05 (0.5103 against 0.5255), one
#    run each.
# 3. *Train longer.* Double the time budget (`time_budget=2 * cfg.time_budget`) if the preset has one (the first
#    cell prints it), else the epochs (`epochs=2 * cfg.epochs`). Expect a modest gain in the probe: in the
#    project's sweeps (`bench/results/time_to_accuracy.json`), more passes over the same 10,000 images helped by
#    about a point (10 to 18 epochs at width 16: 0.4907 to 0.5022).
# 4. *Precision.* `precision="fp32"` (on a CPU with AMX or AVX512-BF16, or a recent GPU, the default is bf16).
#    Expect the same curves within noise and a slower run; the README measured bf16 steps 1.4-1.7x faster on this
#    project's CPUs.
