# %% [markdown]
# # 8. What each piece is for, and how to get it wrong
#
# This chapter answers: **when a SimCLR run goes wrong, how do you tell what broke?** It starts with the classic
# mistakes, each measured, as a checklist from the symptom you would see to its cause. Then it trains the two pieces
# the earlier chapters argued about with toy tensors, the projection head and the temperature. An appendix asks
# whether a measure that needs no labels would have picked the good runs.
#
# Every run is the `quick` preset at 1,000 steps with one thing changed, stored by `bench/pretraining.py`, so this
# chapter trains nothing. Each encoder was measured with labels, by chapter 5's probe on $h = f(x)$ and on
# $z = g(h)$, and without: chapter 6's alignment and uniformity, the **covariance spectrum** of the embeddings, and
# their **effective rank** {cite:p}`garrido2023rankme`. The effective rank counts the directions the embeddings
# use: 1 when they all lie on one line, the dimension when every direction carries the same variance. (It is the
# exponential of the entropy of the normalised singular values.) Five seeds of the base configuration are the
# error bar.

# %% tags=["parameters"]
from simclr_core.config import environment_default

DATA = environment_default("data")  # for section 1's random-init baseline
PRECISION = environment_default("precision")  # "auto": bf16 where the CPU has it
DEVICE = "auto"

# %%
import math
import statistics
from itertools import pairwise

import matplotlib.pyplot as plt
from IPython.display import Markdown

from simclr_core.analysis import rank_correlation
from simclr_core.config import make_config
from simclr_core.data import load_split
from simclr_core.plots import line_chart
from simclr_core.probe import probe_encoders, random_encoder, shared_cache
from simclr_core.results import by_name, long_run_curve, provenance, seed_spread
from simclr_core.runtime import pick_device

BATCH = make_config("quick").batch_size  # every run here is the quick preset, changed
runs = by_name("pretraining")
spread = seed_spread()
base = runs["seed 0"]
print(f"the base configuration: probe on h {spread.describe()}")
print(provenance(base))


def group(name: str) -> list[dict]:
    """The rows of one of bench/pretraining.py's groups, in the order they were made."""
    return [row for row in runs.values() if row["group"] == name]


def values(names: list[str], key: str) -> list[float]:
    return [runs[name][key] for name in names]


def summary(numbers: list[float], digits: int = 3) -> str:
    """One run's value, or the mean with the lowest and highest of several."""
    if len(numbers) == 1:
        return f"{numbers[0]:.{digits}f}"
    low, high = min(numbers), max(numbers)
    between = " to " if low < 0 else "-"
    mean = statistics.mean(numbers)
    return f"{mean:.{digits}f} ({low:.{digits}f}{between}{high:.{digits}f})"


def table(header: list[str], lines: list[list[str]], note: str = "") -> Markdown:
    rows_md = ["| " + " | ".join(cells) + " |" for cells in [header, *lines]]
    rows_md.insert(1, "|" + " --- |" * len(header))
    return Markdown("\n".join(rows_md + ["", note]))


def summary_table(label: str, runs_of: dict[str, list[str]],
                  columns: dict[str, tuple[str, int]], note: str) -> Markdown:
    """A row for each named set of runs: how many, then each column's summary
    (columns: name -> (row key, digits))."""
    return table([label, "seeds", *columns],
                 [[name, str(len(names)), *(summary(values(names, key), digits)
                                            for key, digits in columns.values())]
                  for name, names in runs_of.items()], note)


# %% [markdown]
# ## 1. A debugging checklist
#
# Each mistake below is the correct code with one thing changed (`simclr_core.pitfalls`, whose tests prove it
# changes exactly that), trained like every run here and set beside the correct run it changes. Three are the
# classic reports of users of public SimCLR code: the ImageNet stem on 32x32 images
# ([lightly#1419](https://github.com/lightly-ai/lightly/issues/1419)), negatives not gathered across GPUs
# ([Spijkervet/SimCLR#37](https://github.com/Spijkervet/SimCLR/issues/37)) and a "linear" probe whose backbone
# trains ([p3i0t/SimCLR-CIFAR10#8](https://github.com/p3i0t/SimCLR-CIFAR10/issues/8)); three break chapter 2's
# loss; one leaks the test images; one forgets `eval()`. Read the table from the symptom you see:

