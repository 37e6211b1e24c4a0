"""Scenarios: the typed description of a benchmark setting (`schema.py`) and the shipped presets (`presets/*.toml`).

    from bench.scenarios import load_scenario
    scenario = load_scenario("paper", ["servers.capacity_scale=1.2"])
"""

from bench.scenarios.schema import (
    EpisodeConfig,
    ProtocolConfig,
    Scenario,
    ServersConfig,
    load_scenario,
    preset_names,
    scenario_fields,
    scenario_from_dict,
)
from tasks.config import LegacySeeds, TaskClass, TasksConfig  # the [tasks] table: defined with the streams it configures

__all__ = [
    "Scenario", "ServersConfig", "EpisodeConfig", "TasksConfig", "TaskClass", "LegacySeeds", "ProtocolConfig",
    "load_scenario", "preset_names", "scenario_from_dict", "scenario_fields",
]
