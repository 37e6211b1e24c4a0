"""The leaderboard: validation of result bundles and a static, offline Plotly site.

Not built yet: result bundles (`bench.results`) already carry what it needs (manifest with file hashes,
per-episode metrics, replayable actions; `bench.replay` recomputes metrics from them).
"""