# %% tags=["nbval-ignore-output"]
CONTROLS = {"train + test images": "20,000 training images",  # as many, none test
            "negatives not gathered, 2 processes": "negatives gathered, 2 processes",
            "minibatch probe, backbone trains": "minibatch probe, backbone frozen"}
pitfalls = {row["name"]: row for row in group("pitfalls")}
controls = tuple(CONTROLS.values())
COLLAPSE = math.log(2 * BATCH - 1)  # every candidate as similar as the positive


def cost(name: str) -> float:
    """The pitfall's probe accuracy minus that of the correct run it changes."""
    return pitfalls[name]["probe_h"] - pitfalls.get(CONTROLS.get(name), base)["probe_h"]


def costs(name: str) -> str:
    return f"{cost(name):+.3f}" + (" (a tie)" if spread.is_tie(cost(name)) else "")


def rank_of_z(name: str) -> str:
    """The run's effective rank of z; "-" for the probe's mistakes (correct weights)."""
    rank = pitfalls[name].get("effective_rank_z")
    return "-" if rank is None else f"{rank:.0f}"


CHECKLIST = [  # symptom, mistake, the row that measures it
    (f"the loss sits at log(2B - 1) = {COLLAPSE:.2f} from the first steps",
     "the positive's index off by one", "positive off by one"),
    ("the first loss is in the hundreds, not near log(2B - 1)",
     "embeddings not normalised", "embeddings not normalised"),
    ("a normal first loss, then a loss that stops falling early (2.2; correct: 0.9)",
     "the self-similarity left in the logits", "self-similarity unmasked"),
    ("steps on 32x32 views cheaper than the correct network's on 16x16, poor features",
     "the ImageNet stem (7x7 stride 2 + max-pool)", "imagenet stem"),
    ("under torchrun, a loss that ends lower than a correct run's",
     "negatives not gathered across processes", "negatives not gathered, 2 processes"),
    ("a probe that changes with the batch its images come in",
     "BatchNorm in training mode at extraction (no eval())",
     "BatchNorm in training mode at extraction"),
    ("a \"linear\" probe far above the frozen one", "the backbone trains in the probe",
     "minibatch probe, backbone trains"),
    ("nothing at all", "the test images in pre-training", "train + test images"),
]
table(["symptom", "cause", "probe on h", "against the correct run", "rank of z"],
      [[symptom, cause, f"{pitfalls[name]['probe_h']:.3f}", costs(name),
        rank_of_z(name)]
       for symptom, cause, name in CHECKLIST],
      f"The correct run (seed 0): probe {base['probe_h']:.3f}, effective rank of z "
      f"{base['effective_rank_z']:.0f}. Controls: "
      + "; ".join(f"{name} {pitfalls[name]['probe_h']:.3f}" for name in controls))

# %% [markdown]
# The three mistakes in the loss show in its curve, before any probe:

# %%
curves = {name: [(10 * i, loss)
                 for i, loss in enumerate(runs[name]["step_loss_every_10"])]
          for name in ("seed 0", "self-similarity unmasked", "positive off by one",
                       "embeddings not normalised")}
line_chart(curves, "step", "training loss (every 10th step)",
           "Training loss of the correct run and of the mistakes in the loss",
           log_y=True,
           levels={f"log(2B - 1) = {COLLAPSE:.2f}: no candidate preferred": COLLAPSE})
plt.show()

# %% tags=["nbval-ignore-output"]
# The yardstick for a collapse: the same network at random init, probed as every row
# here (its features come from the machine's shared cache, filled by chapter 5).
cfg = make_config("quick", data=DATA, device=DEVICE, precision=PRECISION)
device = pick_device(cfg.device)
train, test = (load_split(cfg.data, part, cfg.data_root) for part in ("train", "test"))
random_init = probe_encoders({"random init": random_encoder(cfg, device)}, train, test,
                             cfg, device, progress=False,
                             cache=shared_cache())["random init"].test_accuracy
