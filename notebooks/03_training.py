# %% [markdown]
# # 3. Training: watching the contrastive task get solved
#
# This chapter answers: **what happens when we minimise NT-Xent on real images?** First the training step itself:
# six lines of `simclr_core.engine`, shown here from the package's source and run by hand for a few dozen steps.
# Then the real run: we pre-train a ResNet-18 {cite:p}`he2016resnet` with `simclr_core.engine.train_ssl`, the same
# function `python -m simclr_core train` calls, and read its log: the loss, the two SSL metrics of chapter 2
# (p_pos and top-1) measured on held-out views, and an online k-NN accuracy that asks what the loss cannot:
# do the features separate classes?
#
# The default here is the `quick` preset: a ResNet-18 of width 32 (half the channels) on a class-balanced
# 10,000-image subset of CIFAR-10's training split, with T = 0.05, trained for a fixed time (its `time_budget`, in
# seconds, printed below) on a 2-core CPU. It trains on views resized to `train_resolution` pixels a side, fewer
# than the images' 32, which makes each step cheaper; the probe and the later chapters use the full 32x32 images.
# On a GPU, set `PRESET = "reference"` for the seed's 100-epoch run (see the page on the full run).

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
from simclr_core.plots import ssl_loss, ssl_metrics, training_overview

cfg = scaled(make_config(PRESET, data=DATA, device=DEVICE, precision=PRECISION), SCALE)
shown = ["width", "train_subset", "time_budget", "train_resolution", "batch_size", "lr",
         "lr_schedule", "temperature"]
print({name: getattr(cfg, name) for name in shown})

# %% [markdown]
# ## One training step
#
# This is the whole of what SimCLR learns from, as the engine runs it: the function below is printed from the
# package's source, not copied into the book.

# %%
Markdown(f"```python\n{inspect.getsource(train_step)}```")

# %% [markdown]
# Line by line:
#
# - `embed_pairs` stacks the B first views and the B second views into one batch of 2B images and sends it
#   through the encoder $f$ and the head $g$ in **one pass**, then splits the unit vectors $z$ back into `z1` and
#   `z2`. One large batch keeps the processor busier than two small ones, and both views are normalised with the
#   same BatchNorm statistics, so nothing but their content tells a view from its partner. (Where the hardware
#   has it, the pass runs in bfloat16; the $z$ come back in float32.)
# - `loss_fn(z1, z2)` is NT-Xent, chapter 2's three steps: the similarity matrix $S = ZZ^\top$ of all 2B
#   views with its diagonal masked, **divided by the temperature** $T$ (this is where $T$ enters, and only here),
#   and a cross-entropy whose `targets[i] = (i + B) mod 2B` is the *index of view i's partner*: the "labels" of
#   this classification are positions in the batch, never classes.
# - `zero_grad`, `backward`, `step`: the gradient of that one number with respect to every weight of $f$ and
#   $g$, and the optimizer's update (AdamW here).
# - The loss is returned without being read (`detach`, not `.item()`): on a GPU, reading a number back makes
#   the host wait for the device, so the engine reads the losses of several steps at once.
#
# ## The step, by hand
#
# A fresh network, a small set of real images (`HAND_IMAGES`), the `quick` preset's views, optimizer and
# temperature, and `train_step` called `HAND_STEPS` times. The loss function we pass is NT-Xent written out
# from `simclr_core.loss`, so that it can also record p_pos and top-1 of every batch (chapter 2's metrics);
# there is no learning-rate schedule, no checkpoint and no evaluation.

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
# Within seconds the loss falls from near $\log(2B - 1)$ and the partner's probability grows several-fold: the
# step works. What it does not have is everything a run of minutes or hours needs, and that is what the engine
# adds around the same `train_step` (`simclr_core/engine.py`, its loop fits on one screen):
#
# - **a length**: a learning-rate schedule (warm-up, cosine) fitted to the run's steps; with a time budget, a
#   few timed steps first decide how many fit, and the plan is redone once from the first epoch's real steps;
# - **a record**: every step's loss, read back from the device a few steps at a time and checked for NaN, and
#   at every `eval_every` epochs the held-out metrics and the online k-NN;
# - **safety**: a checkpoint with every random state every `save_every` epochs, Ctrl-C saving at the next
#   step, and `--resume` continuing exactly where an uninterrupted run would be.
#
# ## Train (or reuse the finished run)
#
# `load_or_train` reuses `RUN_DIR` when it already holds a finished run with exactly this configuration,
# so re-running the book does not re-train; otherwise it trains now and writes
# `checkpoints/latest.pt` and `logs/ssl_results.json` there, as `python -m simclr_core train --out RUN_DIR`
# would. How many steps the time budget allows depends on the machine, so this chapter reads it from the log.

