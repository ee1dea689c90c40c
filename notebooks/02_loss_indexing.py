# %% [markdown]
# # 2. The loss, indexed: NT-Xent step by step
#
# Chapter 1 made pairs of views. **How does a batch of pairs become one number to minimise, and what does minimising
# it do?**
#
# The number is SimCLR's **NT-Xent** {cite:p}`chen2020simclr`, also called **InfoNCE** {cite:p}`oord2018cpc` or
# the multi-class N-pair loss {cite:p}`sohn2016npair`. $B$ images give $N = 2B$ unit vectors
# $Z = [z^{(1)}; z^{(2)}]$: all first views, then all second views. Each row of $Z$ asks: which of the other $N - 1$
# views is my partner? We build the loss on six points.

# %% tags=["parameters"]
from simclr_core.config import environment_default

# for the last section only: real images, an untrained network
DATA = environment_default("data")
PRECISION = environment_default("precision")  # "auto": bf16 where the CPU has it

# %%
import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from simclr_core.loss import contrastive_metrics, nt_xent, simclr_logits_targets
from simclr_core.plots import similarity_heatmap

torch.set_printoptions(precision=3, sci_mode=False)

# %% [markdown]
# ## Three images, two views each
#
# Points on a circle: each image's view 2 is its view 1 turned a little. Partners close, images far apart.

# %%
B, T = 3, 0.5
angles = torch.tensor([0.0, 2.0, 4.0])  # radians: image k sits at angle 2k
z1 = torch.stack([angles.cos(), angles.sin()], dim=1)
z2 = torch.stack([(angles + 0.3).cos(), (angles + 0.3).sin()], dim=1)
Z = torch.cat([z1, z2])
print("Z = [z1; z2], shape", tuple(Z.shape))
print(Z)

# %% [markdown]
# ## The similarity matrix and its mask
#
# $S = Z Z^\top$ compares every view with every other; red boxes mark the positives. Row $i$'s partner, the other
# view of its image, is row $p(i) = (i + B) \bmod N$: the row's *target*. The diagonal, a view against itself, is a
# trivial answer, masked to $-\infty$. Divided by a temperature $T$, the rows are the logits of a softmax.

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
# Each row's loss is a cross-entropy over the other $N - 1$ views, the partner its target ($s_{ij} = z_i \cdot z_j$):
#
# $$\ell_i = -\log \frac{\exp(s_{i,p(i)}/T)}{\sum_{k \ne i} \exp(s_{ik}/T)}, \qquad
#   L = \frac{1}{N}\sum_i \ell_i .$$
#
# That is `cross_entropy` on the masked logits with targets $p(i)$. A loop over the formula agrees:

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
# Training logs two summaries:
#
# - **p_pos**: the mean probability a row gives its positive; chance is $1/(N-1)$.
# - **top-1**: the share of rows whose positive is the most similar view.

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
# ## What the loss does to the points
#
# Minimising the loss moves each view along its *force*: minus its gradient, kept along the circle by the
# normalisation. Right: row 0's loss split into pieces acting on view 0.

# %%
def on_circle(theta: torch.Tensor) -> torch.Tensor:
    """Unit vectors at the angles theta, one a row."""
    return torch.stack([theta.cos(), theta.sin()], dim=1)


Z_free = Z.clone().requires_grad_()
nt_xent(Z_free[:B], Z_free[B:], temperature=T).backward()
along = torch.stack([-Z[:, 1], Z[:, 0]], dim=1)  # unit tangents, counterclockwise
force = -(Z_free.grad * along).sum(dim=1)  # minus the gradient, along the circle

# row 0's own loss, piece by piece: a pull to its partner, a push from each negative
anchor = 0
weights = F.one_hot(targets, N)[anchor] - probabilities[anchor]  # 1 - p_pos, or -P_0j
pieces = weights[:, None] * Z / T  # row j: the piece due to view j, a 2-D vector
pieces_along = pieces @ along[anchor]

colours = [f"C{i % B}" for i in range(N)]  # one colour an image
ring = on_circle(torch.linspace(0, 2 * math.pi, 200))
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
left.plot(ring[:, 0], ring[:, 1], color="0.85", zorder=0)
arrows = 2 * force[:, None] * along  # drawn twice as long as the force
for i in range(N):
    left.scatter(Z[i, 0], Z[i, 1], color=colours[i], marker="o" if i < B else "s", s=20)
    left.annotate(str(i), (1.18 * Z[i]).tolist(), ha="center", va="center")
left.quiver(Z[:, 0], Z[:, 1], arrows[:, 0], arrows[:, 1], color="black",
            angles="xy", scale_units="xy", scale=1, width=0.005, zorder=3)
left.set(title="force on each view (2x; circles: view 1, squares: view 2)",
         aspect="equal", xlim=(-1.35, 1.35), ylim=(-1.35, 1.35), xticks=[], yticks=[])