off_by_one = pitfalls["positive off by one"]
print(f"random init, probe on h: {random_init:.3f}")
print(f"positive off by one: effective rank of z {off_by_one['effective_rank_z']:.2f}, "
      f"held-out top-1 {off_by_one['ssl_top1']:.4f} (chance {1 / (2 * BATCH - 1):.4f})")

# %% [markdown]
# - **The positive off by one collapses.** Every view is told that a view of an unrelated image is its partner, a
#   target it cannot predict. Against an unpredictable target the cross-entropy is smallest when every candidate
#   is equally similar, so the loss settles at $\log(2B - 1)$ and the 256 embeddings become one point: the
#   effective rank of $z$ is near 1, top-1 is chance, and the probe on $h$ falls *below the same network at random
#   init*. 1,000 steps of this loss made the features worse than none.
# - **Unnormalised embeddings** divide dot products, not cosines, by $T = 0.05$: the first logits are huge and the
#   softmax one-hot. The run recovers, and ends 6.8 points low.
# - **The unmasked self-similarity** puts a logit of $1/T = 20$ in every row, the largest, with no gradient: a
#   constant $e^{20}$ in every denominator, which weakens each negative's push. The loss can never fall below
#   $\log 2$ (the positive at best ties the view with itself); here it stopped falling above 2.2, where the correct
#   run reaches 0.9. It starts like a correct run, which tells it from unnormalised embeddings. It costs 2.2 points;
#   its $z$ has an effective rank of 18 against the correct run's 34.
# - **The ImageNet stem** costs 6 points at equal steps. It trained on 32-pixel views, since on 16-pixel ones its
#   stride of 4 leaves layer 3 a single pixel, so the 6 points are the stem and the resolution together. Its steps
#   on views of twice the side were cheaper than the correct run's: about half the seconds (the median of the
#   five seeds' wall clocks, which varied with the machine's load).
# - **Negatives not gathered** score 0.9 points below the gathered control, a tie at this scale, and their loss
#   *looks* better: each process compares its 64 images only among themselves, 126 negatives instead of 254, so
#   its ceiling is $\log 127$. That is how the bug hides.
# - **In the probe**, BatchNorm in training mode normalises each batch by its own statistics, so an image's
#   features depend on its neighbours in the batch: 5.3 points lower on the same weights. A trainable backbone goes
#   the other way, 9 points above the book's frozen probe (21 above the same minibatch probe with the encoder
#   frozen): one epoch of fine-tuning on all the labels, reported as a linear probe.
# - **The test images in pre-training** tie with a control of as many training images. No inflation at 1,000
#   steps; a test set the encoder has trained on is still no longer held out.

# %% tags=["hide-cell"]
# Checks, in the order of the prose and the table.
assert all(abs(loss - COLLAPSE) < 0.01 for loss in off_by_one["step_loss_every_10"][1:])
assert off_by_one["effective_rank_z"] < 2 and abs(off_by_one["uniformity"]) < 0.01
assert off_by_one["alignment"] < 0.001 and off_by_one["ssl_top1"] < 0.005
assert off_by_one["probe_h"] < random_init
unnormalised = pitfalls["embeddings not normalised"]
assert unnormalised["step_loss_every_10"][0] > 100
assert -0.08 < cost("embeddings not normalised") < -0.06
unmasked = pitfalls["self-similarity unmasked"]
assert min(unmasked["step_loss_every_10"]) > 2.2 > 1.0 > min(base["step_loss_every_10"])
assert unmasked["step_loss_every_10"][0] < 10  # starts like a correct run
assert not spread.is_tie(cost("self-similarity unmasked"))
assert unmasked["effective_rank_z"] < base["effective_rank_z"] * 0.6
stem = pitfalls["imagenet stem"]
assert cost("imagenet stem") < -0.05
seed_seconds = [row["train_seconds"] for row in group("seeds")]
assert 1.9 < statistics.median(seed_seconds) / stem["train_seconds"] < 2.1
gathered = "negatives gathered, 2 processes"
local, together = (pitfalls[name]["step_loss_every_10"][-10:] for name in
                   ("negatives not gathered, 2 processes", gathered))
