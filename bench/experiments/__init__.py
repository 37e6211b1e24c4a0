"""Experiments on top of the engine, in four rooms that do not know each other except through `runs`:

- `runs`: the one run path (resolve, train, evaluate, summarise, save), result bundles, replay, paired comparison,
  summaries and statistics, scheduler conformance checks;
- `bounds`: lower bounds and exact optima of the offline problem, and the bound files the site reads;
- `sandbox`: untrusted scheduler code in a confined child process that sees each batch over a channel of arrays;
- `campaigns`: many runs at once: sweeps, the paper reproduction and the regression gate.

The contracts in pyproject.toml keep `runs` free of the other three, and the other three independent."""
