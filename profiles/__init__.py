"""Measured costs of real diffusion architectures (profilers, profile files, model zoo).

Not built yet: the harness's cost model (`bench.costs.CostModel`, a per-task x per-server compute-time
table plus link rates, with an action mask) is the place where profiles will plug in.
"""
