"""solver_kwargs.share: π^Φ as one network (all), one per role or one per agent, all paid φ_w in one rollout."""

import numpy as np
import pytest
import torch
from mpe2 import simple_spread_v3, simple_world_comm_v3

from sb3_neppo import NePPO
from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.errors import ConfigError
from sb3_neppo.roles import share_groups

SMALL = {"n_envs": 2, "eval_episodes": 2}


def _networks(model: NePPO) -> dict[int, list[str]]:
    """π^Φ's distinct networks and the agents each drives."""
    out: dict[int, list[str]] = {}
    for agent, policy in model.result.policy.policies.items():
        out.setdefault(id(policy), []).append(agent)
    return out


def test_groups_follow_the_roles_of_the_agent_names():
    agents = ["leadadversary_0", "adversary_0", "adversary_1", "adversary_2", "agent_0", "agent_1"]
    assert share_groups(agents, "role") == [[0], [1, 2, 3], [4, 5]]
    assert share_groups(agents, "agent") == [[i] for i in range(6)]
    assert share_groups(agents, "all") == [list(range(6))]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"share": "team"}, "solver_kwargs.share must be one of agent, role, all, got 'team'"),
        ({"share": "role", "algo": "RecurrentPPO"}, "solver_kwargs.share role: networks of their own are trained in lockstep"),
    ],
)
def test_bad_share_is_one_line(settings, message):
    with pytest.raises(ConfigError) as info:
        SB3SolverConfig.from_dict(settings)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
def test_share_role_trains_one_network_per_role_and_saves_them_all(tmp_path):
    model = NePPO(simple_world_comm_v3.parallel_env(), seed=0, solver_kwargs={**SMALL, "share": "role"})
    model.learn(n_iterations=1)
    networks = _networks(model)
    roles = [["adversary_0", "adversary_1", "adversary_2"], ["agent_0", "agent_1"], ["leadadversary_0"]]
    assert sorted(networks.values()) == roles
    # every network was trained (on its own agents' slots): each moved from its initial weights
    cooperative = model.solvers.cooperative
    for agents, initial in zip(cooperative.groups, cooperative.initial_states):
        trained = model.result.policy.policies[agents[0]].state_dict()
        assert any(not torch.equal(trained[k], initial[k]) for k in initial)
    assert np.isfinite(model.summary()["objective"])
    model.save(tmp_path / "swc.zip")
    loaded = NePPO.load(tmp_path / "swc.zip", env=simple_world_comm_v3.parallel_env())
    assert sorted(_networks(loaded).values()) == sorted(networks.values())
    observations, _ = simple_world_comm_v3.parallel_env().reset(seed=3)
    for agent, action in model.predict(observations)[0].items():
        np.testing.assert_array_equal(action, loaded.predict(observations)[0][agent])


@pytest.mark.slow
def test_share_agent_gives_every_agent_its_own_network_and_share_all_one():
    per_agent = NePPO(simple_spread_v3.parallel_env(), seed=0, solver_kwargs={**SMALL, "share": "agent"}).learn(n_iterations=1)
    assert len(_networks(per_agent)) == 3
    shared = NePPO(simple_spread_v3.parallel_env(), seed=0, solver_kwargs=SMALL).learn(n_iterations=1)
    assert len(_networks(shared)) == 1
