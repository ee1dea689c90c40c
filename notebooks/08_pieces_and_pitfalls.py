# %% [markdown]
# # 8. What each piece is for, and how to get it wrong
#
# The earlier chapters explained the projection head and the temperature with arguments and toy tensors. This
# one trains them: the same network with no head, a linear head and SimCLR's two-layer head; five temperatures
# from 0.05 to 1.0. Then it does what no tutorial does and measures the classic mistakes, the ones the issue
# trackers of public SimCLR code are full of: the ImageNet stem on 32x32 images, a "linear" probe whose backbone
# trains, features extracted without `eval()`, the self-similarity left in the logits, a positive one index
# off, embeddings that are not normalised, negatives that are not gathered across processes, and pre-training
# on the test images. Each mistake is the correct code with one thing changed (`simclr_core.pitfalls`, whose
# tests prove it), run at the book's scale, its cost stated beside the correct number.
#
# Every run here is the `quick` preset at 1,000 steps (chapter 1's ablation size, 128,000 images seen) with one
# thing changed; `bench/pretraining.py` trained them (about five minutes each on a 2-core CPU) and measured
# each encoder without labels as well as with them. The label-free measures:
#
# - the **covariance spectrum** of the embeddings: the eigenvalues of their covariance, largest first. An
#   embedding that uses only a few directions has a spectrum that drops off a cliff: **dimensional collapse**
#   {cite:p}`jing2022collapse`;
# - the **effective rank** (RankMe, {cite:t}`garrido2023rankme`): exp of the entropy of the normalised singular
#   values, from 1 (a line) to the dimension (every direction equally used);
# - chapter 6's **alignment** and **uniformity** of $z$.
#
# The seed-to-seed spread of the base configuration (chapter 7) decides which differences are results.

# %% tags=["parameters"]
import os

PRESET = "quick"  # "reference" on a GPU
DATA = os.environ.get("SIMCLR_DATA", "cifar10")
DEVICE = "auto"
# < 1: a run that many times as long, as a slower machine would make (README)
SCALE = float(os.environ.get("SIMCLR_BOOK_SCALE", "1"))
RUN_DIR = "../runs/book" if SCALE == 1 else f"../runs/book-{SCALE:g}"  # chapter 3's run
PROPERTY_IMAGES = 3000  # test images of the brightness experiment

# %%
import math
import statistics

import matplotlib.pyplot as plt
from IPython.display import Markdown

from simclr_core.plots import line_chart
from simclr_core.stored import by_name, rows, seed_spread

runs = by_name("pretraining")
spread = seed_spread()
base = runs["seed 0"]
print(f"the base configuration, 5 seeds: probe on h {spread.mean:.4f} "
      f"(standard deviation {spread.std:.4f}); seed 0: {base['probe_h']:.4f}")
print(f"machine: {base['machine']}; data: {base['data']}")


def over_seeds(names: list[str], key: str) -> list[float]:
    return [runs[name][key] for name in names]


def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


# %% [markdown]
# ## 1. The projection head, trained
#
# Three heads, three seeds each: no head (the loss sees $h$ itself, normalised), one linear layer
# ($h \to 128$), and SimCLR's MLP ($h \to h \to 128$ with a ReLU, the book's default, whose three seeds are
# chapter 7's seed runs 0-2). For each, the linear probe on $h$ (what every downstream use reads) and on $z$
# (what the loss saw), and the effective rank of both.

# %% tags=["nbval-ignore-output"]
heads = {"none": [f"head none seed {s}" for s in range(3)],
         "linear": [f"head linear seed {s}" for s in range(3)],
         "MLP (SimCLR's)": [f"seed {s}" for s in range(3)]}
columns = {"probe on h": "probe_h", "probe on z": "probe_z", "effective rank of h": "effective_rank_h",
           "effective rank of z": "effective_rank_z"}
lines = ["| head | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
for head, names in heads.items():
    lines.append(f"| {head} | " + " | ".join(summary(over_seeds(names, key))
                                            for key in columns.values()) + " |")
Markdown("\n".join(lines + ["", "Mean ± standard deviation over seeds 0-2."]))

# %%
spectra = {f"{head}: {layer}": [(i + 1, value / runs[names[0]][f"spectrum_{layer}"][0])
                                for i, value in enumerate(runs[names[0]][f"spectrum_{layer}"])]
           for head, names in heads.items() for layer in ("h", "z")}
fig = line_chart(spectra, "direction (eigenvalues, largest first)",
                 "eigenvalue / the largest", "Covariance spectra of h and z (seed 0)", log_y=True,
                 dashed=tuple(name for name in spectra if name.endswith(": z")))
plt.show()

# %% [markdown]
# PROSE
#
# ## 2. What the head throws away: a property the augmentations vary
#
# The SimCLR paper {cite:p}`chen2020simclr` *conjectures* why $h$ serves downstream tasks better than $z$: the loss
# asks $z$ to be invariant to the augmentations, so $g$ is free to throw away what they change (colour,
# framing), even where that would help a downstream task, while $h$, one layer below, keeps it. Its evidence is
# that $h$ beats $z$ at every size of $z$ (its Table 3 and Figure 8), and that $z$ carries less of the
# transformation an image went through. We test a version of the second part on the book's own run: scale the
# brightness of each of `PROPERTY_IMAGES` test images by a known random factor from the colour jitter's range
# (0.6 to 1.4), embed them, and fit a ridge regression from the features to the factor on two thirds of the
# images; its $R^2$ on the other third says how much of the brightness the features still carry (1: all of it,
# linearly; 0: nothing a line can use). The random network, never taught to ignore anything, is the reference.

# %% tags=["nbval-ignore-output"]
import torch
import torch.nn.functional as F

from simclr_core.analysis import brightness_views, linear_r2
from simclr_core.config import make_config, scaled
from simclr_core.data import ImageSet, load_split
from simclr_core.engine import load_or_train
from simclr_core.probe import extract_features, random_encoder
from simclr_core.runtime import pick_device, uses_bf16

cfg = scaled(make_config(PRESET, data=DATA, device=DEVICE), SCALE)
device = pick_device(cfg.device)
bf16 = uses_bf16(cfg.precision, device)
model, _ = load_or_train(cfg, RUN_DIR, progress=False)  # chapter 3's, or trained now
test = load_split(cfg.data, "test", cfg.data_root)
chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:PROPERTY_IMAGES]
views, brightness = brightness_views(test.images[chosen])
views = ImageSet(views, test.labels[chosen], test.classes)
h = extract_features(model.encoder, views, device, bf16=bf16)
with torch.no_grad():
    carried = {"h = f(x)": h, "z = g(h)": F.normalize(model.head.cpu().eval()(h), dim=1),
               "random init h": extract_features(random_encoder(cfg, device), views, device,
                                                 bf16=bf16)}
