# %% [markdown]
# # 7. What pre-training buys: labels, compute and error bars
#
# Chapters 5 and 6 showed that SimCLR's features beat the same network at random init. That alone does not say
# whether pre-training is worth anything: a reader with labels can simply train on them. This chapter answers
# the question people use self-supervised learning for, **how many labels does pre-training save?**, and answers
# it honestly, which means counting compute on both sides: the SimCLR run cost minutes of a CPU before its probe
# saw a single label, and a supervised network given those same minutes may do better.
#
# - Section 1 measures the frozen features alone, from 1 to 5,000 labels per class (cheap: the probes read
#   the features chapter 5 cached).
# - Section 2 gives supervised training the same seconds: from scratch, and fine-tuning the SimCLR encoder
#   (naively and as practitioners do it), with hyper-parameters chosen on a validation split.
# - Section 3 asks how the answer moves with compute, and section 4 how far the book's 5-minute run is from a
#   long GPU run.
# - Section 5 measures how much a run varies by chance, the error bar every comparison in this book needs.
#
# Sections 2-5 rest on runs of hours, too long for a chapter: `bench/payoff.py` and `bench/pretraining.py` made
# them and stored their results in `bench/results/`, which this chapter loads (the machine and data copy are
# printed with them). Section 1 runs on your machine, on the run of chapter 3.

# %% tags=["parameters"]
import os

PRESET = "quick"  # "reference" on a GPU
DATA = os.environ.get("SIMCLR_DATA", "cifar10")
DEVICE = "auto"
# < 1: a run that many times as long, as a slower machine would make (README)
SCALE = float(os.environ.get("SIMCLR_BOOK_SCALE", "1"))
RUN_DIR = "../runs/book" if SCALE == 1 else f"../runs/book-{SCALE:g}"  # chapter 3's run
SEEDS = {1: 5, 5: 5, 25: 5, 100: 5, 500: 3, 5000: 1}  # labels per class -> subsets drawn

# %%
import time

chapter_start = time.perf_counter()

from IPython.display import Markdown

from simclr_core.config import make_config, scaled
from simclr_core.data import load_split
from simclr_core.engine import load_or_train
from simclr_core.probe import (
    budget_weight_decay,
    cached_features,
    label_efficiency,
    pixel_features,
    random_encoder,
    shared_cache,
    train_linear_probe,
)
from simclr_core.runtime import pick_device, uses_bf16
from simclr_core.storage import RunPaths
from simclr_core.stored import by_name, rows

cfg = scaled(make_config(PRESET, data=DATA, device=DEVICE), SCALE)
device = pick_device(cfg.device)
bf16 = uses_bf16(cfg.precision, device)
ALL = max(SEEDS)  # the whole training split, per class
FEW = ALL // 50  # a fiftieth of the labels: 100 per class


def mean(scores: list[float]) -> float:
    return sum(scores) / len(scores)


# %% [markdown]
# ## 1. Label efficiency of frozen features
#
# Every probe in this section reads frozen features, and chapter 5 already computed them for the whole training
# and test splits: `cached_features` finds them (the file name is made from the encoder's weights and the
# images), so probing a hundred labelled subsets costs seconds, not a pass of the encoder each. If chapter 5 has
# not run, this cell computes them (minutes on a CPU) and leaves them there.

# %% tags=["nbval-ignore-output"]
model, _ = load_or_train(cfg, RUN_DIR, progress=False)  # chapter 3's, or trained now
train = load_split(cfg.data, "train", cfg.data_root, cfg.probe_train_subset, cfg.seed)
test = load_split(cfg.data, "test", cfg.data_root)
encoders = {"SimCLR": (model.encoder, RunPaths(RUN_DIR).features),
            "random init": (random_encoder(cfg, device), shared_cache())}
features = {name: tuple(cached_features(encoder, images, cache, device, bf16)
                        for images in (train, test))
            for name, (encoder, cache) in encoders.items()}
