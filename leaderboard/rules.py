"""The leaderboard's rules: what makes a submission valid, and how entries are ranked (docs/leaderboard.md).

A submission is VALID only if every check passes; each failed check is reported as one line, as MLPerf
LoadGen reports why a run is INVALID:

  schema      every bundle is an aigc-edge-bench/run bundle of the supported schema version
  integrity   every file matches the SHA-256 recorded in its manifest; no listed file is missing
  scenario    the scenario is a leaderboard preset (a live one for live bundles), and its configuration hashes to
              the preset's hash today
  pooling     bundles pooled into one entry share scheduler, parameters, scenario and protocol; seeds differ
  seeds       the protocol's seeds 0..min_seeds-1 (more are shown, not ranked)
  episodes    at least `min_eval_episodes` evaluation episodes per seed (the first min_eval_episodes rank)
  training    learning schedulers: at most `max_train_episodes` training episodes per seed
  disclosure  learning schedulers: submission.toml states how the hyper-parameters were chosen
  replay      regenerating each seed's evaluation tasks and re-applying the stored actions reproduces every
              stored metric exactly, and summary.json equals the summary of the episodes; for a live bundle, its
              metrics recomputed from its recorded timestamps equal the stored ones, and the records are consistent

Ranking, per scenario (leaderboard/ranking.py computes it): entries are listed by mean delay. Every pair of
entries is compared by a two-sided paired t-test of their difference in mean delay on identical task streams:
over paired episodes when neither learns and the scenario's episodes are independent (nothing drawn once per
seed), otherwise over per-seed means (a learner varies with its training seed). The p-values of all pairs of
the scenario are adjusted together by Holm's method (family-wise error 5%). An entry's rank is 1 + the number
of entries significantly better than it; ties are shared, and where the data cannot place an entry precisely
its rank is a range, down to N - the number of entries significantly worse. A pair that cannot be tested (no
paired values, zero variance with a non-zero difference, a non-finite value) is shown as an error with its
reason, never as a tie. There is no composite score: p95, p99, slowdown, SLO attainment and decision time are
shown beside the mean, and the mean/p95 front marks the entries no other entry beats on both.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScenarioRule:
    """A scenario's run rules. Every entry is ranked on exactly the same (seed, episode) set, the protocol's: seeds
    0..min_seeds-1, evaluation episodes 0..min_eval_episodes-1 of each (as MLPerf fixes a scenario's run rules). A
    submission must hold all of them; episodes beyond them are shown, never pooled into its ranking."""

    min_seeds: int
    min_eval_episodes: int
    max_train_episodes: int

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(range(self.min_seeds))

    def ranked(self, episodes, seed: str = "seed"):
        """The rows of an episodes frame (polars) that rank: the protocol's seeds and episodes. A ranking round's rows
        name the public seed each fresh seed stands for in `public_seed`."""
        import polars as pl

        return episodes.filter(pl.col(seed).is_in(list(self.seeds)) & (pl.col("episode") < self.min_eval_episodes))


RULES: dict[str, ScenarioRule] = {
    # 3 seeds x 20 episodes: 60 paired episodes per entry (per-episode delay varies by 0.6-1.0 s; paired
    # differences far less); training capped at the paper's 500 episodes
    "paper": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=500),
    "paper-iid": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=500),
    "tiny": ScenarioRule(min_seeds=3, min_eval_episodes=10, max_train_episodes=40),
    # continuous time: the paper's servers and load under Poisson and bursty arrivals (one episode: 59 s, ~31,000 requests)
    "paper-poisson": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=500),
    "paper-bursty": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=500),
    # a replayed trace: an episode is one of its evaluation windows, the same for every seed; all 13 of them
    "azure-code": ScenarioRule(min_seeds=3, min_eval_episodes=13, max_train_episodes=200),
    # measured (CPU) and published (GPU) costs with memory limits and cold starts
    "edge-cpu": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=200),
    "edge-gpu": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=200),
    # serving decisions beyond a server (docs/serving.md): batching; model and step choice with a cited quality
    "batch-gpu": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=200),
    "cascade-gpu": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=200),
    "cascade-sd15-gpu": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=200),
}

# Live runs (bench live): measured on real model servers, one episode per seed; shown apart from the simulated
# entries and never ranked with them (their timestamps cannot be recomputed like simulated actions: "reported")
LIVE_RULES: dict[str, ScenarioRule] = {
    "live-cpu": ScenarioRule(min_seeds=1, min_eval_episodes=1, max_train_episodes=0),
}

RANKING_RULE = (
    "Ranking by mean delay. Each pair of entries is compared by a two-sided paired t-test of their difference in "
    "mean delay on identical task streams; the p-values of all pairs of a scenario are adjusted together by Holm's "
    "method (family-wise error 5%). Rank = 1 + the number of entries significantly better; entries not separated "
    "share a rank. A range such as 1–8 means the data cannot place the entry more precisely: it runs down to N - "
    "the number of entries significantly worse. A comparison that cannot be computed is shown as an error with its "
    "reason (†), never as a tie. Rows are ordered by mean delay."
)
PAIRING_RULE = (
    "Pairs: two schedulers that do not learn are paired over evaluation episodes (same seed, same episode) when the "
    "scenario's episodes are independent (servers and task tables fixed, as in every leaderboard preset); a pair with "
    "a learner, or on a scenario that draws something per seed, is paired over per-seed means. The 95% interval of "
    "each mean delay is taken over the same units. Every entry is ranked on the same episodes, its scenario's protocol "
    "(seeds 0..n-1, the first k evaluation episodes of each; more are shown on its page, never pooled): "
    + "; ".join(f"{name} {r.min_seeds} seeds x {r.min_eval_episodes} episodes" for name, r in RULES.items())
    + "."
)
TRADE_OFF_RULE = (
    "No composite score: p95 and p99 delay, mean slowdown, SLO attainment and decision time are shown beside the mean, "
    "not folded into it. The mean/p95 front (●) marks the entries that no other entry beats on both the mean and the "
    "p95: an entry that buys its mean with its tail is off the front."
)
