"""The results the benchmark scripts store in bench/results/: written one row at a time, read by the chapters.

Runs that take longer than a chapter may (minutes to hours) are made by a script in bench/ and stored as rows of
JSON; a chapter loads them, shows them and checks what its prose says about them. Every row a script writes goes
through `RowFile.append`: atomically (a stopped script never leaves half a file), once (a row already there is
skipped, so a script can be stopped and run again), and stamped with where it came from (`stamp`: the data copy,
the machine, the date and the commit of the code that made it, as airbench keeps its source beside a result).
The seed-to-seed spread of the base configuration is what decides whether a difference between two single runs
is a result: the difference of two runs varies with a standard deviation of sqrt(2) sigma, so a difference smaller
than twice that, 2 sqrt(2) sigma, is called a tie (`Spread.is_tie`).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .runtime import machine_description, machine_kind
from .storage import save_json

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
# What every row says besides its measurements: which experiment and variant, and `stamp`'s provenance.
ROW_SCHEMA = ("group", "name", "data", "machine", "machine_kind", "date", "commit")


def code_commit() -> str:
    """The git commit of this code, with "+dirty" when its work tree has uncommitted changes ("unknown" outside
    a git clone)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no")
                                           else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def stamp(data: str) -> dict[str, str]:
    """Where a row comes from: the data copy (the folder's name, or "cifar10"), the machine, the date, the code."""
    return {"data": os.path.basename(os.path.normpath(data)), "machine": machine_description(),
            "machine_kind": machine_kind(), "date": datetime.date.today().isoformat(), "commit": code_commit()}


class RowFile:
    """One results file (a JSON list of rows), to which a bench script appends rows as they finish."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def rows(self) -> list[dict[str, Any]]:
        return json.loads(self.path.read_text()) if self.path.is_file() else []

    def has(self, group: str, name: str) -> bool:
        """Whether the row is already there, made on this kind of machine (a timing from another kind is not)."""
        return any(row.get("group") == group and row["name"] == name and row.get("machine_kind") == machine_kind()
                   for row in self.rows())

    def append(self, row: dict[str, Any], replace: bool = False) -> None:
        """Add `row`, which must hold every field of `ROW_SCHEMA`, and rewrite the file atomically; with `replace`,
        the rows of the same group and name made on this kind of machine go first."""
        missing = [field for field in ROW_SCHEMA if field not in row]
        if missing:
            raise ValueError(f"a row of {self.path.name} needs {missing} (stamp() gives the provenance)")
        kept = [old for old in self.rows() if not (replace and (old.get("group"), old["name"], old.get(
            "machine_kind")) == (row["group"], row["name"], row["machine_kind"]))]
        save_json(self.path, [*kept, row])

    def record(self, group: str, name: str, make_row: Callable[[], dict[str, Any]], data: str,
               redo: bool = False) -> dict[str, Any] | None:
        """Make the row (`make_row()`), stamp it and append it, unless this machine kind has it already (with `redo`,
        make it again and replace it); print it without its long lists. Returns the new row, or None."""
        if self.has(group, name) and not redo:
            return None
        row = {"group": group, "name": name, **make_row(), **stamp(data)}
        self.append(row, replace=redo)
        print(json.dumps({key: value for key, value in row.items()
                          if not (isinstance(value, list) and len(value) > 10)}), flush=True)
        return row


def rows(name: str, group: str | None = None) -> list[dict[str, Any]]:
    """The rows of bench/results/`name`.json (only those of `group`, when given)."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the chapters read the stored benchmark results from a "
                                f"clone of the repository (bench/README.md says which script makes it)")
    found = json.loads(path.read_text())
    return [row for row in found if group is None or row.get("group") == group]


def by_name(name: str, group: str | None = None) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows(name, group)}


def curve_points(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The long run's trained points among `found` (bench/long_run.py's rows), shortest pre-training first."""
    return sorted((row for row in found if row.get("group") == "curve" and row["epochs"] > 0),
                  key=lambda row: row["epochs"])


def long_run_curve() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The stored long run (bench/long_run.py, group `curve`): its network at random init, then its points."""
    found = rows("long_run", "curve")
    return next(row for row in found if row["epochs"] == 0), curve_points(found)


def provenance(row: dict[str, Any]) -> str:
    """Where a stored number came from: 'data: cifar10-jpeg; machine: AMD EPYC (bf16 units: ...), ...; code: <commit>'
    (rows made before rows were stamped with a commit have none)."""
    commit = f"; code: {row['commit'][:12]}{'+dirty' if row['commit'].endswith('+dirty') else ''}" \
        if "commit" in row else ""
    return f"data: {row['data']}; machine: {row['machine']}{commit}"


@dataclass(frozen=True)
class Spread:
    """How much one metric varies between runs that differ only in their seed."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def describe(self) -> str:
        """'0.5206-0.5356 over 5 seeds (standard deviation 0.0062, 0.0037-0.0178 at 95%)'."""
        low, high = self.std_interval()
        return (f"{self.low:.4f}-{self.high:.4f} over {len(self.values)} seeds (standard deviation "
                f"{self.std:.4f}, {low:.4f}-{high:.4f} at 95%)")

    def tie_threshold(self, runs: int = 1, other_runs: int | None = None) -> float:
        """Twice the standard deviation of the difference of a mean of `runs` runs and a mean of `other_runs`
        (default: as many): 2 sqrt(1 / runs + 1 / other_runs) sigma, 2 sqrt(2) sigma for two single runs."""
        return 2 * math.sqrt(1 / runs + 1 / (other_runs or runs)) * self.std

    def is_tie(self, difference: float, runs: int = 1, other_runs: int | None = None) -> bool:
        """A difference between two single runs (or two means of `runs` and `other_runs` runs) within
        `tie_threshold`."""
        return abs(difference) < self.tie_threshold(runs, other_runs)

    def std_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Where the true standard deviation lies at `confidence`, from the chi-square distribution of the sample
        variance of normal values: a sigma from five seeds is itself uncertain, by a factor of about 0.6 to 2.9."""
        df = len(self.values) - 1
        tail = (1 - confidence) / 2
        return (self.std * math.sqrt(df / chi2_quantile(1 - tail, df)),
                self.std * math.sqrt(df / chi2_quantile(tail, df)))


def chi2_quantile(p: float, df: int) -> float:
    """The `p` quantile of the chi-square distribution with `df` degrees of freedom, by bisection on its CDF (the
    regularised lower incomplete gamma function, from its series): no SciPy needed."""
    def cdf(x: float) -> float:
        s, term, total, n = df / 2, 1.0, 0.0, 0
        while term > 1e-15 * total or n == 0:
            term = math.exp((s + n) * math.log(x / 2) - x / 2 - math.lgamma(s + n + 1))
            total, n = total + term, n + 1
        return total

    low, high = 1e-12, df + 50 * math.sqrt(2 * df) + 50
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
    return (low + high) / 2


def seed_spread(metric: str = "probe_h") -> Spread:
    """`metric` over the base configuration's seeds (bench/pretraining.py, group `seeds`: the `quick` preset at
    1,000 steps, seeds 0-4; the seed also draws the 10,000 training images)."""
    return Spread(tuple(row[metric] for row in rows("pretraining", "seeds")))
