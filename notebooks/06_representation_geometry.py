# %% [markdown]
# # 6. Representation geometry: alignment, uniformity and neighbours
#
# The probe gives one number. This chapter asks: **what shape does the embedding space take?**
# {cite:t}`wang2020alignment` showed that the contrastive loss, with many negatives, optimises two properties of
# the embeddings $z$ on the unit sphere (lower is better for both, but only together: a network that maps every
# image to one point aligns perfectly):
#
# - **alignment**: two views of one image land close together, $\mathcal{L}_{align} = \mathbb{E}\,\lVert z - z^+
#   \rVert^2$;
# - **uniformity**: all embeddings spread evenly over the sphere,
#   $\mathcal{L}_{unif} = \log \mathbb{E}\, e^{-t\lVert z_i - z_j \rVert^2}$ with $t = 2$.
#
# We measure both, then read the neighbourhoods (a 2-D map, a k-NN classifier, retrieval galleries) of three
# encoders: your run, the same network at random init, and the book's long CPU run, which ships with the package
# (chapter 5).

# %% tags=["parameters"]
from simclr_core.config import book_scale, environment_default

PRESET = "quick"  # "reference" on a GPU
DATA = environment_default("data")
PRECISION = environment_default("precision")  # "auto": bf16 where the CPU has it
DEVICE = "auto"
# < 1: a run that many times as long, as a slower machine would make (README)
SCALE = book_scale()
RUN_DIR = "../runs/book" if SCALE == 1 else f"../runs/book-{SCALE:g}"  # chapter 3's run

# %%
import matplotlib.pyplot as plt
import torch

from simclr_core.analysis import (
    alignment,
    knn_accuracy,
    nearest_neighbours,
    uniformity,
    weighted_knn_accuracy,
)
from simclr_core.augment import SSLAugmentation
from simclr_core.config import make_config, scaled
from simclr_core.data import balanced_indices, load_split
from simclr_core.engine import load_or_train
from simclr_core.plots import image_grid
from simclr_core.pretrained import as_run, load
from simclr_core.probe import cached_features, random_model, shared_cache
from simclr_core.runtime import pick_device, uses_bf16
from simclr_core.storage import RunPaths

# %% tags=["nbval-ignore-output"]
cfg = scaled(make_config(PRESET, data=DATA, device=DEVICE, precision=PRECISION), SCALE)
device = pick_device(cfg.device)
trained, _ = load_or_train(cfg, RUN_DIR, progress=False)
models = {"SimCLR": trained.to(device).eval(),
          "random init": random_model(cfg, device).eval(),  # chapter 5's baseline
          "long run": load("long", device)[0]}  # 3 hours of a 2-core CPU: chapter 5
full_train = load_split(DATA, "train", cfg.data_root, cfg.probe_train_subset, cfg.seed)
full_test = load_split(DATA, "test", cfg.data_root)  # the probe's images, all of them
test_rows = balanced_indices(full_test.labels, 2000, seed=0)
bank_rows = balanced_indices(full_train.labels, 10_000, seed=0)
test = full_test.subset(test_rows)
bank = full_train.subset(bank_rows)  # the k-NN "memory": labelled training images

# %% [markdown]
# ## Alignment and uniformity
#
# Two augmented views of each of 2,000 test images (the same views for all three encoders), embedded into $z$.

# %%
torch.manual_seed(0)
pairs = SSLAugmentation(test)
views = [pairs[i] for i in range(len(test))]
x1, x2 = torch.stack([a for a, _ in views]), torch.stack([b for _, b in views])
geometry = {}
with torch.no_grad():
    for name, model in models.items():
        z1, z2 = model(x1.to(device)).float().cpu(), model(x2.to(device)).float().cpu()
        geometry[name] = {"z1": z1, "z2": z2, "alignment": alignment(z1, z2),
                          "uniformity": uniformity(z1)}

# %% tags=["nbval-ignore-output"]
for name, g in geometry.items():
    a, u = g["alignment"], g["uniformity"]
    print(f"{name:>12}: alignment {a:.3f}, uniformity {u:.3f}")

# %% [markdown]
# The random network's alignment looks excellent, and that is the trap: it maps *every* image to nearly the same
# point. Its uniformity near 0, the value of a single point (the ideal on a 128-d sphere is about -4), gives it away.
# Pre-training spreads the images out: uniformity falls by more than 0.5 in your run and to -3.8 in the long run.
# The long run's positives end up farther apart than the random network's, but much closer relative to the spread
# of the images, which is what the loss asks for. The histograms show it: cosine similarity of positive pairs
# against pairs of different images.