assert statistics.mean(local) < statistics.mean(together)
assert spread.is_tie(cost("negatives not gathered, 2 processes"))
assert spread.is_tie(cost("train + test images"))
frozen, trains = (pitfalls[f"minibatch probe, backbone {how}"]["probe_h"]
                  for how in ("frozen", "trains"))
assert -0.06 < cost("BatchNorm in training mode at extraction") < -0.05
assert trains - frozen > 0.2 and trains > base["probe_h"] + 0.09 > frozen + 0.09

# %% [markdown]
# ## 2. The projection head, trained
#
# Three heads, three seeds each: no head (the loss sees $h$ itself, normalised), one linear layer ($h \to 128$),
# and SimCLR's MLP ($h \to h \to 128$, the book's default). For each, the probe on $h$ (what downstream uses read)
# and on $z$ (what the loss saw), and the effective rank of both. $h$ has 256 dimensions and $z$ 128; with no head
# $z$ is $h$ normalised, 256 dimensions whose spectrum the normalisation changes.

# %% tags=["nbval-ignore-output"]
heads = {"no head": [f"head none seed {s}" for s in range(3)],
         "linear": [f"head linear seed {s}" for s in range(3)],
         "MLP (SimCLR's)": [f"seed {s}" for s in range(3)]}
head_columns = {"probe on h": ("probe_h", 3), "probe on z": ("probe_z", 3),
                "effective rank of h": ("effective_rank_h", 1),
                "effective rank of z": ("effective_rank_z", 1)}
summary_table("head", heads, head_columns,
              "Mean over the seeds (lowest-highest in brackets).")

# %%
def spectrum(name: str, layer: str) -> list[tuple[float, float]]:
    """The stored eigenvalues of one run's h or z, each over the largest."""
    eigenvalues = runs[name][f"spectrum_{layer}"]
    return [(i + 1, value / eigenvalues[0]) for i, value in enumerate(eigenvalues)]


for layer, what in (("z", "z, what the loss saw"),
                    ("h", "h = f(x), what the probe reads")):
    line_chart({head: spectrum(names[0], layer) for head, names in heads.items()},
               "direction (largest variance first)", "eigenvalue / the largest",
               f"Covariance spectrum of {what} (seed 0; the first 64)", log_y=True)
    plt.show()

# %% [markdown]
# **The head takes the collapse.** In the first figure the MLP head's $z$ falls off a cliff at about the 16th
# direction: its effective rank is 34 of 128, its spectrum falls by more than a decade between the 10th and the 20th
# direction on every seed. The three heads' $h$ look alike, a long tail falling about four-fold over the same
# directions. Take the head away and the loss acts on $h$ itself: $h$'s effective rank drops to 60-70, below each
# MLP seed's 76. That fits {cite:t}`jing2022collapse`'s account of dimensional collapse: strong augmentations make
# some directions useless to the loss, and a head lets the collapse happen in $z$, leaving $h$ directions the loss
# does not need but a downstream task may. At this scale those directions do not show in the probe:
#
# **At this scale the head hardly changes the probe.** Means of three seeds vary less than single runs, so their tie
# threshold is smaller, about 1.0 point. No head scores 0.524 on $h$ against the MLP head's 0.530: a tie. The linear
# head's 0.540 beats no head, a fragile result since the seed sigma behind the threshold is itself uncertain
# (chapter 7), and ties with the MLP head. The SimCLR paper found the MLP head worth over 10 points after 100
# epochs of a ResNet-50 on ImageNet ({cite:t}`chen2020simclr`, Figure 8); at 1,000 steps of a narrow ResNet-18 its
# gain over no head is not measurable.
#
# **$h$ beats $z$ only when there is a head to discard.** With the MLP head, $z$ probes 4.3-5.0 points below $h$
# on all five seeds of the base configuration, far beyond the tie threshold; with no head, $z$ is $h$ normalised and
# the two differ by 0.2 points. Chapter 1's brightness test shows one thing the head discards.