others = [j for j in range(N) if j != anchor]
names = [f"from {j} (partner)" if j == targets[anchor] else f"from {j}" for j in others]
bars = right.barh(names + ["sum"], pieces_along[others].tolist() + [pieces_along.sum()],
                  color=["tab:green" if w > 0 else "tab:red" for w in weights[others]]
                  + ["black"])
labels = [f"1 - p_pos = {w:.3f}" if w > 0 else f"P = {-w:.3f}" for w in weights[others]]
right.bar_label(bars, labels=labels + [""], padding=4, fontsize=8)
right.axvline(0, color="0.5", lw=0.8)
right.invert_yaxis()
right.set(title="row 0's pull and pushes on view 0", xlim=(-0.3, 0.3),
          xlabel="force along the circle (+: counterclockwise)")
fig.tight_layout()
plt.show()
print("force on each view:", " ".join(f"{f:+.3f}" for f in force))
print(f"row 0: 1 - p_pos = {weights[targets[anchor]]:.3f}; P of the negatives",
      " ".join(f"{-weights[j]:.3f}" for j in others if j != targets[anchor]))

# %% [markdown]
# Each view 1 is pushed counterclockwise and each view 2 clockwise: toward its partner. The forces sum to zero,
# since turning the whole picture changes no cosine.
#
# Row $i$'s pieces add up to:
#
# $$-\frac{\partial \ell_i}{\partial z_i} = \frac{1}{T}\Big[(1 - P_{i,p(i)})\, z_{p(i)}
#   - \sum_{j \ne i,\, p(i)} P_{ij}\, z_j\Big].$$
#
# The partner pulls with weight $1 - P_{i,p(i)}$, what the row still misses. Each negative pushes with its
# softmax probability, so the hardest negatives push most {cite:p}`wang2021behaviour`. View 0's arrow is not the
# bars' sum: the loss averages all six rows, and view 0 also feels the rows where it is a partner or a negative.
# [Chapter 4](04_temperature_hard_negatives) shows how $T$ shares out the weights.

# %% tags=["hide-cell"]
# Check: row 0's pieces add up to minus the autograd gradient of its own loss; each
# negative's piece has length P_0j / T, the partner's (1 - p_pos) / T; the most similar
# negative pushes hardest.
Z_row = Z.clone().requires_grad_()
row_logits, row_targets = simclr_logits_targets(Z_row[:B], Z_row[B:], temperature=T)
row = slice(anchor, anchor + 1)
F.cross_entropy(row_logits[row], row_targets[row]).backward()
torch.testing.assert_close(pieces.sum(dim=0), -Z_row.grad[anchor])
partner = targets[anchor].item()
negatives = [j for j in others if j != partner]
lengths = pieces.norm(dim=1)
torch.testing.assert_close(lengths[negatives], probabilities[anchor, negatives] / T)
torch.testing.assert_close(lengths[partner], (1 - probabilities[anchor, partner]) / T)
hardest = max(negatives, key=lambda j: S[anchor, j].item())
assert max(negatives, key=lambda j: lengths[j].item()) == hardest

# %% tags=["hide-cell"]
# Check: normalisation removes the radial part of the gradient (here of vectors of
# length 2 before it).
raw = (2 * Z).requires_grad_()
unit = F.normalize(raw, dim=1)
nt_xent(unit[:B], unit[B:], temperature=T).backward()
assert (raw.grad * Z).sum(dim=1).abs().max() < 1e-6
# the total force is every row's pieces added: row i pulls view i's partner and pushes
# its negatives with the same weights as it moves view i; then the mean over rows.
row_weights = F.one_hot(targets, N) - probabilities  # row i: its weights on each view
torch.testing.assert_close((row_weights + row_weights.T) @ Z / (N * T), -Z_free.grad)
# every view 1 moves counterclockwise, every view 2 clockwise: toward its partner
assert (force[:B] > 0).all() and (force[B:] < 0).all()
assert abs(force.sum().item()) < 1e-6  # turning everything changes nothing

# %% [markdown]
# ## Following the forces
#
# Gradient descent on the six angles lets the forces act:

# %%
steps, step_size = 40, 0.5
path, losses, grads = [torch.atan2(Z[:, 1], Z[:, 0])], [], []  # the views as angles
for step in range(steps + 1):
    angle = path[-1].clone().requires_grad_()
    views = on_circle(angle)
    step_loss = nt_xent(views[:B], views[B:], temperature=T)
    step_loss.backward()  # d loss / d angle: minus the force along the circle
    losses.append(step_loss.item())
    grads.append(angle.grad)
    if step < steps:
        path.append((angle - step_size * angle.grad).detach())