# %%
fig, axes = plt.subplots(1, len(geometry), figsize=(14, 3.2), sharey=False)
for ax, (name, g) in zip(axes, geometry.items(), strict=True):
    positive = (g["z1"] * g["z2"]).sum(1)
    negative = (g["z1"] * g["z2"].roll(1, dims=0)).sum(1)
    bins = torch.linspace(-1, 1, 61).numpy()
    for values, label in ((positive, "two views of one image"),
                          (negative, "views of different images")):
        ax.hist(values.numpy(), bins=bins, alpha=0.6, density=True, label=label)
    ax.set(title=name, xlabel="cosine similarity")
    ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
plt.show()

# %% tags=["nbval-ignore-output"]
def separation(g: dict) -> float:
    """How far apart different images are, in units of one image's two views."""
    positive_distance = (g["z1"] - g["z2"]).pow(2).sum(1).mean()
    negative_distance = (g["z1"] - g["z2"].roll(1, dims=0)).pow(2).sum(1).mean()
    return (negative_distance / positive_distance).item()


for name, g in geometry.items():
    times = separation(g)
    print(f"{name:>12}: different images are {times:.1f}x farther apart than two views "
          "of one image")

# %% tags=["hide-cell"]
# Checks on what the text claims: the trained embeddings are far more uniform than the
# random ones, and relative to that spread, its positives are much closer (better
# separation of positives from negatives); in absolute terms, though, its alignment is
# several times worse than the random network's, whose embeddings are nearly one point.
assert geometry["SimCLR"]["uniformity"] < geometry["random init"]["uniformity"] - 0.5
assert separation(geometry["SimCLR"]) > 2 * separation(geometry["random init"])
assert geometry["SimCLR"]["alignment"] > 5 * geometry["random init"]["alignment"]
assert geometry["random init"]["uniformity"] > -0.5  # a point's 0, not the sphere's -4
assert round(geometry["long run"]["uniformity"], 1) == -3.8
assert round(separation(geometry["long run"]), 1) == 5.7
assert separation(geometry["random init"]) < 2

# %% [markdown]
# Measured against one image's two views, different images end several times farther apart in the trained
# networks (5.7 times in the long run) than at random init (under 2).

# %% [markdown]
# ```{admonition} Diagnostics, not scores
# How much do these two numbers say about a run? `bench/pretraining.py` stored them for five seeds of one
# configuration and for four temperatures (chapter 4's sweep); the cell below sets the two spreads side by side.
# ```

# %% tags=["nbval-ignore-output"]
from simclr_core.results import rows

stored = {group: rows("pretraining", group) for group in ("seeds", "temperatures")}
def span(found: list[dict], measure: str) -> float:
    return max(r[measure] for r in found) - min(r[measure] for r in found)


spans = {group: {measure: span(found, measure)
                 for measure in ("alignment", "uniformity")}
         for group, found in stored.items()}
probe_span = {group: span(found, "probe_h") for group, found in stored.items()}
for group, found in stored.items():
    print(f"{len(found)} runs over {group}: alignment spans "
          f"{spans[group]['alignment']:.3f}, uniformity "
          f"{spans[group]['uniformity']:.3f}, the probe {probe_span[group]:.3f}")

# %% tags=["hide-cell"]
# Check: five seeds of one configuration spread alignment and uniformity at least as far
# as four temperatures from 0.1 to 1.0 do, while the probe spans 8 points over the
# temperatures and 1.5 over the seeds.
assert spans["seeds"]["alignment"] >= spans["temperatures"]["alignment"]
assert spans["seeds"]["uniformity"] >= spans["temperatures"]["uniformity"]
assert round(probe_span["temperatures"], 2) == 0.08
assert round(probe_span["seeds"], 3) == 0.015

# %% [markdown]
# The seed moves alignment and uniformity as far as a tenfold change of temperature does, while the temperature
# moves the probe by 8 points and the seed by 1.5. Read them as diagnostics: a uniformity near 0 says collapse; two
# runs a few tenths apart are not ranked by them.
#
# ## A map of the features
#
# Each encoder's features of the same 2,000 test images, squeezed into two dimensions by t-SNE and coloured by
# class; no label is used to make the map. Points that are neighbours in the features are near each other in the
# map. Only that means something: not the axes, the distances between clusters or their sizes.

