import pytest

from bench.scenarios import load_scenario
from bench.engine.system import System


@pytest.fixture(autouse=True)
def _in_a_scratch_directory(tmp_path_factory, monkeypatch):
    """Every test runs in its own empty directory: `bench run` saves under ./runs/ by default, and nothing a
    test writes may land in the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def paper():
    return load_scenario("paper")


@pytest.fixture(scope="session")
def tiny():
    return load_scenario("tiny")


@pytest.fixture(scope="session")
def paper_system(paper):
    return System.build(paper, 0)


def play(system, scheduler, episode=0, training=False):
    """Run one evaluation episode of `scheduler` (an instance, already reset) on `system`; return its trace."""
    from bench.experiments.runs.runner import run_episode

    env = system.env()
    trace, _ = run_episode(env, scheduler, system.workload(episode, training=training), episode=episode, training=training, who="test")
    return trace
