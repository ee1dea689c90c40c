# %% [markdown]
# # 7. What pre-training buys when labels are scarce
#
# Chapters 5 and 6 showed that SimCLR's features beat the same network at random init. That alone does not
# say whether pre-training is worth anything: a reader with labels can simply train on them. This chapter
# answers the question people use self-supervised learning for: **how many labels does pre-training save?**
#
# We measure test accuracy against the number of labelled training images per class, from 1 to all 5,000,
# for five ways of using those labels:
#
# - a **linear probe** (chapter 5) on the frozen features of the book's SimCLR encoder, of the same network at
#   random init, and on raw pixels;
# - the same ResNet-18 **trained from scratch** on the labelled images with cross-entropy;
# - the SimCLR encoder **fine-tuned** end to end on them, under a fresh linear layer.
#
# Then we look at the one part of SimCLR that every downstream use throws away, the projection head, and at
# what it throws away with it.

# %% tags=["parameters"]
import os

PRESET = "quick"  # "reference" on a GPU
DATA = os.environ.get("SIMCLR_DATA", "cifar10")
DEVICE = "auto"
RUN_DIR = "../runs/book"  # the SimCLR run of chapter 3
PAYOFF_DIR = "../runs/payoff"  # this chapter's supervised and fine-tuned runs, reused when re-run
SEEDS = {1: 5, 5: 5, 25: 5, 100: 5, 500: 3, 5000: 1}  # labels per class -> labelled subsets drawn
SUPERVISED_LABELS = [5, 100, 5000]  # labels per class of the supervised and fine-tuned runs
SUPERVISED_SECONDS = 30  # each run's time budget (training and its test evaluation)
SUPERVISED_LR = 3e-3  # AdamW; fine-tuning's encoder gets a tenth of it
PROPERTY_IMAGES = 3000  # test images for the brightness experiment (two thirds fit, one third held out)

# %%
import time

chapter_start = time.perf_counter()

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Markdown

from simclr_core.analysis import brightness_views, knn_accuracy, linear_r2
from simclr_core.config import make_config
from simclr_core.data import ImageSet, labelled_indices, load_split
from simclr_core.engine import load_or_train
from simclr_core.plots import label_efficiency as label_efficiency_figure
from simclr_core.probe import (
    cached_features,
    extract_features,
    label_efficiency,
    pixel_features,
    random_encoder,
    train_linear_probe,
)
from simclr_core.runtime import machine_description, pick_device, uses_bf16
from simclr_core.storage import RunPaths
from simclr_core.supervised import SupervisedConfig, load_or_train_supervised

cfg = make_config(PRESET, data=DATA, device=DEVICE)
device = pick_device(cfg.device)
bf16 = uses_bf16(cfg.precision, device)
ALL = max(SEEDS)  # the whole training split, per class
FEW = ALL // 50  # a fiftieth of the labels: 100 per class

# %% [markdown]
# ## Features, once
#
# Every probe in this chapter reads frozen features, and chapter 5 already computed them for the whole training
# and test splits: `cached_features` finds them in `RUN_DIR/features` (the file name is made from the encoder's
# weights and the images), so probing a hundred labelled subsets costs seconds, not a pass of the encoder each.
# If chapter 5 has not run, this cell computes them (minutes on a CPU) and leaves them there.

# %%
# NBVAL_IGNORE_OUTPUT
model, _ = load_or_train(cfg, RUN_DIR, progress=False)  # the chapter 3 run; trained now if it is missing
train = load_split(cfg.data, "train", cfg.data_root, cfg.probe_train_subset, cfg.seed)
test = load_split(cfg.data, "test", cfg.data_root)
cache = RunPaths(RUN_DIR).features
features = {name: (cached_features(encoder, train, cache, device, bf16), cached_features(encoder, test, cache,
                                                                                        device, bf16))
            for name, encoder in [("SimCLR", model.encoder), ("random init", random_encoder(cfg, device))]}