# %%
from simclr_core.analysis import tsne
from simclr_core.plots import feature_map

bf16 = uses_bf16(cfg.precision, device)
LONG_DIR = as_run("long", "../runs/pretrained-long",
                  {"data": cfg.data, "data_root": cfg.data_root})
caches = {"SimCLR": RunPaths(RUN_DIR).features, "random init": shared_cache(),
          "long run": RunPaths(LONG_DIR).features}
every = {name: (cached_features(m.encoder, full_train, caches[name], device, bf16),
                cached_features(m.encoder, full_test, caches[name], device, bf16))
         for name, m in models.items()}  # h of every image, cached by chapter 5's probe
features = {name: (train_h[bank_rows], test_h[test_rows])
            for name, (train_h, test_h) in every.items()}
maps = {name: tsne(test_h, seed=0) for name, (_, test_h) in features.items()}
fig = feature_map(maps, test.labels, test.classes)
plt.show()

# %% tags=["nbval-ignore-output"]
vehicles = torch.tensor([name in ("airplane", "automobile", "ship", "truck")
                         for name in test.classes])
map_share = {}
for name, points in maps.items():  # each point's 10 nearest points in the map
    near = torch.cdist(points, points).fill_diagonal_(float("inf"))
    near = near.topk(10, largest=False).indices
    same_class = (test.labels[near] == test.labels[:, None]).float().mean().item()
    same_kind = (vehicles[test.labels[near]] == vehicles[test.labels][:, None])
    map_share[name] = same_class, same_kind.float().mean().item()
    print(f"{name:>12}: of each image's 10 nearest points in the map, a share of "
          f"{same_class:.2f} is of its class, {map_share[name][1]:.2f} of its kind "
          "(vehicle or animal)")

# %% tags=["hide-cell"]
# Checks on the reading below: in the map, an image's near points share its class more
# often the longer its encoder trained (by 5 points or more each time), and the long
# run's separate vehicles from animals better than random init's.
assert map_share["long run"][0] > map_share["SimCLR"][0] + 0.05
assert map_share["SimCLR"][0] > map_share["random init"][0] + 0.05
assert map_share["long run"][1] > map_share["random init"][1] + 0.1

# %% [markdown]
# The random network's map has a shape, but the classes are mixed all along it. In your run's, the vehicles
# (airplanes, cars, ships, trucks) drift to one side and the animals to the other. In the long run's, cars, trucks and
# frogs each gather into a region of their own and ships share one with airplanes, while cats, dogs, deer and birds
# share the middle, horses at its edge. The counts above say the same without reading colours. A rerun with another
# seed may move any one feature of a map.
#
# ## k-NN accuracy: classes from neighbours alone
#
# A test image gets the majority label of its 20 most cosine-similar training images, in the probe's features $h$.
# No training at all: if the classes are clustered, this works. The protocol is a small one: one vote per
# neighbour, a bank of 10,000 training images, the 2,000 test images above as queries.

# %% tags=["nbval-ignore-output"]
knn = {name: knn_accuracy(f_bank, bank.labels, f_test, test.labels, k=20)
       for name, (f_bank, f_test) in features.items()}
for name, accuracy in knn.items():
    print(f"{name:>12}: 20-NN test accuracy {accuracy:.3f} (unweighted, 10,000-image "
          f"bank, 2,000 queries)")

# %% tags=["hide-cell"]
# Check: neighbours in SimCLR feature space share the query's class more often than in
# random features, by more than 8 points (15 here; 14 on the book's earlier 32x32 run).
assert knn["SimCLR"] > knn["random init"] + 0.08

# %% [markdown]
# Published CIFAR-10 k-NN accuracies mostly use the standard monitor of {cite:t}`wu2018instance`: all 50,000
# training images in the bank, all 10,000 test images as queries, and the $k = 200$ nearest neighbours voting with
# weights $\exp(s / 0.07)$, where $s$ is the cosine similarity (`simclr_core.analysis.weighted_knn_predict`). Its
# numbers compare with those papers' for the same network and training length; the small protocol's do not.

# %% tags=["nbval-ignore-output"]
weighted_knn = {}
for name, (train_h, test_h) in every.items():
    weighted_knn[name] = weighted_knn_accuracy(train_h, full_train.labels, test_h,
                                               full_test.labels, k=200,
                                               temperature=0.07)
    print(f"{name:>12}: weighted 200-NN test accuracy {weighted_knn[name]:.3f}  "
          f"({len(full_train)}-image bank, {len(full_test)} queries)")