path = torch.stack(path)  # (steps + 1, N)
end = on_circle(path[-1])

fig, axes = plt.subplots(1, 3, figsize=(13, 4))
axes[0].plot(ring[:, 0], ring[:, 1], color="0.85", zorder=0)
for i, colour in enumerate(colours):
    marker = "o" if i < B else "s"
    axes[0].plot(path[:, i].cos(), path[:, i].sin(), color=colour, lw=3)
    axes[0].scatter(Z[i, 0], Z[i, 1], c="white", edgecolors=colour, marker=marker)
    axes[0].scatter(end[i, 0], end[i, 1], color=colour, marker=marker, zorder=3)
    axes[1].plot(path[:, i], color=colour, ls="-" if i < B else "--")
axes[0].set(title="the six views (hollow: start)", aspect="equal",
            xlim=(-1.3, 1.3), ylim=(-1.3, 1.3), xticks=[], yticks=[])
axes[1].set(title="angles (dashed: view 2)", xlabel="step", ylabel="angle (radians)")
axes[2].plot(losses)
axes[2].set(title="loss", xlabel="step")
fig.tight_layout()
plt.show()
turn = path[:, B:] - path[:, :B]  # view 2 against view 1 of each image
gaps = torch.atan2(turn.sin(), turn.cos()).abs().max(dim=1).values  # widest, wrapped
ends = (path[-1, :B] % (2 * math.pi)).sort().values  # view 1 of each image, at the end
spacing = torch.cat([ends.diff(), ends[:1] + 2 * math.pi - ends[-1:]])
print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f}; widest partner gap "
      f"{gaps[0]:.3f} -> {gaps[-1]:.3f} rad")
print("spacing of the images at the end:", " ".join(f"{arc:.2f}" for arc in spacing),
      f"rad (2 pi / B = {2 * math.pi / B:.2f})")

# %% [markdown]
# The loss falls from 0.220 to 0.182 and stops: no force is left. The partners meet (*alignment*), and the three
# images end a third of the circle apart (*uniformity*) {cite:p}`wang2020alignment`. Chapter 6 measures both.

# %% tags=["hide-cell"]
# Check: each step moves each angle along its force; the loss never rises and ends
# lower; the partners meet, the images end a third of the circle apart, and no force
# is left.
torch.testing.assert_close(grads[0], -force)
assert all(b <= a + 1e-7 for a, b in zip(losses, losses[1:], strict=False))
assert abs(losses[0] - 0.220) < 5e-4 and abs(losses[-1] - 0.182) < 5e-4
assert gaps[-1] < 1e-3 < gaps[0]
assert (spacing - 2 * math.pi / 3).abs().max() < 1e-3
assert grads[-1].abs().max() < 1e-3
# the end is that arrangement: cosine 1 to the partner, -1/2 to the 4 negatives
assert abs(losses[-1] - math.log(1 + 4 * math.exp((-0.5 - 1) / T))) < 1e-4

# %% [markdown]
# ## What a bad embedding costs
#
# A collapsed encoder maps every view to one vector: every softmax is uniform, and the loss is $\log(N - 1)$ whatever
# $T$. Correct pairs that stand out cost less. Wrong pairs can cost more than collapse: here, pairing each view 1
# with the *previous* image's view 2.

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
# Where does an untrained network stand? Chapter 3's `quick` network, freshly initialised, embeds two views of a
# real batch.

# %% tags=["nbval-ignore-output"]
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
# The untrained network maps every view into a narrow cone. Its loss starts near $\log(N - 1)$, the loss of collapse:
# where chapter 3's curves begin.
#
# **What to take away**
# - NT-Xent is an $(N-1)$-way cross-entropy per view, its targets $B$ places off the masked diagonal:
#   `targets = (arange(N) + B) % N`.
# - Its gradient is a set of forces: partners pull with weight $1 - P_{i,p(i)}$, negatives push with their
#   softmax probability, until partners meet and images spread apart.
# - Next: [chapter 3](03_training) trains an encoder with it.
#
# **Exercises**
# 1. *Views that disagree.* Turn view 2 by 1.1 radians, not 0.3. Predict p_pos and top-1. Which checks rightly fail?
# 2. *Temperature.* Set `T` to 0.1, then 5. Why does collapse still cost $\log(N-1)$? At $T = 5$ top-1 stays 1
#    but p_pos falls to 0.25: what do the weights $1 - p_\text{pos}$ say of the forces?
# 3. *A bigger batch.* Set `B = 8` and `angles = torch.arange(B) * 2 * math.pi / B`. Predict the collapsed loss.
# 4. *Decoupled contrastive learning.* DCL {cite:p}`yeh2022dcl` drops the positive from the denominator: in
#    `naive_nt_xent`, use `if k != i and k != positive`. Why is its loss lower, and what is it at collapse?