features["raw pixels"] = (pixel_features(train), pixel_features(test))
print(f"{len(train)} training images ({ALL} per class), {len(test)} test images; "
      f"feature sizes: {({name: x.shape[1] for name, (x, _) in features.items()})}")

# %% [markdown]
# ## 1. Label efficiency of frozen features
#
# For each budget of N labelled images per class we draw a class-balanced subset (`labelled_indices`; the
# subsets of one seed are nested, so a larger budget adds images to a smaller one) and train chapter 5's linear
# probe on the features of those images only; the score is accuracy on all 10,000 test images. One labelled
# image per class is a noisy experiment (which image you happen to label matters a lot), so small budgets are
# repeated on several subsets: `SEEDS` says how many.
#
# One change from chapter 5: the probe's L2 penalty is scaled by (all images / labelled images)
# (`budget_weight_decay`). The penalty is a prior on the weights; the loss averages over the labelled images,
# so with fewer of them the same prior weighs more per image. With the full split's penalty unchanged, a probe
# on 1,000 images overfits enough that 100 labels per class scored no better than 25 in a test run.

# %%
# NBVAL_IGNORE_OUTPUT
probe_start = time.perf_counter()
curves = {f"{name} (linear probe)": label_efficiency(train_x, train, test_x, test.labels, SEEDS, cfg.probe_steps,
                                                     cfg.probe_weight_decay)
          for name, (train_x, test_x) in features.items()}
print(f"{sum(SEEDS.values()) * len(curves)} probes in {time.perf_counter() - probe_start:.0f} s")


def mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


rows = [f"| {n} | {len(curves[next(iter(curves))][n])} | "
        + " | ".join(f"{mean(c[n]):.3f} ({min(c[n]):.3f}-{max(c[n]):.3f})" for c in curves.values()) + " |"
        for n in SEEDS]
Markdown("\n".join(["| labels per class | subsets | " + " | ".join(curves) + " |",
                    "| --- | --- |" + " --- |" * len(curves), *rows,
                    "", "Mean test accuracy over the labelled subsets, with the lowest and highest in brackets."]))

# %%
# Checks on what the text below claims: SimCLR's features beat the random network's at every budget, every
# method gains from more labels, the spread between subsets shrinks as they grow, and SimCLR with 1/50 of the
# labels (FEW = 100 per class) beats the random-init network with all of them.
simclr, random_init, pixels = (curves[f"{name} (linear probe)"] for name in ("SimCLR", "random init", "raw pixels"))
assert all(mean(simclr[n]) > mean(random_init[n]) + 0.03 for n in SEEDS)
assert all(mean(c[ALL]) > mean(c[min(SEEDS)]) + 0.1 for c in curves.values())
several = max(n for n in SEEDS if SEEDS[n] > 1)  # the largest budget drawn more than once
assert max(simclr[1]) - min(simclr[1]) > max(simclr[several]) - min(simclr[several])
assert mean(simclr[FEW]) > mean(random_init[ALL])

# %% [markdown]
# Read the table by rows and by columns. Along a column, every method gains from labels, and the spread
# between subsets shrinks: with one image per class, the luck of the draw moves the score by several points.
# Across a row, SimCLR's features lead at every budget. The most useful reading is diagonal: SimCLR's probe
# with 100 labels per class beats the random network's probe with all 5,000, so pre-training on unlabelled
# images was worth more than 49 of every 50 labels to this linear classifier.

# %%
# NBVAL_IGNORE_OUTPUT
def labels_to_match(curve: dict[int, list[float]], target: float) -> str:
    """The smallest budget whose mean reaches `target`, or "more than all" when none does."""
    reached = [n for n in sorted(curve) if mean(curve[n]) >= target]
    return f"{reached[0]} per class" if reached else f"more than the {ALL} per class there are"


