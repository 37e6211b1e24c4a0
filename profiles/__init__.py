"""Measured costs of real diffusion architectures.

`zoo` (architectures built from configuration, parameter counts), `profiler` (what `bench profile`
measures), `schema` (the versioned profile file), `store` (shipped profiles in `data/` and user
directories). The cost model that schedules on profiles is `bench.engine.profiled_costs`. See docs/profiles.md.
"""
