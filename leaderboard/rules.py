"""The leaderboard's rules: what makes a submission valid, and how entries are ranked (docs/leaderboard.md).

A submission is VALID only if every check passes; each failed check is reported as one line, as MLPerf
LoadGen reports why a run is INVALID:

  schema      every bundle is an aigc-edge-bench/run bundle of the supported schema version
  integrity   every file matches the SHA-256 recorded in its manifest; no listed file is missing
  scenario    the scenario is a leaderboard preset, and its configuration hashes to the preset's hash today
  pooling     bundles pooled into one entry share scheduler, parameters, scenario and protocol; seeds differ
  seeds       at least `min_seeds` distinct seeds
  episodes    at least `min_eval_episodes` evaluation episodes per seed
  training    learning schedulers: at most `max_train_episodes` training episodes per seed
  disclosure  learning schedulers: submission.toml states how the hyper-parameters were chosen
  replay      regenerating each seed's evaluation tasks and re-applying the stored actions reproduces every
              stored metric exactly, and summary.json equals the summary of the episodes

Ranking, per scenario: entries are listed by mean delay; an entry's rank is 1 + the number of entries that
are significantly better than it, where B is significantly better than A when the 95% interval of the
paired difference A - B of mean delay (bench.experiments.compare.paired) lies above zero. Entries that no other entry
beats significantly share rank 1, and so on: ties are shared. Where the data cannot place an entry
precisely, its rank is shown as a range, down to N - the number of entries significantly worse.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScenarioRule:
    min_seeds: int
    min_eval_episodes: int
    max_train_episodes: int


RULES: dict[str, ScenarioRule] = {
    # 3 seeds x 20 episodes: 60 paired episodes per entry (per-episode delay varies by 0.6-1.0 s; paired
    # differences far less); training capped at the paper's 500 episodes
    "paper": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=500),
    "paper-iid": ScenarioRule(min_seeds=3, min_eval_episodes=20, max_train_episodes=500),
    "tiny": ScenarioRule(min_seeds=3, min_eval_episodes=10, max_train_episodes=40),
}

RANKING_RULE = (
    "Rank = 1 + the number of entries significantly better: B is significantly better than A when the 95% "
    "interval of the paired difference A - B in mean delay (same task streams, episode by episode; over "
    "per-seed means when a learner is involved) lies above zero. Entries not separated share a rank. A range "
    "such as 1–8 means the data cannot place the entry more precisely: it runs down to N - the number of "
    "entries significantly worse. Rows are ordered by mean delay."
)
