"""A scenario made concrete for one seed: its servers, cost model, environment and task streams.

Everything random comes from `tasks.Streams(seed)`; building the same (scenario, seed) twice gives the
same servers and the same episodes, whatever scheduler runs on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.engine.costs import CostModel, CycleCosts
from bench.engine.slotted import SlottedEnv
from bench.scenarios import Scenario
from schedulers.interface import EnvInfo
from tasks.streams import Streams
from tasks.workload import IndexTable, Workload, generate_workload, index_table


@dataclass(frozen=True, eq=False)
class System:
    scenario: Scenario
    seed: int
    streams: Streams
    costs: CostModel
    table: IndexTable | None

    @classmethod
    def build(cls, scenario: Scenario, seed: int) -> "System":
        streams = Streams(seed)
        env_rng = streams.environment()
        capacity, rate = scenario.server_parameters(env_rng)
        if scenario.servers.hardware is not None:
            from bench.engine.profiled_costs import ProfiledCosts

            costs: CostModel = ProfiledCosts.from_scenario(scenario.servers, scenario.tasks, rate)
        else:
            costs = CycleCosts(capacity, rate)
        table = index_table(scenario.tasks, env_rng)
        return cls(scenario=scenario, seed=seed, streams=streams, costs=costs, table=table)

    def env(self) -> SlottedEnv:
        return SlottedEnv(self.costs, self.scenario.episode.slot_s)

    def workload(self, episode: int, *, training: bool = False) -> Workload:
        """The tasks of evaluation (or training) episode `episode`: identical for every scheduler."""
        rng = self.streams.training(episode) if training else self.streams.evaluation(episode)
        return generate_workload(self.scenario.tasks, self.scenario.episode.slots, self.scenario.n_servers, rng, self.table,
                                 getattr(self.costs, "class_work", None))

    def info(self) -> EnvInfo:
        return EnvInfo(
            scenario=self.scenario.name,
            n_servers=self.scenario.n_servers,
            n_slots=self.scenario.episode.slots,
            slot_s=self.scenario.episode.slot_s,
            max_arrivals_per_bs=self.scenario.tasks.arrivals_per_bs[1],
            capacity_gcps=self.costs.capacity_gcps,
            rate_mbps=self.costs.rate_mbps,
            has_mask=self.costs.has_mask,
        )
