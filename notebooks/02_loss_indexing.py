# %% [markdown]
# # 2. The loss, indexed: NT-Xent step by step
#
# Chapter 1 made pairs of views. This chapter answers: **how does a batch of pairs become one number to
# minimise?** We follow `simclr_core.loss` line by line on tensors small enough to read, and check it
# against a loop written straight from the formula.
#
# The loss is **NT-Xent**, the *normalized temperature-scaled cross entropy*, as the SimCLR paper names it
# {cite:p}`chen2020simclr`: normalized because every embedding is scaled to unit length, so that similarities
# are cosines; temperature-scaled because they are divided by $T$; cross entropy because each view classifies
# which of the others is its partner. The same loss appears earlier as the multi-class N-pair loss
# {cite:p}`sohn2016npair` and, in the form most papers cite, as **InfoNCE** {cite:p}`oord2018cpc`. Instance
# discrimination {cite:p}`wu2018instance` used the same kind of temperature-scaled softmax, against a memory
# bank of other images' features rather than the rest of the batch.
#
# For a batch of $B$ images the encoder and head give two unit vectors per image, $z^{(1)}_k$ and
# $z^{(2)}_k$. Stack them into $N = 2B$ rows, $Z = [z^{(1)}; z^{(2)}]$. Row $i$'s positive is the other view
# of the same image, row $(i + B) \bmod N$. With cosine similarities $s_{ij} = z_i \cdot z_j$ and a
# temperature $T$:
#
# $$\ell_i = -\log \frac{\exp(s_{i,p(i)}/T)}{\sum_{k \ne i} \exp(s_{ik}/T)}, \qquad
#   L = \frac{1}{N}\sum_i \ell_i .$$
#
# Each row is a classification problem with $N - 1$ choices: "which of the other views is my partner?"

# %% tags=["parameters"]
from simclr_core.config import environment_default

# for the last section only: real images, an untrained network
DATA = environment_default("data")
PRECISION = environment_default("precision")  # "auto": bf16 where the CPU has it

# %%
import math

import torch
import torch.nn.functional as F

from simclr_core.loss import contrastive_metrics, nt_xent, simclr_logits_targets
from simclr_core.plots import similarity_heatmap

torch.set_printoptions(precision=3, sci_mode=False)

# %% [markdown]
# ## Three images, two views each
#
# $B = 3$ images with 2-dimensional embeddings, so every vector is an angle on the unit circle. View 2 of
# each image is a slightly rotated copy of view 1: the positives are close, the images are spread out.

# %%
B, T = 3, 0.5
angles = torch.tensor([0.0, 2.0, 4.0])  # radians: image k sits at angle k
z1 = torch.stack([angles.cos(), angles.sin()], dim=1)
z2 = torch.stack([(angles + 0.3).cos(), (angles + 0.3).sin()], dim=1)
Z = torch.cat([z1, z2])
print("Z = [z1; z2], shape", tuple(Z.shape))
print(Z)

# %% [markdown]
# ## The similarity matrix and its mask
#
# $S = Z Z^\top$ is $N \times N$. Its diagonal is each view compared with itself (always 1): that is not a
# choice the row may make, so it is set to $-\infty$ before the softmax. The red boxes are the positives,
# two off-diagonal bands $B$ places from the diagonal: the top-right block pairs view 1 with view 2, the
# bottom-left block view 2 with view 1.

# %%
S = Z @ Z.T
print(S)
fig = similarity_heatmap(S, B, title="S = Z Z^T (red: positives)")

# %%
logits, targets = simclr_logits_targets(z1, z2, temperature=T)
print("targets = (arange(N) + B) % N =", targets.tolist())
print("logits = S / T with -inf on the diagonal:")
print(logits)

# %% tags=["hide-cell"]
# Check: the logits are S / T off the diagonal, -inf on it, and each row's target is the
# other view.
N = 2 * B
assert targets.tolist() == [3, 4, 5, 0, 1, 2]
assert torch.isneginf(logits.diagonal()).all()
off_diagonal = ~torch.eye(N, dtype=torch.bool)
torch.testing.assert_close(logits[off_diagonal], (S / T)[off_diagonal])
for i in range(N):
    assert targets[i] % B == i % B and targets[i] != i  # same image, other view

