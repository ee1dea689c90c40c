"""The results the benchmark scripts stored in bench/results/, read the way the chapters read them.

Runs that take longer than a chapter may (minutes to hours) are made by a script in bench/ and stored as rows of
JSON; a chapter loads them, shows them and checks what its prose says about them. The seed-to-seed spread of the
base configuration is what decides whether a difference between two single runs is a result: a difference
smaller than twice the spread's standard deviation is called a tie.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"


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


def provenance(row: dict[str, Any]) -> str:
    """Where a stored number came from: 'data: cifar10-jpeg; machine: AMD EPYC (bf16 units: ...), ...'."""
    return f"data: {row['data']}; machine: {row['machine']}"


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
        """'0.5206-0.5356 over 5 seeds (standard deviation 0.0063)'."""
        return (f"{self.low:.4f}-{self.high:.4f} over {len(self.values)} seeds (standard deviation "
                f"{self.std:.4f})")

    def is_tie(self, difference: float) -> bool:
        """A difference between two single runs within twice the seed-to-seed standard deviation."""
        return abs(difference) < 2 * self.std


def seed_spread(metric: str = "probe_h") -> Spread:
    """`metric` over the base configuration's seeds (bench/pretraining.py, group `seeds`: the `quick` preset at
    1,000 steps, seeds 0-4; the seed also draws the 10,000 training images)."""
    return Spread(tuple(row[metric] for row in rows("pretraining", "seeds")))