features["raw pixels"] = (pixel_features(train), pixel_features(test))
sizes = {name: x.shape[1] for name, (x, _) in features.items()}
print(f"{len(train)} training images ({ALL} per class), {len(test)} test images; "
      f"feature sizes: {sizes}")

# %% [markdown]
# For each budget of N labelled images per class we draw a class-balanced subset (`labelled_indices`; the
# subsets of one seed are nested, so a larger budget adds images to a smaller one) and train chapter 5's linear
# probe on the features of those images only; the score is accuracy on all 10,000 test images. One labelled
# image per class is a noisy experiment (which image you happen to label matters a lot), so small budgets are
# repeated on several subsets: `SEEDS` says how many.

# %% tags=["nbval-ignore-output"]
probe_start = time.perf_counter()
curves = {f"{name} (linear probe)": label_efficiency(x_train, train, x_test, test.labels, SEEDS,
                                                     cfg.probe_steps, cfg.probe_weight_decay)
          for name, (x_train, x_test) in features.items()}
print(f"{sum(SEEDS.values()) * len(curves)} probes in {time.perf_counter() - probe_start:.0f} s")


def cell(scores: list[float]) -> str:
    return f"{mean(scores):.3f} ({min(scores):.3f}-{max(scores):.3f})"


table = [f"| {n} | {SEEDS[n]} | " + " | ".join(cell(c[n]) for c in curves.values()) + " |"
         for n in SEEDS]
Markdown("\n".join(["| labels per class | subsets | " + " | ".join(curves) + " |",
                    "| --- | --- |" + " --- |" * len(curves), *table, "",
                    "Mean test accuracy over the labelled subsets, lowest and highest in "
                    "brackets."]))

# %% tags=["hide-cell"]
# Checks on what the text below claims: SimCLR's features beat the random network's and the
# raw pixels at every budget; every method gains from each budget to the next; the spread
# between subsets shrinks as they grow; and SimCLR with 1/50 of the labels (FEW = 100 per
# class) beats the random-init network with all of them.
simclr, random_init, pixels = (curves[f"{name} (linear probe)"]
                               for name in ("SimCLR", "random init", "raw pixels"))
budgets = sorted(SEEDS)
assert all(mean(simclr[n]) > max(mean(random_init[n]), mean(pixels[n])) + 0.03 for n in budgets)
assert all(mean(c[a]) < mean(c[b]) for c in curves.values() for a, b in zip(budgets, budgets[1:]))
several = max(n for n in SEEDS if SEEDS[n] > 1)  # the largest budget drawn more than once
assert max(simclr[1]) - min(simclr[1]) > max(simclr[several]) - min(simclr[several])
assert mean(simclr[FEW]) > mean(random_init[ALL])

# %% [markdown]
# Read the table by rows and by columns. Along a column, every method gains from each budget to the next, and
# the spread between subsets shrinks: with one image per class, the luck of the draw moves the score by
# several points. Across a row, SimCLR's features lead the random network's and the raw pixels' at every
# budget. The diagonal reading: SimCLR's probe with 100 labels per class beats the random network's probe with
# all 5,000, so to this linear classifier pre-training on unlabelled images was worth more than 49 of every 50
# labels. That says nothing yet about what a network *trained* on those labels could do: section 2.
#
# One detail of the probe matters at small budgets. Its L2 penalty is scaled by (all images / labelled images)
# (`budget_weight_decay`): the penalty is a prior on the weights and the loss averages over the labelled images,
# so with fewer of them the same prior must weigh more per image. The cell below shows what the unscaled penalty
# does (the full split's 1e-4 at every budget), on the SimCLR features and the first labelled subsets.

# %% tags=["nbval-ignore-output"]
from simclr_core.data import labelled_indices