# %% [markdown]
# ## Cross-entropy on S / T is the loss
#
# With the diagonal masked, each row's softmax runs over the $N - 1$ other views, and `cross_entropy` with
# the targets above is exactly $\ell_i$ averaged over rows. Here is the same loss as a plain loop over
# anchors, written from the formula alone:

# %%
def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    views = torch.cat([z1, z2])
    n, b = len(views), len(z1)
    total = 0.0
    for i in range(n):
        positive = (i + b) % n
        numerator = math.exp(views[i] @ views[positive] / temperature)
        others = [k for k in range(n) if k != i]
        denominator = sum(math.exp(views[i] @ views[k] / temperature) for k in others)
        total += -math.log(numerator / denominator)
    return total / n


loss = nt_xent(z1, z2, temperature=T)
reference = naive_nt_xent(z1, z2, temperature=T)
print(f"nt_xent: {loss.item():.6f}   naive loop: {reference:.6f}")

# %% tags=["hide-cell"]
# Check: the vectorised loss equals the loop.
assert abs(loss.item() - reference) < 1e-5

# %% [markdown]
# ## p_pos and top-1: reading the softmax
#
# Two numbers summarise how well the rows solve their classification problem, and training logs both:
#
# - **p_pos**: the softmax probability each row gives its positive, averaged. At chance it is $1/(N-1)$.
# - **top-1**: the share of rows whose positive is the most similar view. This is *retrieval inside the
#   batch*, not classification accuracy: no class label is involved.

# %%
probabilities = logits.softmax(dim=1)
print("softmax per row:")
print(probabilities)
metrics = contrastive_metrics(logits, targets)
print({name: round(value, 4) for name, value in metrics.items()})

# %% tags=["hide-cell"]
# Check: p_pos is the mean of the probabilities in the target columns, and here every
# positive wins.
on_targets = probabilities[torch.arange(N), targets]
torch.testing.assert_close(torch.tensor(metrics["p_pos"]), on_targets.mean())
assert metrics["top1"] == 1.0 and metrics["p_pos"] > 1 / (N - 1)

# %% [markdown]
# ## What a bad embedding costs
#
# One reference point matters for every training curve: if the encoder collapses (all views the same vector),
# every row's softmax is uniform over $N - 1$ views and the loss is $\log(N - 1)$, whatever $T$. Correct pairs
# that stand out from the rest score below it. Wrong pairs can score above it: in this toy, pairing each view 1
# with the view 2 of the *next* image, which lies far from it, raises the loss above $\log(N - 1)$. That is a
# property of this toy, not a law: a wrong partner that happened to lie close would cost less.

# %%
collapsed = F.normalize(torch.ones(B, 2), dim=1)
print(f"collapsed: {nt_xent(collapsed, collapsed, T).item():.4f}  "
      f"vs log(N - 1) = {math.log(N - 1):.4f}")
wrong = nt_xent(z1, z2.roll(1, dims=0), T)
print(f"positives shuffled: {wrong.item():.4f}; correct positives: {loss.item():.4f}")

# %% tags=["hide-cell"]
# Check: collapse gives exactly log(N - 1); in this toy, correct pairs beat it and the
# wrong pairs do worse.
assert abs(nt_xent(collapsed, collapsed, T).item() - math.log(N - 1)) < 1e-6
assert loss.item() < math.log(N - 1) < wrong.item()

# %% [markdown]
# ## Where training starts
#
# For a training batch of 128 images, $N - 1 = 255$ and $\log 255 \approx 5.54$. Where does an untrained
# network stand? We take the `quick` preset's network (chapter 3) at its random initialisation, in training
# mode as at the first step, and feed it two augmented views of 128 real training images, made as training
# makes them: how similar are its embeddings of *different* images, and what loss does it score?