Markdown("\n".join(f"- SimCLR with {n} labels per class ({mean(simclr[n]):.3f}) is matched by the random "
                   f"network with {labels_to_match(random_init, mean(simclr[n]))} and by raw pixels with "
                   f"{labels_to_match(pixels, mean(simclr[n]))}." for n in SEEDS if n < ALL))

# %% [markdown]
# ## 2. Training on the labels instead
#
# The comparison readers ask for first: *would I not be better off just training on my labels?* We train the
# same ResNet-18 (same width as the SimCLR run) with cross-entropy on the same labelled subsets (seed 0), with
# the same augmentation recipe on the device, AdamW and a cosine schedule (`simclr_core.supervised`), and a
# budget of `SUPERVISED_SECONDS` per run, evaluation included: the steps that fit are measured on the machine,
# like the `quick` preset's pre-training. Runs this short learn more with a larger learning rate than the
# package's default (1e-3), hence `SUPERVISED_LR`.
#
# **Fine-tuning** starts the encoder from the SimCLR run under a fresh linear layer and trains both, the encoder
# at a tenth of the layer's learning rate: the random layer's first gradients are large, and at full speed they
# would overwrite the features that make fine-tuning worth doing. Both kinds of run are stored under
# `PAYOFF_DIR` and reused when the chapter is re-run with the same settings and the same SimCLR run.

# %%
# NBVAL_IGNORE_OUTPUT
runs = {}
for n in SUPERVISED_LABELS:
    for kind, init in (("from scratch", ""), ("fine-tuned SimCLR", RUN_DIR)):
        run_cfg = SupervisedConfig(data=cfg.data, data_root=cfg.data_root, labels_per_class=n, width=cfg.width,
                                   init=init, time_budget=SUPERVISED_SECONDS, lr=SUPERVISED_LR,
                                   device=cfg.device, precision=cfg.precision)
        name = f"{PAYOFF_DIR}/{'finetune' if init else 'scratch'}-{n}"
        _, runs[kind, n] = load_or_train_supervised(run_cfg, name, progress=False, train_set=train, test_set=test)
for (kind, n), log in runs.items():
    print(f"{kind:>17}, {n:>4} labels per class: {len(log['step_loss'])} steps in {log['train_seconds']:.0f} s, "
          f"train accuracy {log['train_accuracy']:.3f}, test accuracy {log['test_accuracy']:.3f}")

# %%
# Checks: from 100 labels per class on, starting from SimCLR's weights beats starting from random ones in the
# same time; with the fewest labels both runs memorise their images, and fine-tuning is not behind.
tuned, scratch = ({n: runs[kind, n] for n in SUPERVISED_LABELS} for kind in ("fine-tuned SimCLR", "from scratch"))
fewest = min(SUPERVISED_LABELS)
assert all(tuned[n]["test_accuracy"] > scratch[n]["test_accuracy"] + 0.03 for n in SUPERVISED_LABELS if n >= 100)
assert min(tuned[fewest]["train_accuracy"], scratch[fewest]["train_accuracy"]) > 0.95
assert tuned[fewest]["test_accuracy"] > scratch[fewest]["test_accuracy"] - 0.02

# %% [markdown]
# From 100 labels per class on, fine-tuning from the SimCLR weights beats training the same network from
# scratch in the same time, by several points. With the fewest labels (50 images) both runs memorise their
# images within seconds (train accuracy 1.0) and end close together: there the starting point matters less
# than how little there is to learn from. Where fine-tuning stands against the frozen probe, and where
# training from scratch stands against both, depends on the budget and on the seconds each run gets; the
# numbers of this build:

# %%
# NBVAL_IGNORE_OUTPUT
def compare(n: int) -> str:
    probe, tuned, scratch = mean(simclr[n]), runs["fine-tuned SimCLR", n]["test_accuracy"], \
        runs["from scratch", n]["test_accuracy"]
    return (f"- **{n} labels per class**: frozen SimCLR probe {probe:.3f}, fine-tuned {tuned:.3f} "
            f"({'+' if tuned >= probe else '-'}{abs(tuned - probe):.3f} against the probe), from scratch "
            f"{scratch:.3f} ({'above' if scratch > probe else 'below'} the probe, "
            f"{'above' if scratch > mean(random_init[n]) else 'below'} the random network's probe).")