x_train, x_test = features["SimCLR"]
penalty_effect = {}
for n in (25, 100, 500):
    chosen = labelled_indices(train, n, 0)
    scores = {}
    for label, decay in (("scaled", budget_weight_decay(cfg.probe_weight_decay, len(train),
                                                        len(chosen))),
                         ("unscaled", cfg.probe_weight_decay)):
        scores[label] = train_linear_probe(x_train[chosen], train.labels[chosen], x_test,
                                           test.labels, cfg.probe_steps, decay).test_accuracy
    penalty_effect[n] = scores
    print(f"{n:>4} labels per class: probe {scores['scaled']:.3f} with the scaled penalty, "
          f"{scores['unscaled']:.3f} unscaled")

# %% tags=["hide-cell"]
# Check: at 100 labels per class (about as many images as features), the unscaled penalty
# costs the probe more than a point; with all but the smallest budgets the scaled one is
# never worse.
assert penalty_effect[100]["scaled"] > penalty_effect[100]["unscaled"] + 0.01
assert all(s["scaled"] >= s["unscaled"] - 0.005 for s in penalty_effect.values())

# %% [markdown]
# With the unscaled penalty, the probe on 1,000 images (100 a class, against 256 features) overfits: it loses
# points exactly where it has about as many images as weights per class to fit.
#
# ## 2. Training on the labels instead, at equal compute
#
# The comparison readers ask for first: *would I not be better off just training on my labels?* It is only a
# fair question when both sides get the same compute. The book's SimCLR run and its probe cost B seconds on the
# machine of the stored runs: the pre-training (the `quick` preset's 300 s budget) plus the probe (features of
# all 60,000 images, then L-BFGS). The supervised baselines get the same B:
#
# - **from scratch**: the same ResNet-18 (width 32) with a linear layer, trained with cross-entropy on the
#   labelled images only, AdamW with a cosine schedule, augmented on the device (`simclr_core.supervised`);
# - **fine-tuned**, two ways. **Naive**: the SimCLR encoder under a fresh random linear layer, everything trained.
#   **LP-FT** {cite:p}`kumar2022finetuning`: the layer starts as the linear probe fitted on the frozen features
#   (that is, section 1's probe), then everything is trained at a small learning rate. Fine-tuning comes after
#   the pre-training, so its cost is B plus its own seconds (the runs below fine-tune for 60 s).
#
# Hyper-parameters were not taken from the test set. `bench/payoff.py` held 500 images of every class out of the
# training split as a **validation split**, drew the labelled images from the rest, and chose on validation
# accuracy: for training from scratch, learning rate x weight decay x augmentations (the SimCLR recipe, or a
# milder one: crops of at least 80% and flips, no colour), each run for B / 3 seconds at 25 and at 4,500 labels a
# class, and then how long (B / 3 or all of B); for LP-FT, learning rate x augmentations. The chosen settings
# were then run on labelled subsets of the whole training split and scored on the test set. Every run's budget
# is turned into a number of steps at a clock measured once on a quiet machine (seconds per step and per
# evaluated image), so that a busy machine cannot change what a run learns.

# %% tags=["nbval-ignore-output"]
payoff = rows("payoff")
book, clock = by_name("payoff")["book"], by_name("payoff")["clock"]
B = book["budget_seconds"]
print(f"B = {book['pretrain_seconds']:.0f} s of pre-training ({book['steps']} steps) + "
      f"{book['probe_seconds']:.0f} s of probe = {B} s; all labels: SimCLR probe "
      f"{book['test_accuracy']:.4f}")
print(f"supervised clock: {clock['step_seconds']} s a step of {clock['batch_size']} images, "
      f"{1000 * clock['image_seconds']:.2f} ms an evaluated image")
print(f"machine: {book['machine']}; data: {book['data']}")
sweep = [row for row in payoff if row["group"] in ("sweep", "length")]


def setting(row: dict) -> str:
    c = row["config"]
    augment = "SimCLR's" if "jitter" in c["augmentations"] else "mild"
    return f"lr {c['lr']:g}, wd {c['weight_decay']:g}, {augment} views"