# %% tags=["hide-cell"]
# Checks: no head ties with the MLP head on h (means of three: runs=3), the linear head
# beats no head and ties with the MLP head, each of its seeds above each MLP seed;
# without a head h's rank is below every MLP seed's, and with the MLP head z's is under
# half of h's on every seed; the spectra fall as the prose says; h beats z by 4.3-5.0
# points on all five seeds with the MLP head, and by about 0.2 points with none.
no_head, mlp = heads["no head"], heads["MLP (SimCLR's)"]
linear = heads["linear"]
probe_mean = {head: statistics.mean(values(names, "probe_h"))
              for head, names in heads.items()}
assert spread.is_tie(probe_mean["no head"] - probe_mean["MLP (SimCLR's)"], runs=3)
assert not spread.is_tie(probe_mean["linear"] - probe_mean["no head"], runs=3)
assert spread.is_tie(probe_mean["linear"] - probe_mean["MLP (SimCLR's)"], runs=3)
assert round(spread.tie_threshold(runs=3), 3) == 0.010
assert max(values(no_head, "effective_rank_h")) < min(values(mlp, "effective_rank_h"))
for name in mlp:
    assert runs[name]["effective_rank_z"] < runs[name]["effective_rank_h"] / 2
for name in mlp:  # the 10th eigenvalue over the 20th: a decade for z, about 4 for h
    z_spectrum, h_spectrum = runs[name]["spectrum_z"], runs[name]["spectrum_h"]
    assert z_spectrum[9] / z_spectrum[19] > 10
    assert 3 < h_spectrum[9] / h_spectrum[19] < 5
h_over_z = [row["probe_h"] - row["probe_z"] for row in group("seeds")]
assert len(h_over_z) == 5 and 0.043 <= min(h_over_z) and max(h_over_z) <= 0.050
assert min(h_over_z) > spread.tie_threshold()
assert all(abs(runs[n]["probe_h"] - runs[n]["probe_z"]) < 0.003 for n in no_head)

# %% [markdown]
# ## 3. The temperature, trained
#
# Chapter 4 drew what the temperature does to one anchor's gradient: a lower $T$ hands more of the push to the
# hardest negatives. Here the network is trained at five temperatures, from 0.05 (the `quick` preset's) to 1.0;
# the table counts each one's seeds.

# %% tags=["nbval-ignore-output"]
temperatures = {0.05: [row["name"] for row in group("seeds")]}
for row in group("temperatures"):
    temperatures.setdefault(row["overrides"]["temperature"], []).append(row["name"])
temperatures = dict(sorted(temperatures.items()))
temperature_columns = {"probe on h": ("probe_h", 3), "probe on z": ("probe_z", 3),
                       "alignment": ("alignment", 3), "uniformity": ("uniformity", 2),
                       "effective rank of h": ("effective_rank_h", 1),
                       "effective rank of z": ("effective_rank_z", 1),
                       "held-out top-1": ("ssl_top1", 3)}
summary_table("T", {f"{t:g}": names for t, names in temperatures.items()},
              temperature_columns,
              "T = 0.05 is the book's (chapter 7's five seeds). Mean (lowest-highest).")

# %%
line_chart({layer: [(t, statistics.mean(values(names, f"probe_{layer}")))
                    for t, names in temperatures.items()] for layer in ("h", "z")},
           "temperature T", "linear probe accuracy (mean over seeds)",
           "Probe accuracy against the temperature (1,000 steps)", log_x=True)
plt.show()