# %% tags=["hide-cell"]
# Check: with the standard protocol too, the SimCLR features' neighbours carry more of
# the class.
assert weighted_knn["SimCLR"] > weighted_knn["random init"] + 0.08
assert weighted_knn["long run"] > weighted_knn["SimCLR"] + 0.05
assert round(weighted_knn["long run"], 2) == 0.68

# %% [markdown]
# The long run's neighbours carry much more of the class: its weighted 200-NN is about 0.68, well above your
# five-minute run's (both printed above).

# %% [markdown]
# ## Retrieval galleries
#
# Each row: a test image (left), then its 7 nearest training images; one block an encoder, the same five random
# queries in each. Titles are the true classes, which no encoder saw. Five rows are a small sample, so the cell after
# the galleries counts same-class neighbours over 500 queries.

# %%
queries = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:5]
for name, (f_bank, f_test) in features.items():
    neighbours = nearest_neighbours(f_test[queries], f_bank, k=7)
    rows = torch.cat([torch.stack([test.images[q], *bank.images[n]])
                      for q, n in zip(queries, neighbours, strict=True)])
    titles = [bank.classes[int(c)] for q, n in zip(queries, neighbours, strict=True)
              for c in [test.labels[q], *bank.labels[n]]]
    fig = image_grid(rows, titles=titles, ncols=8, size=1.15)
    fig.suptitle(name, y=1.02)
    plt.show()

# %% tags=["nbval-ignore-output"]
many = torch.randperm(len(test), generator=torch.Generator().manual_seed(1))[:500]
same_class_share = {}
for name, (f_bank, f_test) in features.items():
    neighbours = nearest_neighbours(f_test[many], f_bank, k=7)
    same = bank.labels[neighbours] == test.labels[many, None]
    same_class_share[name] = same.float().mean().item()
    shown = nearest_neighbours(f_test[queries], f_bank, k=7)
    shown_same = int((bank.labels[shown] == test.labels[queries, None]).sum())
    print(f"{name:>12}: same-class neighbours: {shown_same} of {shown.numel()} in the "
          f"gallery, a share of {same_class_share[name]:.2f} over {len(many)} queries "
          f"(chance: 0.10)")

# %% tags=["hide-cell"]
# Check: over many queries, your SimCLR run's neighbours share the query's class more
# often than the random ones, and the long run's more often still.
assert same_class_share["SimCLR"] > same_class_share["random init"] + 0.03
assert same_class_share["long run"] > same_class_share["SimCLR"] + 0.03

# %% [markdown]
# No gallery is perfect: look for rows whose neighbours share the query's colours across classes, in every block.
# Over 500 queries your run's neighbours share the query's class more often than random init's, and the long run's
# more often still, which is what the k-NN accuracies measure.
#
# **What to take away**
# - Contrastive learning gives up the random network's trivial alignment for uniformity: the images spread over the
#   sphere, and relative to that spread each image's two views stay close.
# - Alignment alone can mislead (a collapsed network is perfectly aligned). Read it next to uniformity, and read
#   both as diagnostics, not scores.
# - Neighbourhoods in feature space carry class information that no label put there, and longer training puts more
#   there.
#
# **Exercises**
# 1. *Other t.* Compute `uniformity(g["z1"], t=...)` for $t$ = 0.5, 2 and 8 for each encoder. The numbers move;
#    does the ranking?
# 2. *How many neighbours?* Run the unweighted k-NN cell with `k=1`, `5` and `200`, and the weighted one with
#    `temperature=1.0` (nearly a plain count). Which $k$ does the random encoder like best? How much of the gap
#    between the two protocols is the weighting, how much the bigger bank?
# 3. *k-NN on z.* In the map's cell, pass `m` (the whole model, so $z$) to `cached_features` in place of
#    `m.encoder`, then rerun the k-NN cells. Chapter 5's first exercise asks the same of the linear probe.
# 4. *Temperature and uniformity.* Run this chapter on a run trained at `temperature=0.5` (chapter 3's exercises).
#    {cite:t}`wang2021behaviour` report that a higher temperature gives a less uniform embedding. Predict the
#    change, then hold it against the seed spread above: can one run at each temperature show it?
# 5. *Count the galleries.* Change the seed of `queries` a few times. How often do five rows show the ordering
#    that 500 queries show?