lines = ["| method | labels per class | setting | seconds | validation accuracy |",
         "| --- | --- | --- | --- | --- |"]
for row in sorted(sweep, key=lambda r: (r["method"], r["labels_per_class"],
                                        -r["validation_accuracy"])):
    lines.append(f"| {row['method']} | {row['labels_per_class']} | {setting(row)} | "
                 f"{row['compute_seconds']:.0f} | {row['validation_accuracy']:.3f} |")
Markdown("\n".join(lines))

# %% [markdown]
# The table is the whole sweep, best first within each method and budget. Now the final runs: each method at six
# label budgets on labelled subsets of the whole training split (three subsets where the draw matters most),
# the SimCLR probe on exactly the same labelled images, every number a test accuracy.

# %% tags=["nbval-ignore-output"]
final = [row for row in payoff if row["group"] == "final"]
methods = ["SimCLR probe", "scratch", "LP-FT", "naive FT", "naive FT earlier"]
results = {m: {} for m in methods}
cost = {m: [] for m in methods}
for row in final:
    results[row["method"]].setdefault(row["labels_per_class"], []).append(row["test_accuracy"])
    cost[row["method"]].append(row.get("pretrain_seconds", 0) * (row["method"] != "SimCLR probe")
                               + row["compute_seconds"])
label_budgets = sorted(results["scratch"])
names = {"SimCLR probe": "SimCLR + linear probe", "scratch": "from scratch",
         "LP-FT": "SimCLR + LP-FT", "naive FT": "SimCLR + naive fine-tuning",
         "naive FT earlier": "naive fine-tuning, the earlier settings"}
header = "| labels per class | " + " | ".join(names[m] for m in methods) + " |"
lines = [header, "| --- |" + " --- |" * len(methods)]
for n in label_budgets:
    lines.append(f"| {n} | " + " | ".join(cell(results[m][n]) if n in results[m] else "-"
                                        for m in methods) + " |")
lines.append("| seconds | " + " | ".join(f"{min(cost[m]):.0f}-{max(cost[m]):.0f}"
                                         for m in methods) + " |")
Markdown("\n".join(lines))

# %%
curves_at_B = {f"{names[m]} ({'B' if m != 'LP-FT' else 'B + 60 s'})": results[m]
               for m in ("SimCLR probe", "scratch", "LP-FT")}
naive = {names["naive FT"] + " (B + 60 s)": {n: mean(s) for n, s in results["naive FT"].items()}}
fig = label_efficiency_figure(curves_at_B, naive, reference_budget=ALL,
                              title=f"Equal compute: B = {B} s on one 2-core CPU")
fig.savefig("../book/figures/equal_compute.png", dpi=110, metadata={"Software": None})
plt.show()

# %% [markdown]
# PROSE: the reading of the table and figure (written from the stored numbers; the checks below pin it).
#
# ## 3. Why naive fine-tuning can fall below the frozen probe
#
# Naive fine-tuning starts from the same encoder as the probe and can change it as it likes, yet it can end
# below the probe that left the encoder alone. {cite:t}`kumar2022finetuning` explained why: the new linear layer
# starts random, so its first gradients are large and point nowhere in particular, and they flow into the
# encoder and **distort the features** before the layer has learned to use them. LP-FT avoids it by starting
# the layer where the probe ended. Each fine-tuning run of `bench/payoff.py` was followed by one more
# measurement: the linear probe refitted on the *fine-tuned* encoder's frozen features, on the same labelled
# images. If fine-tuning had only added to the features, that probe could not be worse than the original one.

# %% tags=["nbval-ignore-output"]
refit = {}
for row in final:
    if "refit_probe_accuracy" in row:
        refit.setdefault(row["method"], {})[row["labels_per_class"]] = row["refit_probe_accuracy"]
