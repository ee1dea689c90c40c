# %% [markdown]
# # 3. Training: watching the contrastive task get solved
#
# This chapter answers: **what happens when we minimise NT-Xent on real images?** We pre-train a ResNet-18
# {cite:p}`he2016resnet` with `simclr_core.engine.train_ssl`, the same function `python -m simclr_core train`
# calls, and read its log: the loss, and the two SSL metrics of chapter 2 (p_pos and top-1) measured on
# held-out views.
#
# The default here is the `quick` preset: a ResNet-18 of width 32 (half the channels) on a class-balanced
# 10,000-image subset of CIFAR-10's training split, with T = 0.05, about four and a half minutes on a 2-core CPU
# (in bfloat16 where the CPU has AMX). On a GPU, set `PRESET = "reference"` for the seed's 100-epoch run (see
# the page on the full run).

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
print({k: getattr(cfg, k) for k in ["width", "train_subset", "epochs", "batch_size", "lr", "lr_schedule",
                                     "temperature"]})

# %% [markdown]
# ## Train (or reuse the finished run)
#
# `load_or_train` reuses `RUN_DIR` when it already holds a finished run with exactly this configuration,
# so re-running the book does not re-train; otherwise it trains now and writes
# `checkpoints/latest.pt` and `logs/ssl_results.json` there, as `python -m simclr_core train --out RUN_DIR`
# would.

# %%
# NBVAL_IGNORE_OUTPUT
model, log = load_or_train(cfg, RUN_DIR, progress=False)
print(f"{log['train_images']} images, {cfg.epochs} epochs, {len(log['step_loss'])} steps on {log['device']}: "
      f"{log['train_seconds']:.0f} s")
paths = RunPaths(RUN_DIR)
print("checkpoint:", paths.checkpoint.is_file(), " log:", paths.ssl_log.is_file())

# %% [markdown]
# ## The loss
#
# Each step's loss is faint, each epoch's mean and the held-out loss (the same views every time) are bold.
# The run starts near $\log(N - 1)$ ($\log 255 \approx 5.54$ for the `quick` preset's batch of 128 images),
# the value of a collapsed embedding (chapter 2), and falls quickly: the network learns to tell images apart
# long before it has learned anything about classes.

# %%
fig = ssl_loss(log)
plt.show()

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
# chance (1 / (N - 1)) and rises; p_pos rises.
chance = 1 / (2 * cfg.batch_size - 1)
assert abs(log["step_loss"][0] - math.log(2 * cfg.batch_size - 1)) < 0.5
assert log["epochs"][-1]["loss"] < log["epochs"][0]["loss"] - 0.5
assert last["top1"] > 50 * chance and last["top1"] > first["top1"]
assert last["p_pos"] > first["p_pos"]

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
#    The project's sweeps on this preset (README) found the probe 1.5 points lower at 0.2 than at 0.05
#    (0.5103 against 0.5255), one run each.
# 3. *More epochs.* `epochs=14`. Expect a modest gain in the probe: in the README's sweeps, more passes over
#    the same 10,000 images helped by about a point (10 to 18 epochs at width 16: 0.4907 to 0.5022).
# 4. *Precision.* `precision="fp32"` (on a CPU with AMX or a recent GPU the default is bf16). Expect the same
#    curves within noise and a slower run; the README measured bf16 steps 1.4-1.7x faster on this project's
#    CPUs.