Markdown("\n".join(compare(n) for n in SUPERVISED_LABELS))

# %% [markdown]
# Two things limit what these runs can show, and both work against training from scratch. First, time: a run
# of half a minute on a CPU sees each of 50,000 labelled images less than once, far from the long schedules
# that make supervised training strong. With all labels and enough compute the picture turns: the CIFAR
# ResNets of {cite:t}`he2016resnet`, trained from scratch on all 50,000 labelled images for 64,000 steps of
# 128, reach 91-94% test accuracy, far above every number in this chapter. That is where supervised training
# wins: many labels and the compute to use them. Second, the augmentations are SimCLR's (strong colour
# jitter), chosen so that the two kinds of run differ only in their start; a supervised run tuned for itself
# would use milder ones.

# %% [markdown]
# ## 3. Why the projection head is thrown away
#
# SimCLR trains $z = g(h)$, the projection head's output, and then discards $g$: every probe in this book reads
# $h = f(x)$. {cite:t}`chen2020simclr` found $h$ better than $z$ by more than ten points on ImageNet and
# explained why: the loss asks $z$ to be *invariant* to the augmentations, so $g$ is free to throw away what
# the augmentations change (colour, framing), even where that would help a downstream task. $h$, one layer
# below, keeps it. We check both halves of that story on the book's run: first the classes, then a property
# the augmentations vary.
#
# $z$ for every image comes from the cached $h$ through the head: $z = g(h) / \lVert g(h) \rVert$.

# %%
# NBVAL_IGNORE_OUTPUT
head = model.head.cpu().eval()
with torch.no_grad():
    h_train, h_test = features["SimCLR"]
    z_train, z_test = (F.normalize(head(h), dim=1) for h in (h_train, h_test))
bank = labelled_indices(train, min(ALL, 1000), seed=0)  # the k-NN memory, as in chapter 6: 10,000 images
layers = {}
for name, (train_x, test_x) in {"h = f(x)": (h_train, h_test), "z = g(h)": (z_train, z_test)}.items():
    layers[name] = {
        "linear probe": train_linear_probe(train_x, train.labels, test_x, test.labels, cfg.probe_steps,
                                           cfg.probe_weight_decay).test_accuracy,
        "20-NN": knn_accuracy(train_x[bank], train.labels[bank], test_x, test.labels, k=20)}
    print(f"{name}: {train_x.shape[1]:>3} dimensions, linear probe {layers[name]['linear probe']:.3f}, "
          f"20-NN {layers[name]['20-NN']:.3f}")

# %%
# Checks: the classes are more linearly separable in h than in z, and k-NN loses less than the probe does.
h_scores, z_scores = layers["h = f(x)"], layers["z = g(h)"]
assert h_scores["linear probe"] > z_scores["linear probe"] + 0.01
assert h_scores["20-NN"] - z_scores["20-NN"] < h_scores["linear probe"] - z_scores["linear probe"]

# %% [markdown]
# The linear probe loses points on $z$. k-NN, which reads only cosine neighbourhoods (the geometry the loss
# itself shapes), loses less or nothing: $z$ is a good space for telling images apart, and a worse one for
# what a classifier needs beyond that.
#
# Now a property the augmentations vary. We scale the brightness of each of `PROPERTY_IMAGES` test images
# by a known random factor from the colour jitter's own range (0.6 to 1.4), embed them, and fit a ridge
# regression from the features to the factor on two thirds of the images; its $R^2$ on the other third says
# how much of the brightness the features still carry (1: all of it, linearly; 0: nothing a line can use).
# The random network, which was never taught to ignore anything, is the reference.