# %% tags=["nbval-ignore-output"]
model, log = load_or_train(cfg, RUN_DIR, progress=False)
epochs_done = log["epochs"][-1]["epoch"]  # fractional when a run ends mid-epoch
steps_done = len(log["step_loss"])
print(f"{log['train_images']} images, {epochs_done} epochs ({steps_done} steps of "
      f"{log['steps_per_epoch']} per epoch) on {log['device']}: "
      f"{log['train_seconds']:.0f} s")
print("precision:", log["precision_reason"])

# %% [markdown]
# The precision line says how the arithmetic was done and why. **bf16** (bfloat16) is a 16-bit floating-point
# format that keeps float32's 8-bit exponent, so the same range of magnitudes, but only 8 bits of significand,
# about 3 significant digits. Under `precision="auto"` the convolutions and matrix products run in bf16 wherever
# the hardware multiplies bf16 natively, which makes a step faster (bench/README.md says by how much); the
# loss is always computed in float32. On CPUs that means **AMX** (Advanced Matrix Extensions: matrix-multiply
# units in Intel Xeon CPUs from Sapphire Rapids on) or **AVX512-BF16** (vector instructions for bf16 dot
# products, in AMD Zen 4 and Intel Cooper Lake); on GPUs, tensor cores from NVIDIA's Ampere on. Elsewhere bf16
# would be emulated and slower, so the run uses float32 (fp32).
#
# ### On a slower machine
#
# The budget is seconds, so a slower machine trains fewer steps in it, and the encoder it ends with is a
# shorter run's. How much that costs is measured: `bench/pretraining.py` trained this preset for fixed numbers
# of steps on one machine and probed each (chapter 7 shows the whole curve). The cell below reads those stored
# results and says what to expect from a run of a quarter of this one's steps, which is about what a laptop
# without bf16 units trains in the same budget (an Intel Ice Lake core in float32 took 0.53 s a step against
# 0.13-0.22 s on the project's AMD EPYC in bf16).

# %% tags=["nbval-ignore-output"]
from simclr_core.results import rows

curve = sorted((row["steps"], row["probe_h"]) for row in rows("pretraining", "scaling"))


def predicted_probe(steps: float) -> float:
    """The stored curve at `steps`, linear in log(steps) between its points (and along
    its first or last segment outside them: an extrapolation)."""
    points = [(math.log(n), accuracy) for n, accuracy in curve]
    x = math.log(steps)
    segments = list(zip(points, points[1:], strict=False))
    (x0, y0), (x1, y1) = next((s for s in segments if x <= s[1][0]), segments[-1])
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


print(f"this run: {steps_done} steps; stored curve: {curve}")
for share in (1, 0.25):
    steps = round(share * steps_done)
    outside = not curve[0][0] <= steps <= curve[-1][0]
    print(f"{steps:>5} steps: the stored curve predicts a linear probe of about "
          f"{predicted_probe(steps):.3f}" + (" (extrapolated)" if outside else ""))

# %% tags=["hide-cell"]
# Checks: the stored curve rises with every doubling of the steps, so fewer steps
# predict a lower probe, by less than 0.05 for a quarter of the steps at this run's
# length.
assert all(a[1] < b[1] for a, b in zip(curve, curve[1:], strict=False))
assert 0 < predicted_probe(steps_done) - predicted_probe(steps_done / 4) < 0.05