probe_seed0 = {row["labels_per_class"]: row["test_accuracy"] for row in final
               if row["method"] == "SimCLR probe" and row["label_seed"] == 0}
lines = ["| labels per class | probe of the SimCLR features | " +
         " | ".join(f"probe after {names[m]}" for m in refit) + " |",
         "| --- | --- |" + " --- |" * len(refit)]
for n in sorted(probe_seed0):
    lines.append(f"| {n} | {probe_seed0[n]:.3f} | " +
                 " | ".join(f"{refit[m].get(n, float('nan')):.3f}" for m in refit) + " |")
Markdown("\n".join(lines))

# %% [markdown]
# PROSE: what the refitted probes show.
#
# ## 4. Accuracy against compute
#
# Section 2 compared everything at one budget. How does the answer move with compute? Below, with all 5,000
# labels a class: training from scratch at budgets from 30 s to 4 B, and SimCLR + its probe at five lengths of
# pre-training (`bench/pretraining.py`'s runs of 550 to 8,800 steps, costed at the book run's seconds a step
# plus the probe's seconds).

# %% tags=["nbval-ignore-output"]
per_step = book["pretrain_seconds"] / book["steps"]  # the quiet book run: steps, evaluations
scaling = sorted(rows("pretraining", "scaling"), key=lambda row: row["steps"])
simclr_compute = [(row["steps"] * per_step + book["probe_seconds"], row["probe_h"])
                  for row in scaling]
scratch_compute = sorted((row["compute_seconds"], row["test_accuracy"]) for row in final + payoff
                         if row["method"] == "scratch" and row["labels_per_class"] == ALL
                         and row["group"] in ("final", "compute"))
lp_ft_all = [(cost, accuracy) for cost, accuracy, row in
             ((row["pretrain_seconds"] + row["compute_seconds"], row["test_accuracy"], row)
              for row in final) if row["method"] == "LP-FT" and row["labels_per_class"] == ALL]
fig = line_chart({"SimCLR + linear probe": simclr_compute, "from scratch": scratch_compute,
                  "SimCLR + LP-FT": lp_ft_all},
                 "seconds of compute (pre-training + probe, or training) on one 2-core CPU",
                 "test accuracy, all 5,000 labels a class", "Accuracy against compute",
                 log_x=True)
plt.show()
for seconds, accuracy in scratch_compute:
    print(f"from scratch, {seconds:>5.0f} s: {accuracy:.3f}")
for seconds, accuracy in simclr_compute:
    print(f"SimCLR + probe, {seconds:>5.0f} s: {accuracy:.3f}")

# %% [markdown]
# PROSE: where the lines cross.
#
# At B, then, where does the lead change hands as labels grow? The crossover below interpolates, on a log scale
# of labels per class, between the two budgets where training from scratch goes from behind the SimCLR probe to
# ahead of it; its spread comes from doing so for every pairing of the labelled subsets at those two budgets.

# %% tags=["nbval-ignore-output"]
def crossover(a: dict[int, list[float]], b: dict[int, list[float]]) -> list[float]:
    """Labels per class where b overtakes a, one value per pairing of the subsets at the two budgets that
    bracket the change (log-linear interpolation); empty when b never overtakes a."""
    budgets = sorted(set(a) & set(b))
    for low, high in zip(budgets, budgets[1:], strict=False):
        if mean(b[low]) <= mean(a[low]) and mean(b[high]) > mean(a[high]):
            values = []
            for i in range(min(len(a[low]), len(b[low]))):
                for j in range(min(len(a[high]), len(b[high]))):
                    gap_low, gap_high = b[low][i] - a[low][i], b[high][j] - a[high][j]
                    share = -gap_low / (gap_high - gap_low) if gap_high != gap_low else 0.5
                    share = min(max(share, 0.0), 1.0)
                    values.append(math.exp(math.log(low) + share * math.log(high / low)))
            return values
    return []