# %% [markdown]
# Against 0.05, 0.1 is a tie (1.0 point lower, within the threshold for a mean of two seeds against a mean of five),
# and the higher temperatures cost beyond the spread: 2.2 points at 0.2, 5.7 at 0.5 and 8.8 at 1.0. (0.1 and 0.2 also
# tie with each other; from 0.2 up each step costs.) The effective rank of $h$ falls with it, from 76 to 25, and so
# does held-out top-1, from 0.68 to 0.20. At $T = 1$ the logits lie between $-1$ and $1$, the softmax barely tells the
# hardest negatives from the rest, and nothing pushes the embeddings apart: a likely reason, not tested here.
#
# Alignment and uniformity do not order the temperatures: between the five seeds at 0.05 they vary as much as
# across all five temperatures (chapter 6 calls them diagnostics, not scores). Chapter 4's *uniformity-tolerance
# dilemma* predicts a best temperature in the middle; this sweep's best is at its low end, so where the curve turns
# down was not measured (exercise 3). The reference preset's $T = 0.2$ would cost the book's short run about two
# points.

# %% tags=["hide-cell"]
# Checks: 0.1 ties with 0.05 and every higher temperature loses more than the threshold
# for its seed counts; 0.1 and 0.2 tie, and from 0.2 up each step costs; the effective
# rank of h and top-1 fall from 0.1 up; alignment and uniformity are not monotonic in T,
# and the five seeds at 0.05 span most of their range; top-1 falls from above 0.65 to
# about 0.2.
by_t = {t: {key: statistics.mean(values(names, key)) for key in
            ("probe_h", "effective_rank_h", "alignment", "uniformity", "ssl_top1")}
        for t, names in temperatures.items()}
order = list(by_t)
assert len(order) == 5 and order[0] == 0.05 and order[-1] == 1.0
seeds_at = {t: len(names) for t, names in temperatures.items()}
for key in ("effective_rank_h", "ssl_top1"):  # no seed spread for these: orders only
    assert all(by_t[a][key] > by_t[b][key] for a, b in pairwise(order[1:]))
for a, b in pairwise(order[2:]):  # from 0.2 up each step costs beyond the spread
    assert not spread.is_tie(by_t[a]["probe_h"] - by_t[b]["probe_h"], seeds_at[a],
                             seeds_at[b])
assert spread.is_tie(by_t[0.1]["probe_h"] - by_t[0.2]["probe_h"], 2, 2)
assert spread.is_tie(by_t[0.1]["probe_h"] - by_t[0.05]["probe_h"], seeds_at[0.1], 5)
for t, loss in zip(order[2:], (0.022, 0.057, 0.088), strict=True):  # the prose's points
    assert not spread.is_tie(by_t[t]["probe_h"] - by_t[0.05]["probe_h"], seeds_at[t], 5)
    assert abs(by_t[0.05]["probe_h"] - by_t[t]["probe_h"] - loss) < 0.001
for key in ("alignment", "uniformity"):
    means = [by_t[t][key] for t in order]
    assert means not in (sorted(means), sorted(means, reverse=True))
    at_base = values(temperatures[0.05], key)
    seeds_range = max(at_base) - min(at_base)
    assert seeds_range > 0.8 * (max(means) - min(means))
assert by_t[0.05]["ssl_top1"] > 0.65 and 0.15 < by_t[1.0]["ssl_top1"] < 0.25

# %% [markdown]
# ## Appendix: choosing without labels
#
# Every run above was judged with labels. Someone tuning SimCLR on unlabelled images has none: would a measure of
# the embeddings alone have picked the runs the probe picks? RankMe {cite:p}`garrido2023rankme` says the effective
# rank does, for runs of one method. Spearman's rank correlation with the probe asks only about the order, on three
# sets of runs: the temperature sweep (one knob: RankMe's own use), every run of correct code (the sweep, the
# heads, chapter 1's augmentations and the pitfalls' controls), and those with the mistakes added.

# %% tags=["nbval-ignore-output"]
LABEL_FREE = {"effective rank of h": "effective_rank_h",
              "effective rank of z": "effective_rank_z",
              "uniformity of z (lower: more uniform)": "uniformity",
              "alignment of z (lower: views closer)": "alignment"}