# %% [markdown]
# ## The loss
#
# Each step's loss is faint, each epoch's mean and the held-out loss (the same views every time) are bold.
# The run starts near $\log(N - 1)$ ($\log 255 \approx 5.54$ for the `quick` preset's batch of 128 images),
# the value of a collapsed embedding (chapter 2), and falls quickly: the network learns to tell the two views of
# an image from the views of the other images in its batch.

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

# %% tags=["nbval-ignore-output"]
from simclr_core.monitor import evaluate_ssl

steps_per_epoch = log["steps_per_epoch"]
first_epoch = log["step_loss"][:steps_per_epoch]
first_epoch_mean = sum(first_epoch) / len(first_epoch)
tail = first_epoch[-max(1, steps_per_epoch // 10):]
first_epoch_end = sum(tail) / len(tail)
first_eval = log["evals"][1]  # evals[0] is the untrained network, before step 1
print(f"epoch 1: mean training loss {first_epoch_mean:.3f}, over its last {len(tail)} "
      f"steps {first_epoch_end:.3f}; held-out at epoch {first_eval['epoch']}: "
      f"{first_eval['loss']:.3f}")

train_images = load_split(cfg.data, "train", cfg.data_root, cfg.train_subset, cfg.seed)
on_train = evaluate_ssl(model, train_images, cfg, device, bf16)["loss"]
on_test = log["evals"][-1]["loss"]
print(f"finished network, evaluation mode: loss {on_train:.3f} on its training images, "
      f"{on_test:.3f} on test images")

# %% tags=["hide-cell"]
# Checks: the first epoch's mean training loss lies well above the loss of its last
# steps (the network improved during the epoch), and the finished network scores a lower
# loss on the images it trained on than on unseen ones.
assert first_epoch_mean > first_epoch_end + 0.2
assert on_train < on_test

# %% [markdown]
# So the first epoch's training point carries the early losses of a falling curve, whichever side of the
# held-out point it lands on in a given run; and the finished network scores a lower loss on the images it
# trained on than on unseen ones, by the margin printed above.
#
# ## The task, and what it is for
#
# On test images the network never trained on, the share of views whose partner is the nearest of its
# $N - 1$ candidates (top-1) and the probability mass on the partner (p_pos) both climb. Chance for both is
# $1/(N-1)$: $1/255 \approx 0.004$ for the `quick` preset. These two are the seed's SSL metrics:

# %%
fig = ssl_metrics(log)
plt.show()

# %% [markdown]
# None of the three curves so far involves a class. The **online k-NN** does: at every evaluation the engine
# embeds a fixed bank of 1,000 labelled training images (100 a class) and 500 fixed test images into $h = f(x)$,
# and labels each test image by a similarity-weighted vote of its 20 nearest bank images (chapter 6 explains the
# vote). It costs a second or two an evaluation and needs no training, so it can watch the features while the
# loss is being minimised. The three panels side by side:

# %%
fig = training_overview(log)
plt.show()

# %% tags=["nbval-ignore-output"]
evals = log["evals"]
untrained, first, last = evals[0], evals[1], evals[-1]  # step 0, epoch 1, the end
for name in ("loss", "p_pos", "top1", "knn"):
    path = " -> ".join(f"epoch {e['epoch']} {e[name]:.3f}"
                       for e in (untrained, first, last))
    print(f"{name:>6}: {path}")

# %% tags=["hide-cell"]
# Checks on what the text claims: the loss starts near log(N - 1) and falls; held-out
# top-1 ends far above chance (over 50 times chance); top-1 climbs by more than 0.2 and
# p_pos ten-fold; the online k-NN gains more than 4 points in the first epoch, and
# each later epoch adds less on average than the first did, while top-1 gains more
# than 10 points after the first epoch.
chance = 1 / (2 * cfg.batch_size - 1)
assert abs(log["step_loss"][0] - math.log(2 * cfg.batch_size - 1)) < 0.5
assert abs(untrained["loss"] - math.log(2 * cfg.batch_size - 1)) < 0.5
assert log["epochs"][-1]["loss"] < log["epochs"][0]["loss"] - 0.5
assert last["top1"] > 50 * chance and last["top1"] > untrained["top1"] + 0.2
assert last["p_pos"] > 10 * untrained["p_pos"]
assert first["knn"] > untrained["knn"] + 0.04
later_epochs = max(1.0, last["epoch"] - first["epoch"])
assert (last["knn"] - first["knn"]) / later_epochs < first["knn"] - untrained["knn"]
assert last["top1"] > first["top1"] + 0.1

# %% [markdown]
# Read the three panels together, from left to right. Before the first step (epoch 0) the untrained network sits at the
# collapsed loss, top-1 near chance, and a k-NN accuracy of about a quarter: a random network's features already put
# some images of one class together (chapter 5's random-init baseline). The first epoch brings the k-NN its largest
# gain, and each later epoch adds less than that on average: in the book's run (1,086 steps on a 2-core AMD EPYC), 9
# points in the first epoch and under 2 in the twelve after it, about as much as its own noise (500 test queries: a
# point or two either way). Meanwhile the contrastive task goes on improving, the loss falling and top-1 rising by more
# than ten points. So how well the network solves its pretext task and how well its features separate classes are
# different things, and they do not move together: in a short run most of what the features gain on classes comes first,
# and the task keeps improving after. A longer run (a faster machine gives one within the same budget) lets the k-NN
# climb further, but more slowly than in its first epoch. Users of public SimCLR code meet the mirror image in long
# runs, a loss that has flattened while the probe still improves. Either way, judge a run by a label-using measure of
# its features (this k-NN, or chapter 5's linear probe, which reads more of the features than a 20-NN vote on a small
# bank), and use the loss to see that training is healthy.
#
# **What to take away**
# - A SimCLR step is six lines: both views through the network in one pass, NT-Xent with the temperature
#   dividing the similarities, backward, optimizer step. Everything else in the engine is bookkeeping a long
#   run needs.
# - The loss falls from the collapsed value $\log(N-1)$ as the network learns to pick each view's partner.
# - top-1 is retrieval within a batch, not accuracy on classes; the online k-NN (and chapter 5's linear probe)
#   measure the features; they do not move in step with the loss.
# - The checkpoint in `RUN_DIR` is what chapters 4-7 analyse.
#
# **Exercises.** Exercises 2-5 train a new run (about as long as the book's, minutes on a CPU), so give each its
# own folder: set `RUN_DIR = "../runs/NAME"` in the parameter cell and pass the change to `make_config`, e.g.
# `make_config(PRESET, data=DATA, device=DEVICE, batch_size=256)`. To probe it, make the same two changes in
# chapter 5 (or run `python -m simclr_core train --preset quick --batch-size 256 --out runs/NAME`, then
# `python -m simclr_core probe --out runs/NAME`). Never point a changed configuration at `../runs/book`: the
# other chapters share that run.
# 1. *Two passes instead of one.* In the hand-run cell, replace `train_step` by your own copy that embeds the
#    views separately (`z1 = model(x1)`, `z2 = model(x2)`, each on the device in the right layout). Predict
#    first: does anything change in the first 40 steps? (BatchNorm now normalises each view's batch alone.)
# 2. *Batch size.* `batch_size=256`. Predict the first loss ($\log 511 \approx 6.24$), the chance level of
#    top-1 ($1/511$) and the number of steps (half as many per epoch). Chapter 4 compares batch sizes at equal
#    images seen: within the seed-to-seed spread of each other.
# 3. *The reference's temperature.* `temperature=0.2`. The loss curves of two temperatures are not comparable
#    (the same embeddings give a different loss at each $T$), so compare held-out top-1, the k-NN and the probe
#    instead.
# 4. *Train longer.* Double the time budget (`time_budget=2 * cfg.time_budget`). Expect a gain of about a point
#    or two in the probe: the stored curve of chapter 7 says how much each doubling of the steps bought.
# 5. *Precision.* `precision="fp32"` (on a CPU with AMX or AVX512-BF16, or a recent GPU, the default is bf16).
#    Expect the same curves within noise and fewer steps in the same budget.
