"""The site's model: what it knows of one entry and of one scenario's ranked entries. The builder (site.py) fills
it from validated bundles; the pages (pages.py) and charts read it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from leaderboard import charts
from leaderboard.charts import Style
from leaderboard.ranking import Comparison, Over, Rank
from leaderboard.validate import Validation

GREEDY_REFERENCE = "opt-ts"
GREEDY_NOTE = "a greedy full-information rule"


def is_greedy(e) -> bool:
    """Whether the entry is shown as the built-in opt-ts (its note): one of the committed results or one that verify
    re-ran as opt-ts; a submission merely named so is not."""
    return e.scheduler == GREEDY_REFERENCE and bool(e.committed or e.verified)


def is_reference(e) -> bool:
    """Whether the entry may be the "vs opt-ts" reference: the built-in opt-ts from the committed results with a
    passing verify record for every bundle. A submission naming itself opt-ts (manifest or submission.toml) never is:
    it would set every entry's relative delay."""
    return e.scheduler == GREEDY_REFERENCE and e.committed is True and e.verified is True


@dataclass
class Entry:
    """A valid submission and the figures the site shows about it."""

    id: str
    label: str
    validation: Validation
    scenario: str
    scheduler: str
    learns: bool
    over: Over  # what its interval and its comparisons are over
    mean: float
    ci: tuple[float, float] | None
    p95: float
    p99: float
    slowdown: float | None
    slo: float | None
    parts: dict[str, float]
    decision_us: float | None
    cpus: tuple[str, ...]  # CPU models its decision times were measured on
    converged: float | None
    train_episodes: int
    curve: tuple[np.ndarray, np.ndarray] | None
    quantiles: np.ndarray | None
    verified: bool = False  # every bundle has a passing verify record (leaderboard/verify.py): decision time re-measured
    committed: bool = False  # from the committed results (leaderboard/results), not from another results directory
    bound: float | None = None  # lower bound on the mean delay over this entry's own episodes (a bounds file, bench bound)
    best_known: float | None = None  # the best assignment known for the same episodes (bench bound --search): the optimum lies between
    rank: Rank | None = None
    on_front: bool = False
    decision_vs_fastest: float | None = None
    round: str | None = None  # the ranking round whose re-run this entry is ranked on (leaderboard/verify.py)
    ranked: Any = None  # the episodes it is ranked on as a result (ResultSet): a re-run's, or its own protocol episodes
    submitted_mean: float | None = None  # the submitted run's mean delay (its claim), shown beside a re-run's
    measured: bool = False  # a learner ranked on verify's retraining (its records' `measured` episodes), not on its claim
    unranked_why: str | None = None  # why it is shown apart, unranked (no re-run to rank on); None: ranked

    @property
    def result(self):
        """What the ranking compares: the re-run (a round's, or a learner's retraining) where there is one, else the
        submitted bundles."""
        return self.ranked if self.ranked is not None else self.validation.result

    @property
    def gap(self) -> float | None:
        """(mean - lower bound) / lower bound over the same episodes: how far above optimal the entry is at most."""
        return (self.mean - self.bound) / self.bound if self.bound else None



@dataclass
class ScenarioView:
    """One scenario's ranked entries and everything shown about them."""

    name: str
    description: str
    entries: list["Entry"]  # ordered by mean delay; comparison indices refer to this order
    comparisons: list[Comparison]
    independent: bool
    styles: list[Style] = field(default_factory=list)  # each entry's style on every chart of its page (charts.styles)
    round: str | None = None  # the ranking round every ranked entry was re-run in; None: rules on their submitted episodes, learners on verify's retraining
    windows: bool = False  # every seed replays the same trace windows: rules are paired and intervals taken over windows
    stacks: list[Any] = field(default_factory=list)  # profiles.stacks.Stack per (hardware, model): the software behind its costs
    unranked: list["Entry"] = field(default_factory=list)  # valid entries without the re-run they rank on (Entry.unranked_why): shown apart

    def swatch(self, e: "Entry") -> str:
        return self.styles[self.entries.index(e)].swatch() if self.styles else ""

    def style(self, e: "Entry") -> Style:
        if e not in self.entries:  # an unranked entry: the style after the ranked ones'
            return charts.styles(len(self.entries) + 1)[-1]
        return self.styles[self.entries.index(e)] if self.styles else charts.styles(self.entries.index(e) + 1)[-1]

    @property
    def reference(self) -> "Entry | None":
        """The "vs opt-ts" entry (is_reference); None when the build has none (no committed, verified opt-ts)."""
        return next((e for e in self.entries if is_reference(e)), None)

    @property
    def has_bound(self) -> bool:
        return any(e.bound is not None for e in self.entries)

    @property
    def has_slo(self) -> bool:
        return any(e.slo is not None for e in self.entries)

    @property
    def tested(self) -> int:
        return sum(c.error is None for c in self.comparisons)

    @property
    def errors(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.error is not None]
