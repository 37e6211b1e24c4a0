"""Experiments on top of the engine: the runner (train, evaluate), result bundles, replay, paired comparison,
summaries and statistics, sweeps, the regression gate, the paper reproduction and scheduler conformance checks."""
