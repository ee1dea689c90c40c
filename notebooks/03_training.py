# %% [markdown]
# # 3. Training: watching the contrastive task get solved
#
# This chapter answers: **what happens when we minimise NT-Xent on real images?** First the training step itself,
# printed from `simclr_core.engine` and run by hand for a few dozen steps. Then a real run with
# `simclr_core.engine.train_ssl`, the function `python -m simclr_core train` calls, and its log. The log follows
# the loss and chapter 2's p_pos and top-1 on held-out views. It also keeps an online k-NN accuracy, which asks
# what the loss cannot: do the features separate classes?
#
# The run is the `quick` preset: a ResNet-18 of half the usual width {cite:p}`he2016resnet`, with T = 0.05, for 300
# seconds of a 2-core CPU. It trains on 10,000 of CIFAR-10's training images, shrunk to 16x16 views: a step costs
# about a third as much as at 32x32 (`bench/README.md`). The network is convolutional, so the probe and the later
# chapters can feed it the full 32x32 images. On a GPU, set
# `PRESET = "reference"` for the reference implementation's 100-epoch run (see the [full-run page](../full_run.md)).

# %% tags=["parameters"]
from simclr_core.config import book_scale, environment_default

PRESET = "quick"  # "reference" on a GPU
DATA = environment_default("data")  # "cifar10" downloads; or a folder
PRECISION = environment_default("precision")  # "auto": bf16 where the CPU has it
DEVICE = "auto"  # cuda, then mps, then cpu
# < 1: a run that many times as long, as a slower machine would make (README)
SCALE = book_scale()
RUN_DIR = "../runs/book" if SCALE == 1 else f"../runs/book-{SCALE:g}"  # shared
HAND_IMAGES, HAND_STEPS = 1024, 40  # the training step run by hand

# %% tags=["nbval-ignore-output"]
import inspect
import math

import matplotlib.pyplot as plt
from IPython.display import Markdown

from simclr_core.config import make_config, scaled
from simclr_core.engine import load_or_train, train_step
from simclr_core.plots import ssl_loss, training_overview

cfg = scaled(make_config(PRESET, data=DATA, device=DEVICE, precision=PRECISION), SCALE)
shown = ["width", "train_subset", "time_budget", "train_resolution", "batch_size", "lr",
         "lr_schedule", "temperature"]
for name in shown:
    print(f"{name:>16}: {getattr(cfg, name)}")

# %% [markdown]
# ## One training step
#
# This is the whole of what SimCLR learns from, printed from the package's source:

# %%
Markdown(f"```python\n{inspect.getsource(train_step)}```")

# %% [markdown]
# Line by line:
#
# - `embed_pairs` sends the B first views and the B second views through the encoder $f$ and the head $g$ as one
#   batch of 2B images, and splits the unit vectors $z$ back into `z1` and `z2`. One pass keeps the processor busy,
#   and both views are normalised with the same BatchNorm statistics.
# - `loss_fn(z1, z2)` is NT-Xent, chapter 2's three steps: the masked similarity matrix **divided by the
#   temperature** (the only place $T$ enters), and a cross-entropy whose targets are the *positions of the
#   partners in the batch*, never classes.
# - `zero_grad`, `backward`, `step`: the gradient of that one number for every weight of $f$ and $g$, and
#   AdamW's update.
# - The loss comes back without being read (`detach`, not `.item()`): on a GPU a read makes the host wait, so
#   the engine reads several steps' losses at once.
#
# ## The step, by hand
#
# A fresh network, `HAND_IMAGES` real images, the `quick` preset's views, optimizer and temperature, and
# `train_step` called `HAND_STEPS` times. Our loss function is NT-Xent built from `simclr_core.loss`, so that it
# can also record p_pos and top-1 of every batch. There is no schedule, checkpoint or evaluation.

# %% tags=["nbval-ignore-output"]
import time

from simclr_core.batch_augment import two_view_loader
from simclr_core.data import load_split
from simclr_core.loss import (
    contrastive_loss,
    contrastive_metrics,
    simclr_logits_targets,
)
from simclr_core.model import build_model
from simclr_core.optim import make_optimizer
from simclr_core.runtime import pick_device, seed_everything, uses_bf16