crossing = crossover(results["SimCLR probe"], results["scratch"])
if crossing:
    print(f"from scratch overtakes the SimCLR probe at about {statistics.median(crossing):.0f} "
          f"labels per class ({min(crossing):.0f}-{max(crossing):.0f} over the subsets)")
else:
    print("from scratch never overtakes the SimCLR probe at equal compute here")

# %% [markdown]
# PROSE: the crossover.
#
# ## 5. How far is a CPU run from a GPU run?
#
# The five pre-training lengths above, now against the images the encoder saw (batches of 128: 550 steps are
# 70,400 images, 8,800 steps 1.1 million, 22 passes of 50,000), probed two ways: the linear probe and the
# weighted 200-NN of chapter 6. Beside them, dashed, a public GPU run of SimCLR with a ResNet-18 on CIFAR-10 at
# 1, 10, 30 and 1,000 epochs of all 50,000 images (the EMP-SSL README's table; its own augmentations, 32x32
# views and probe, evaluated during one long run rather than at the end of runs fitted to each length: so not
# the same protocol, only the same task).

# %% tags=["nbval-ignore-output"]
public = [(1 * 50_000, 0.282), (10 * 50_000, 0.565), (30 * 50_000, 0.663), (1000 * 50_000, 0.910)]
ours = {"this book: linear probe": [(row["images_seen"], row["probe_h"]) for row in scaling],
        "this book: weighted 200-NN": [(row["images_seen"], row["knn200_h"]) for row in scaling]}
points = [(math.log2(row["images_seen"]), row["probe_h"]) for row in scaling]
n = len(points)
mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
extrapolated = [(2 ** x, my + slope * (x - mx))
                for x in (points[-1][0], points[-1][0] + 2, points[-1][0] + 4)]
fig = line_chart({**ours, "public GPU run (EMP-SSL README)": public,
                  "extrapolated: the same gain per doubling": extrapolated},
                 "images seen in pre-training", "test accuracy",
                 "Accuracy against pre-training images", log_x=True,
                 dashed=("public GPU run (EMP-SSL README)",
                         "extrapolated: the same gain per doubling"),
                 levels={"chance": 0.1})
plt.show()
gains = [b[1] - a[1] for a, b in zip(points, points[1:], strict=False)]
print(f"probe gain per doubling of the steps: {[round(g, 3) for g in gains]}; "
      f"fitted {slope:.3f}")

# %% [markdown]
# PROSE: the scaling reading, marked as an extrapolation.
#
# ## 6. How much does a run vary by chance?
#
# Every comparison of two single runs in this book needs an error bar. `bench/pretraining.py` trained the
# base configuration (the `quick` preset at 1,000 steps, chapter 1's ablation size) five times, with seeds 0 to
# 4: the seed draws the initial weights, every augmentation, the batches, and the 10,000 training images.

# %% tags=["nbval-ignore-output"]
seeds = rows("pretraining", "seeds")
measures = {"linear probe on h": "probe_h", "linear probe on z": "probe_z",
            "weighted 200-NN on h": "knn200_h", "effective rank of h": "effective_rank_h"}
lines = ["| measure | " + " | ".join(row["name"] for row in seeds) +
         " | mean | standard deviation | range |", "| --- |" + " --- |" * (len(seeds) + 3)]
for label, key in measures.items():
    spread = seed_spread(key)
    lines.append(f"| {label} | " + " | ".join(f"{row[key]:.4g}" for row in seeds) +
                 f" | {spread.mean:.4g} | {spread.std:.2g} | {spread.high - spread.low:.2g} |")
Markdown("\n".join(lines))

# %% [markdown]
# PROSE: the spread, and the comparisons it settles.

# %% tags=["nbval-ignore-output"]
print(f"chapter executed in {time.perf_counter() - chapter_start:.0f} s on "
      f"{machine_description()}")

# %% [markdown]
# **What to take away**
# - PROSE
#
# **Exercises**
# 1. PROSE