trained = [row for row in runs.values() if "effective_rank_h" in row]  # no probes
correct_code = [row for row in trained if row["name"] in controls
                or row["group"] in ("seeds", "heads", "temperatures", "augmentations")]
mistakes = [row for row in trained
            if row["group"] == "pitfalls" and row["name"] not in controls]
sweep = [row for row in trained if row["group"] in ("seeds", "temperatures")]
run_sets = {"temperatures": sweep, "correct code": correct_code,
            "with the mistakes": correct_code + mistakes}


def correlation(runs_set: list[dict], key: str) -> float:
    return rank_correlation([row[key] for row in runs_set],
                            [row["probe_h"] for row in runs_set])


correlations = {name: {label: correlation(run_set, key)
                        for label, run_set in run_sets.items()}
                for name, key in LABEL_FREE.items()}
table(["measure", *(f"{label} ({len(run_set)} runs)"
                    for label, run_set in run_sets.items())],
      [[name, *(f"{value:+.2f}" for value in by_set.values())]
       for name, by_set in correlations.items()],
      "Spearman's rank correlation with the probe on h: +1 if the measure orders the "
      "runs as the probe does, -1 if exactly the other way round.")

# %% [markdown]
# The effective rank of $h$ orders the temperature sweep almost as the probe does (+0.85), every run of correct
# code less well (+0.55), and the runs with mistakes poorly (+0.28). Three runs are most of why:
#
# - **the ImageNet stem** has the highest rank of $h$ of all, 120, and one of the lowest probes: another network,
#   and RankMe only compares runs of one method;
# - **the positive off by one** collapsed in $z$ (rank 1.25), while its $h$ keeps a rank of 85, above the correct
#   run's 76, in directions of no use (its probe is below random init's);
# - **colour only**, chapter 1's recipe whose task is solved almost perfectly, has a rank of 79 and the lowest
#   probe of the correct runs: another recipe sets another task, and the rank does not compare tasks.
#
# Without those three the rank of $h$ orders the other 25 runs at +0.70. Alignment and uniformity are weak guides
# (no correlation beyond ±0.5; alignment's sign changes between the sets). A label-free recipe that held here:
# rule out a collapse with $z$'s effective rank (near 1) or a loss stuck at $\log(2B - 1)$, then compare runs that
# differ in one hyper-parameter by the effective rank of $h$. Across architectures, recipes or possibly wrong code,
# it is no substitute for a few labels.

# %% tags=["hide-cell"]
# Checks: the effective rank of h orders the temperature sweep (above +0.8), the
# correct runs less well (+0.45 to +0.65) and the runs with mistakes worse (under
# +0.4); z's rank orders none of the correct runs; alignment and uniformity order no
# set, and alignment's sign changes; the three runs named fool the rank of h, and
# without them it orders the rest above +0.65.
rank_h = correlations["effective rank of h"]
rank_z = correlations["effective rank of z"]
assert rank_h["temperatures"] > 0.8 and 0.45 < rank_h["correct code"] < 0.65
assert rank_h["with the mistakes"] < 0.4 and abs(rank_z["correct code"]) < 0.1
for name in list(LABEL_FREE)[2:]:
    assert all(abs(value) <= 0.5 for value in correlations[name].values())
alignment_sign = correlations["alignment of z (lower: views closer)"]
assert alignment_sign["temperatures"] > 0 > alignment_sign["correct code"]
colour_only = runs["colour only"]
assert colour_only["probe_h"] == min(row["probe_h"] for row in correct_code)
for fools in (off_by_one, colour_only):
    assert fools["effective_rank_h"] > base["effective_rank_h"]
assert colour_only["step_loss_every_10"][-1] < 0.01 and colour_only["ssl_top1"] > 0.99
fooled = ("imagenet stem", "positive off by one", "colour only")
others = [row for row in run_sets["with the mistakes"] if row["name"] not in fooled]
assert len(others) == 25 and correlation(others, "effective_rank_h") > 0.65

