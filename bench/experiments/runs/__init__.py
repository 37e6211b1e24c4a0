"""One run of one scheduler and what it leaves: the runner, result bundles, replay, comparison and summaries."""