fit = 2 * PROPERTY_IMAGES // 3
r2 = {name: linear_r2(x[:fit], brightness[:fit], x[fit:], brightness[fit:])
      for name, x in carried.items()}
for name, value in r2.items():
    print(f"{name:>14}: brightness R^2 {value:.3f}")

# %% tags=["hide-cell"]
# Checks: h carries more of the brightness than z does, and the random network's features
# carry more of it than h.
assert r2["h = f(x)"] > r2["z = g(h)"] + 0.03
assert r2["random init h"] > r2["h = f(x)"]

# %% [markdown]
# Both halves of the story are there, and one more. $z$ keeps less of the brightness than $h$, as the
# conjecture has it (part of the gap may be $z$'s smaller size, 128 dimensions to $h$'s 8 x width, an asymmetry
# the paper's comparison shares). But $h$ does not *keep* the brightness: the random network's features carry
# more of it than $h$ does. Pre-training already removed much of the brightness from $h$, and the head removes
# more. So "discarding $g$ keeps the information" is too strong: what it keeps is what the encoder had not yet
# thrown away, and section 1's spectra say how much of $h$ that is.

# %% [markdown]
# ## 3. The temperature, trained
#
# PROSE

# %% tags=["nbval-ignore-output"]
temperatures = {0.05: [f"seed {s}" for s in range(2)]}
for row in rows("pretraining", "temperatures"):
    temperatures.setdefault(row["overrides"]["temperature"], []).append(row["name"])
measures = {"probe on h": "probe_h", "alignment": "alignment", "uniformity": "uniformity",
            "effective rank of z": "effective_rank_z", "held-out top-1": "ssl_top1"}
lines = ["| T | seeds | " + " | ".join(measures) + " |", "| --- | --- |" + " --- |" * len(measures)]
for t in sorted(temperatures):
    names = temperatures[t]
    lines.append(f"| {t:g} | {len(names)} | " +
                 " | ".join(summary(over_seeds(names, key)) for key in measures.values()) + " |")
Markdown("\n".join(lines))

# %% [markdown]
# PROSE
#
# ## 4. Pitfalls, each measured
#
# PROSE

# %% tags=["nbval-ignore-output"]
pitfalls = {row["name"]: row for row in rows("pretraining", "pitfalls")}
lines = ["| run | probe on h | effective rank of h | held-out loss | note |", "| --- | --- | --- | --- | --- |"]
lines.append(f"| the correct run (seed 0; 5 seeds: {spread.mean:.3f} ± {spread.std:.3f}) | "
             f"{base['probe_h']:.4f} | {base['effective_rank_h']:.1f} | {base['ssl_loss']:.3f} | |")
for name, row in pitfalls.items():
    rank = row.get("effective_rank_h")
    loss = row.get("ssl_loss")
    note = f"diverged: {row['diverged'][:60]}" if row.get("diverged") else ""
    lines.append(f"| {name} | {row['probe_h']:.4f} | {rank:.1f} | {loss:.3f} | {note} |" if rank else
                 f"| {name} | {row['probe_h']:.4f} | | | {row.get('epochs', '')} |")
Markdown("\n".join(lines))

# %% [markdown]
# ## 5. Choosing without labels
#
# PROSE

# %% tags=["nbval-ignore-output"]
def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    for position, i in enumerate(order):
        result[i] = position
    return result


def spearman(x: list[float], y: list[float]) -> float:
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    covariance = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return covariance / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


measured = [row for row in rows("pretraining") if "effective_rank_h" in row
            and row["group"] in ("seeds", "heads", "temperatures", "augmentations", "pitfalls")]
for key in ("effective_rank_h", "effective_rank_z", "uniformity", "alignment"):
    print(f"{key}: Spearman rank correlation with the probe over {len(measured)} runs: "
          f"{spearman([row[key] for row in measured], [row['probe_h'] for row in measured]):+.2f}")

# %% [markdown]
# **What to take away**
# - PROSE
#
# **Exercises**
# 1. PROSE