# %% [markdown]
# The easiest case for the rank is one run trained for longer: the book's long run (chapter 5), one recipe, one
# network, its curve's seven points.

# %% tags=["nbval-ignore-output"]
long_curve = long_run_curve()[1]
along = rank_correlation([row["effective_rank_h"] for row in long_curve],
                         [row["probe_test"] for row in long_curve])
for row in long_curve:
    print(f"{row['epochs']:>5g} epochs: effective rank of h "
          f"{row['effective_rank_h']:5.1f}, probe {row['probe_test']:.3f}")
print(f"Spearman's rank correlation: {along:+.2f}")

# %% tags=["hide-cell"]
# Check: along the long run the effective rank of h orders the points as the probe does
# (above +0.9: at most two neighbours swapped, since the probe's last doubling is a
# tie), from 72 to 118 as the probe goes from 0.507 to 0.714.
assert along > 0.9
ends = [(round(row["effective_rank_h"]), round(row["probe_test"], 3))
        for row in (long_curve[0], long_curve[-1])]
assert ends == [(72, 0.507), (118, 0.714)]

# %% [markdown]
# Along one run the rank of $h$ rises with the probe, from 72 to 118 as the probe goes from 0.507 to 0.714: there
# it tracked the probe without a label. (The probe's last doubling is a tie, so only the order of the earlier
# points is a result.)

# %% [markdown]
# **What to take away**
# - Debug from the symptom: a loss stuck at $\log(2B-1)$ is the positive's index, a first loss in the hundreds is
#   unnormalised embeddings, a floor near 2.2 is the self-similarity left in; an effective rank of $z$ near 1 is a
#   collapse; a "linear" probe far above the frozen one has a backbone that trains (section 1).
# - The head takes the dimensional collapse: with the MLP head $z$ uses 34 effective directions and $h$ 76. At
#   1,000 steps the heads move the probe on $h$ by at most 1.6 points, while $h$ beats $z$ by 4-5 (section 2).
# - The temperature: 0.05 and 0.1 tie; 0.2 costs 2.2 points and 1.0 costs 8.8 (section 3).
# - Without labels, the effective rank of $h$ orders runs that differ in one knob, not architectures, recipes or
#   broken code (appendix).
#
# **Exercises**
# 1. *Your own pitfall.* `simclr_core.pitfalls.off_by_one_loss` shifts the positive by one. Write a variant that
#    shifts it by $B$ instead (each view's partner is then itself, masked to $-\infty$). Predict the loss and its
#    gradient on a tiny batch before you compute them (`tests/test_pitfalls.py` shows how to set one up against
#    `nt_xent`). A training run with it stops at once: the engine refuses a loss that is not finite.
# 2. *Where the head's collapse starts.* In section 2, draw the spectra of seeds 1 and 2 as well
#    (`spectrum(names[1], layer)`, for the heads with three seeds). Does the MLP head's $z$ fall off at the same
#    direction on every seed?
# 3. *A temperature below 0.05.* Section 3's best temperatures are its lowest. Add `(0.02, 1)` to the
#    `temperatures` group of `bench/pretraining.py` and run `--group temperatures` (about six minutes a row).
#    Chapter 4's dilemma says the curve turns down somewhere; write down whether you think it does by 0.02, then
#    check, and see whether the effective rank of $h$ turns with it. (At $T = 0.02$ the logits reach $\pm 50$:
#    the run may diverge, which `bench/pretraining.py` records.)
# 4. *Another label-free measure.* lightly's collapse monitor is the standard deviation of the normalised
#    embeddings, about $1/\sqrt{d}$ when healthy and 0 when collapsed. Predict from section 1's effective ranks
#    of $z$ which runs it would flag, then compute it for chapter 3's run (`model(x)` returns the normalised
#    $z$ of a batch of test images) and compare with $1/\sqrt{128}$. (It mostly tracks how far the embeddings'
#    mean is from the origin, so expect it to flag a run collapsed to a point, not one of rank 18-25.)