# %%
# NBVAL_IGNORE_OUTPUT
chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:PROPERTY_IMAGES]
views, brightness = brightness_views(test.images[chosen])
views = ImageSet(views, test.labels[chosen], test.classes)
h = extract_features(model.encoder, views, device, bf16=bf16)
with torch.no_grad():
    carried = {"h = f(x)": h, "z = g(h)": F.normalize(head(h), dim=1),
               "random init h": extract_features(random_encoder(cfg, device), views, device, bf16=bf16)}
fit = 2 * PROPERTY_IMAGES // 3
r2 = {name: linear_r2(x[:fit], brightness[:fit], x[fit:], brightness[fit:]) for name, x in carried.items()}
for name, value in r2.items():
    print(f"{name:>14}: brightness R^2 {value:.3f}")

# %%
# Check: h carries more of the brightness than z does.
assert r2["h = f(x)"] > r2["z = g(h)"] + 0.03

# %% [markdown]
# $h$ keeps much of the brightness; $z$, trained to ignore it, keeps less. (Part of the gap may be $z$'s
# smaller size, 128 dimensions to $h$'s 8 x width; the SimCLR paper's own comparison has the same asymmetry.)
# The head is where the invariance is finished, and discarding it keeps the information that the contrastive
# task did not need but a downstream task might.

# %% [markdown]
# ## 4. The figure
#
# Every method on one axis. Lines are means over the labelled subsets, dots are the individual subsets (their
# spread is the error bar), squares on dashed lines are the fine-tuned and from-scratch runs. The stars are the
# seed's reference numbers, on the canonical CIFAR-10 with all labels after 100 epochs of pre-training on a GPU:
# they were **not measured here**, and they show how far the `quick` run is from a full one.

# %%
trained = {kind: {n: runs[kind, n]["test_accuracy"] for n in SUPERVISED_LABELS}
           for kind in ("fine-tuned SimCLR", "from scratch")}
fig = label_efficiency_figure(curves, trained, {"seed's SimCLR probe": 0.7812, "seed's random-init probe": 0.3452},
                              reference_budget=ALL)
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
print(f"chapter executed in {time.perf_counter() - chapter_start:.0f} s on {machine_description()}")

# %% [markdown]
# **What to take away**
# - Pre-training pays most where labels are fewest: SimCLR's frozen features with 100 labels per class beat the
#   same network's random features with all 5,000.
# - Few labels make noisy measurements; draw several labelled subsets and show the spread before reading a gap.
# - Starting from SimCLR's weights beats starting from random ones when the labels and the compute are scarce;
#   with all labels and a long schedule, training from scratch catches up and passes every linear probe here.
# - Keep $h$, discard $g$: the head finishes the invariance to the augmentations and takes information with
#   it that a downstream task may need.
#
# **Exercises**
# 1. *More time for the baselines.* Set `SUPERVISED_SECONDS = 120` (and a new `PAYOFF_DIR`). Predict which
#    gap closes first: fine-tuned against the probe, or from scratch against fine-tuned.
# 2. *Milder augmentations for the supervised run.* Pass `crop_min_scale=0.8` to the from-scratch
#    `SupervisedConfig`s: the crops get milder (the colour jitter stays). Does the supervised baseline gain at
#    5,000 labels per class? At 5?
# 3. *The probe's penalty.* In the probe cell, replace `cfg.probe_weight_decay` by a tenth of it. Expect the
#    middle budgets to drop the most: there the probe has about as many images as features to fit
#    (`budget_weight_decay` explains the scaling).
# 4. *Crop scale instead of brightness.* Replace `brightness_views` with crops of a known scale
#    (`simclr_core.batch_augment.crop_and_flip`, boxes of side $\sqrt{s} \cdot 32$ for $s$ from 0.3 to 1).
#    Predict first: can any of the three feature sets tell how far a single image was zoomed?
# 5. *A full run.* On a GPU, run chapter 3 with `PRESET = "reference"`, then this chapter with the same preset,
#    and compare your full-label SimCLR probe with the seed's star.
