"""Built-in scenario presets (TOML files); see `bench.scenario` for their schema."""