# %%
from simclr_core.augment import AugmentationParams
from simclr_core.batch_augment import BatchAugmentation
from simclr_core.config import make_config
from simclr_core.data import load_split
from simclr_core.model import SimCLRModel
from simclr_core.runtime import seed_everything

quick = make_config("quick", data=DATA, precision=PRECISION)
real = load_split(DATA, "train", subset=quick.batch_size, seed=0)
seed_everything(quick.seed)
untrained = SimCLRModel(quick.width, quick.proj_dim).train()
recipe = AugmentationParams(crop_scale=(quick.crop_min_scale, 1.0),
                            output_size=quick.train_resolution)
augment = BatchAugmentation(recipe, seed=0)
with torch.no_grad():
    z_real1, z_real2 = untrained(augment(real.images)), untrained(augment(real.images))
# view 1 of image i against view 2 of image j != i
different_images = ~torch.eye(quick.batch_size, dtype=torch.bool)
mean_cosine = (z_real1 @ z_real2.T)[different_images].mean().item()
start_loss = nt_xent(z_real1, z_real2, quick.temperature).item()
start_log = math.log(2 * quick.batch_size - 1)
print(f"untrained, {quick.batch_size} images: mean cosine similarity of different "
      f"images {mean_cosine:.2f}")
print(f"loss at T = {quick.temperature} {start_loss:.3f}, log(N - 1) = {start_log:.3f}")

# %% tags=["hide-cell"]
# Check: at random initialisation the embeddings of different images point in nearly the
# same direction (mean cosine far above the 0 of vectors spread over the sphere), and
# the loss starts near log(N - 1).
assert mean_cosine > 0.6
assert abs(start_loss - start_log) < 0.3

# %% [markdown]
# The untrained network maps every view into a narrow cone: it is nearly collapsed, so it cannot yet tell a
# view's partner from the other candidates, and its loss sits near $\log(N - 1)$. That is where chapter 3's
# curves begin.
#
# **What to take away**
# - Positives sit $B$ places off the diagonal: `targets = (arange(N) + B) % N`.
# - Masking the diagonal removes the trivial answer "I am most similar to myself".
# - NT-Xent is an $(N-1)$-way cross-entropy per view; p_pos and top-1 read off how it is going.
# - Next: [chapter 3](03_training) trains an encoder with it.
#
# **Exercises** (each reruns in a second: change the toy cell and run the chapter again)
# 1. *Views that disagree.* Change the rotation between the two views from 0.3 to 0.9, then 1.1, then 2.0 radians
#    (2.0 is the spacing between images, so view 2 of one image lands on view 1 of the next). Predict p_pos and
#    top-1 first. Expect at 0.9: loss 0.63, p_pos 0.54, top-1 still 6/6; at 1.1: loss 0.94, p_pos 0.39, top-1
#    2/6, because each second view is now nearer the next image's first view than its own (at exactly 1.0 the two
#    are equally near, a tie that float rounding decides, so avoid it); at 2.0: loss 3.00, above the collapsed
#    $\log 5 = 1.61$, and top-1 0. Which check cells fail, and do they fail for a good reason?
# 2. *Temperature on the toy.* Set `T` to 0.1 and to 5. The collapsed loss stays $\log(N-1)$ at every $T$ (why?);
#    the loss of the correct pairs goes to almost 0 at $T = 0.1$ and to 1.39 at $T = 5$, where p_pos is only
#    0.25 although top-1 is still 1. Chapter 4 explains where the gradient goes as $T$ changes.
# 3. *A bigger batch.* Set `B = 8` with `angles = torch.arange(B) * 2 * math.pi / B` (evenly spaced images).
#    Predict the collapsed loss, $\log 15 = 2.71$, and which check cells need their hard-coded targets updated.
# 4. *Decoupled contrastive learning.* DCL {cite:p}`yeh2022dcl` drops the positive from the denominator. Change
#    `if k != i` to `if k != i and k != positive` in `naive_nt_xent`. Why must the loss now be lower than
#    NT-Xent on the same embeddings (here $-1.41$ against $0.22$), and what is its collapsed value?