device = pick_device(cfg.device)
bf16 = uses_bf16(cfg.precision, device)
seed_everything(cfg.seed)
small = load_split(cfg.data, "train", cfg.data_root, HAND_IMAGES, cfg.seed)
loader = two_view_loader(small, cfg, shuffle=True, seed=cfg.seed, device=device)
model = build_model(cfg, device)
optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum)
history = []


def loss_fn(z1, z2):
    logits, targets = simclr_logits_targets(z1, z2, cfg.temperature)  # S / T, masked
    history.append(contrastive_metrics(logits, targets))  # p_pos and top-1 of the batch
    return contrastive_loss(logits, targets)  # the cross-entropy: NT-Xent


start, step = time.perf_counter(), 0
while step < HAND_STEPS:
    for x1, x2 in loader:  # one pass over the small set, two fresh views per image
        loss = train_step(model, optimizer, x1, x2, loss_fn, device, bf16)
        history[-1]["loss"] = loss.item()
        step += 1
        if step % 5 == 0:
            seen = history[-1]
            print(f"step {step:>2}: loss {seen['loss']:.3f}  p_pos {seen['p_pos']:.3f}"
                  f"  top-1 {seen['top1']:.3f}  ({time.perf_counter() - start:.0f} s)")
        if step == HAND_STEPS:
            break

# %% tags=["hide-cell"]
# Checks: over the hand-run steps the loss falls and p_pos and top-1 rise (first five
# steps against the last five).
first, last = history[:5], history[-5:]


def average(rows, name):
    return sum(row[name] for row in rows) / len(rows)


assert average(last, "loss") < average(first, "loss") - 0.5
assert average(last, "p_pos") > 2 * average(first, "p_pos")
assert average(last, "top1") > average(first, "top1") + 0.05

# %% [markdown]
# In `HAND_STEPS` steps the loss falls from near $\log(2B - 1)$ and the partner's probability grows several-fold:
# the step works. A run of minutes or hours needs three things more, which the engine adds around the same
# `train_step` (`simclr_core/engine.py`):
#
# - **a length**: a learning-rate schedule fitted to the run's steps; under a time budget the engine first times a
#   few steps to know how many fit;
# - **a record**: every step's loss, checked for NaN, and at every `eval_every` epochs the held-out metrics and
#   the online k-NN;
# - **safety**: a checkpoint with every random state every `save_every` epochs, Ctrl-C saving at the next step,
#   and `--resume` continuing exactly where an uninterrupted run would be.
#
# ## Train (or reuse the finished run)
#
# `load_or_train` reuses `RUN_DIR` when it holds a finished run of exactly this configuration; otherwise it trains
# now, as `python -m simclr_core train --out RUN_DIR` would. How many steps 300 seconds buy depends on the
# machine, so the chapter reads them from the log. (The last line says whether the network ran in bfloat16 and
# why; the [command-line page](../command_line.md) explains the precisions, and what a slower machine trains.)

# %% tags=["nbval-ignore-output"]
model, log = load_or_train(cfg, RUN_DIR, progress=False)
epochs_done = log["epochs"][-1]["epoch"]  # fractional when a run ends mid-epoch
steps_done = len(log["step_loss"])
print(f"{log['train_images']} images, {epochs_done} epochs ({steps_done} steps of "
      f"{log['steps_per_epoch']} per epoch) on {log['device']}: "
      f"{log['train_seconds']:.0f} s")
print("precision:", log["precision_reason"])

# %% [markdown]
# ## The loss
#
# Each step's loss is faint; each epoch's mean and the held-out loss (the same views every time) are bold. The
# run starts near $\log(2B - 1)$ ($\log 255 \approx 5.54$ for a batch of $B = 128$ images), the loss of a collapsed
# embedding (chapter 2), and falls quickly.

# %%
fig = ssl_loss(log)
plt.show()

# %% [markdown]
# The two bold curves are measured differently. An epoch's training loss is the mean over its steps, taken while
# the network was still improving; the held-out loss is measured once, at the epoch's end, in evaluation mode. In
# the first epoch, when the loss falls fastest, the mean drags the early high losses along:

# %% tags=["nbval-ignore-output"]
steps_per_epoch = log["steps_per_epoch"]
first_epoch = log["step_loss"][:steps_per_epoch]
first_epoch_mean = sum(first_epoch) / len(first_epoch)
tail = first_epoch[-max(1, steps_per_epoch // 10):]
first_epoch_end = sum(tail) / len(tail)
first_eval = log["evals"][1]  # evals[0] is the untrained network, before step 1
print(f"epoch 1: mean training loss {first_epoch_mean:.3f}")
print(f"         over its last {len(tail)} steps {first_epoch_end:.3f}")
print(f"         held-out at its end {first_eval['loss']:.3f}")

# %% tags=["hide-cell"]
# Check: the first epoch's mean training loss lies well above the loss of its last
# steps: the network improved during the epoch; from epoch 4 on the held-out loss lies
# above the training mean, by more than 0.1 at the end.
assert first_epoch_mean > first_epoch_end + 0.2
held_out = {e["epoch"]: e["loss"] for e in log["evals"]}
assert all(held_out[e["epoch"]] > e["loss"] for e in log["epochs"] if e["epoch"] >= 4)
assert held_out[log["epochs"][-1]["epoch"]] > log["epochs"][-1]["loss"] + 0.1

# %% [markdown]
# By the fourth epoch the order turns: the held-out loss, on test images, lies above the training mean, and the
# gap widens to more than 0.1 by the end. After a few passes over its 10,000 images the network does the task
# better on them than on images it has never seen.

# %% [markdown]
# ## The task, and what it is for
#
# On test images the network never trained on, the middle panel below follows the share of views whose partner is
# the nearest of its $2B - 1$ candidates (top-1) and the probability on the partner (p_pos). None of these involves
# a class. The **online k-NN** on the right does: at every evaluation the engine embeds a fixed bank of 1,000
# labelled training images and 500 fixed test images into $h = f(x)$, and labels each test image by a
# similarity-weighted vote of its 20 nearest bank images (chapter 6 explains the vote).

# %%
fig = training_overview(log)
plt.show()

# %% tags=["nbval-ignore-output"]
evals = log["evals"]
untrained, first, last = evals[0], evals[1], evals[-1]  # step 0, epoch 1, the end
chance = 1 / (2 * cfg.batch_size - 1)
for name in ("loss", "p_pos", "top1", "knn"):
    path = " -> ".join(f"{e[name]:.3f}" for e in (untrained, first, last))
    print(f"{name:>6}: {path}   (epochs 0, {first['epoch']}, {last['epoch']})")
print(f"chance for p_pos and top-1: 1/{2 * cfg.batch_size - 1} = {chance:.4f}")
knn_error = math.sqrt(last["knn"] * (1 - last["knn"]) / cfg.knn_queries)
print(f"the k-NN's standard error on {cfg.knn_queries} queries: {knn_error:.3f}")

# %% tags=["hide-cell"]
# Checks on what the text claims: the loss starts near log(2B - 1) and falls; the
# untrained network's top-1 is already more than 5 times chance; top-1 ends far above
# it (over 50 times chance), climbing by more than 0.2, and p_pos ten-fold; the online
# k-NN gains more than 4 points in the first epoch; its standard error on its queries is
# about 2 points.
assert abs(log["step_loss"][0] - math.log(2 * cfg.batch_size - 1)) < 0.5
assert abs(untrained["loss"] - math.log(2 * cfg.batch_size - 1)) < 0.5
assert log["epochs"][-1]["loss"] < log["epochs"][0]["loss"] - 0.5
assert untrained["top1"] > 5 * chance
assert last["top1"] > 50 * chance and last["top1"] > untrained["top1"] + 0.2
assert last["p_pos"] > 10 * untrained["p_pos"]
assert first["knn"] > untrained["knn"] + 0.04
assert 0.015 < knn_error < 0.03

# %% [markdown]
# Chance for top-1 is $1/255$, yet the untrained network already finds the partner for several percent of the
# views: a random network is not blind (chapter 5 measures how much its features hold). Training lifts top-1 far
# above that. The k-NN, already above chance at epoch 0 (a random network's features put some images of a class
# together), gains several points in the first epoch.
#
# Does solving the task better also mean better features? One short run's k-NN is a weak witness: on 500 queries
# its standard error is about 2 points (printed above), so a few points between two readings may be noise. Runs of
# different lengths can answer: `bench/pretraining.py` trained this preset for 275 to 4,400 steps and
# measured each with chapter 5's linear probe:

# %%
from simclr_core.results import provenance, rows

scaling = sorted(rows("pretraining", "scaling"), key=lambda row: row["steps"])
fig, ax = plt.subplots(figsize=(5, 3.4))
ax.plot([r["ssl_top1"] for r in scaling], [r["probe_h"] for r in scaling], "o-")
for r in scaling:
    ax.annotate(f"{r['steps']:,} steps", (r["ssl_top1"], r["probe_h"]),
                textcoords="offset points", xytext=(5, -10), fontsize=8)
ax.set(xlabel="held-out top-1 (the task)", ylabel="linear probe (the features)",
       title="Longer runs: a better task, better features")
plt.show()
print(provenance(scaling[0]))

# %% tags=["hide-cell"]
# Checks: across the stored runs, held-out top-1 and the probe rise together (their rank
# correlation over the five runs is above 0.8), from 0.469 to 0.837 and from 0.497 to
# 0.570, the probe's rise far beyond the tie threshold. (Single doublings can be ties:
# no check claims each one.)
from simclr_core.analysis import rank_correlation
from simclr_core.results import seed_spread

assert rank_correlation([r["ssl_top1"] for r in scaling],
                        [r["probe_h"] for r in scaling]) > 0.8
assert [round(scaling[i][k], 3) for i in (0, -1) for k in ("ssl_top1", "probe_h")] == \
    [0.469, 0.497, 0.837, 0.570]
rise = scaling[-1]["probe_h"] - scaling[0]["probe_h"]
assert rise > 3 * seed_spread().tie_threshold()

# %% [markdown]
# Across runs the task and the features improve together: top-1 from 0.47 to 0.84, the probe from 0.50 to 0.57,
# though single doublings of the steps can be ties.
# The probe rises 7 points while top-1 rises 37, and the two can part ways: chapter 1 shows a recipe whose
# task is solved almost perfectly and whose features are the worst of its ablation. So judge a run by a label-using
# measure of its features (the k-NN here, chapter 5's probe), and use the loss to see that training is healthy.
#
# **What to take away**
# - A SimCLR step is six lines: both views through the network in one pass, NT-Xent with the temperature dividing
#   the similarities, backward, optimizer step. The rest of the engine is what a long run needs.
# - The loss falls from the collapsed value $\log(2B-1)$ as the network learns to pick each view's partner.
# - top-1 is retrieval within a batch, not accuracy on classes. Over longer runs it rises with the probe, but the
#   features are measured by the k-NN and the probe, not by the task.
# - The checkpoint in `RUN_DIR` is what chapters 4-6 analyse.
#
# **Exercises.** Exercises 2-5 train a new run (minutes on a CPU), so give each its own folder: set
# `RUN_DIR = "../runs/NAME"` and pass the change to `make_config`, e.g. `make_config(PRESET, data=DATA,
# device=DEVICE, batch_size=256)`. Never point a changed configuration at `../runs/book`: the other chapters share
# that run. To probe it, make the same two changes in chapter 5, or use the command line
# (`python -m simclr_core probe --out runs/NAME`).
# 1. *Two passes instead of one.* In the hand-run cell, replace `train_step` by your own copy that embeds the
#    views separately (`z1 = model(x1)`, `z2 = model(x2)`). Predict first: does anything change in the first 40
#    steps? (BatchNorm now normalises each view's batch alone.)
# 2. *Batch size.* `batch_size=256`. Predict the first loss ($\log 511 \approx 6.24$), top-1's chance level
#    ($1/511$) and the steps an epoch (half as many).
# 3. *The reference's temperature.* `temperature=0.2`. Losses at two temperatures are not comparable (the same
#    embeddings give another loss at each $T$): compare held-out top-1, the k-NN and the probe instead.
# 4. *Train longer.* `time_budget=2 * cfg.time_budget`. Expect a point or two more in the probe: the stored curve
#    above says how much each doubling of the steps bought.
# 5. *Precision.* `precision="fp32"`. Expect the same curves within noise, and fewer steps in the same budget on a
#    CPU with bf16 units.
