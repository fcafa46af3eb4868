"""Potentials: the paper's three families, the flat parameter view, projection, and a user's own module."""

import numpy as np
import pytest
import torch

from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import (
    ConvexCombinationPotential,
    QuadraticPotential,
    StateMixerPotential,
    build_potential,
    potential_class,
    project_simplex,
)


def _batch(actions, rewards, state_dim=1):
    a = torch.as_tensor(np.asarray(actions, dtype=np.float64))
    r = torch.as_tensor(np.asarray(rewards, dtype=np.float64))
    return torch.ones(a.shape[0], state_dim, dtype=torch.float64), a, r


def test_quadratic_is_the_papers_form_for_2x2():
    phi = QuadraticPotential([2, 2], init=0.75).double()
    assert phi.dim == 2 and phi.get_flat_params().tolist() == [0.75, 0.75]
    phi.set_flat_params(np.array([0.3, 0.9]))
    x, y = 0.1, 0.6  # probabilities of the second actions
    state, actions, rewards = _batch([[[1 - x, x], [1 - y, y]]], [[5.0, -3.0]])
    assert phi(state, actions, rewards).item() == pytest.approx(-((x - 0.3) ** 2) - (y - 0.9) ** 2)


def test_quadratic_projection():
    phi = QuadraticPotential([2, 3])
    assert phi.dim == 3
    assert phi.get_flat_params() == pytest.approx([0.5, 1 / 3, 1 / 3])
    assert phi.project_flat(np.array([1.2, 0.1, 0.2])) == pytest.approx([1.0, 0.1, 0.2])
    assert phi.project_flat(np.array([-0.3, 0.1, 0.2])) == pytest.approx([0.0, 0.1, 0.2])
    q = phi.project_flat(np.array([0.5, 0.9, 0.8]))  # actions 2..3 of player 1 exceed probability 1 together
    full = np.concatenate([[1 - q[1:].sum()], q[1:]])
    assert np.all(full >= 0) and full.sum() == pytest.approx(1.0)
    assert phi.project_flat(q) == pytest.approx(q)  # idempotent


def test_project_simplex_is_the_euclidean_projection():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = rng.normal(size=4) * 2
        p = project_simplex(v)
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0)
        for _ in range(20):  # no random point of the simplex is closer
            other = rng.dirichlet(np.ones(4))
            assert np.linalg.norm(v - p) <= np.linalg.norm(v - other) + 1e-12


def test_convex_combination_zero_init_is_the_average():
    phi = ConvexCombinationPotential(3).double()
    assert phi.get_flat_params().tolist() == [0.0, 0.0, 0.0]
    state, actions, rewards = _batch(np.zeros((2, 3, 1)), [[1.0, 2.0, 6.0], [0.0, 3.0, 0.0]])
    assert phi(state, actions, rewards).tolist() == pytest.approx([3.0, 1.0])
    phi.set_flat_params(np.log([1.0, 1.0, 2.0]))
    assert phi.describe()["weights"] == pytest.approx([0.25, 0.25, 0.5])


def test_state_mixer_zero_init_then_state_dependent():
    phi = StateMixerPotential(2, state_dim=3).double()
    assert phi.dim == 2 * 3 + 2 and np.all(phi.get_flat_params() == 0)
    state = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    rewards = torch.tensor([[1.0, 3.0], [1.0, 3.0]], dtype=torch.float64)
    assert phi(state, torch.zeros(2, 2, 1), rewards).tolist() == pytest.approx([2.0, 2.0])
    w = np.zeros(8)
    w[0] = np.log(3.0)  # W[0, 0]: state 0 favours agent 0 three to one
    phi.set_flat_params(w)
    assert phi(state, torch.zeros(2, 2, 1), rewards).tolist() == pytest.approx([0.75 * 1 + 0.25 * 3, 2.0])
    with pytest.raises(ConfigError, match="state has 2 values"):
        phi(torch.zeros(1, 2), torch.zeros(1, 2, 1), torch.zeros(1, 2))


def test_flat_view_round_trip_and_shape_check():
    phi = StateMixerPotential(3, state_dim=4)
    w = np.arange(phi.dim, dtype=float) / 10
    phi.set_flat_params(w)
    assert phi.get_flat_params() == pytest.approx(w)
    with pytest.raises(ValueError, match="has 15 parameters"):
        phi.set_flat_params(np.zeros(3))


def test_build_by_name_and_module_path():
    assert isinstance(build_potential("quadratic", n_agents=2, state_dim=1, n_actions=[2, 3]), QuadraticPotential)
    assert isinstance(build_potential("state_mixer", n_agents=2, state_dim=5), StateMixerPotential)
    assert potential_class("sb3_neppo.potentials:ConvexCombinationPotential") is ConvexCombinationPotential
    with pytest.raises(ConfigError, match="unknown potential 'cubic'"):
        potential_class("cubic")
    with pytest.raises(ConfigError, match="not a subclass"):
        potential_class("numpy:ndarray")
    with pytest.raises(ConfigError, match="init of the quadratic potential must be probabilities"):
        QuadraticPotential([2, 2], init=[0.5, 1.5])


WORLD_COMM = ["leadadversary_0", "adversary_0", "adversary_1", "adversary_2", "agent_0", "agent_1"]


def test_convex_combination_tied_within_a_role_has_one_weight_per_role():
    phi = build_potential("convex", n_agents=6, state_dim=1, agents=WORLD_COMM, tie="role").double()
    assert phi.dim == 3 and phi.describe()["weights"] == pytest.approx([1 / 6] * 6)  # zero logits: the average
    phi.set_flat_params(np.log([2.0, 1.0, 3.0]))  # leader, adversaries, good agents
    weights = np.array([2.0, 1, 1, 1, 3, 3]) / 11
    assert phi.describe()["weights"] == pytest.approx(weights.tolist())
    rewards = np.arange(6.0)[None]
    state, actions, rewards_t = _batch(np.zeros((1, 6, 1)), rewards)
    assert phi(state, actions, rewards_t).item() == pytest.approx(float(weights @ rewards[0]))
    # rebuilt from its config with the same w: the same φ (what NePPO.load does)
    again = ConvexCombinationPotential(**phi.get_config()).double()
    again.set_flat_params(phi.get_flat_params())
    assert again(state, actions, rewards_t).item() == pytest.approx(phi(state, actions, rewards_t).item())


def test_the_regret_direction_raises_the_roles_whose_players_gain_most():
    """outer_step regret_weights: per role, the largest F_i of its agents less the mean over roles."""
    phi = build_potential("convex", n_agents=6, state_dim=1, agents=WORLD_COMM, tie="role")
    F = np.array([0.5, 1.0, 4.0, -2.0, 9.0, 3.0])  # leader 0.5; adversaries' worst 4; good agents' worst 9
    assert phi.regret_direction(F).tolist() == pytest.approx([0.5 - 4.5, 4.0 - 4.5, 9.0 - 4.5])
    untied = build_potential("convex", n_agents=3, state_dim=1)
    assert untied.regret_direction(np.array([1.0, 2.0, 6.0])).tolist() == pytest.approx([-2.0, -1.0, 3.0])


def test_convex_combination_starts_from_given_weights_and_checks_them():
    phi = build_potential("convex", n_agents=6, state_dim=1, agents=WORLD_COMM, tie="role", weights=[0.1] * 4 + [0.3] * 2)
    assert phi.describe()["weights"] == pytest.approx([0.1] * 4 + [0.3] * 2)
    assert phi.get_config()["weights"] == pytest.approx([0.1] * 4 + [0.3] * 2)
    # a start point puts 0.9 on one role's agents together
    lifted = ConvexCombinationPotential(6, WORLD_COMM, "role")
    lifted.set_flat_params(lifted.start_points(3, np.random.default_rng(0))[1])
    assert sum(lifted.describe()["weights"][1:4]) == pytest.approx(0.9, abs=1e-6)
    with pytest.raises(ConfigError, match="equal within a tied group \\(adversary_0, adversary_1, adversary_2\\)"):
        ConvexCombinationPotential(6, WORLD_COMM, "role", weights=[0.1, 0.2, 0.1, 0.1, 0.25, 0.25])
    with pytest.raises(ConfigError, match="6 positive numbers summing to 1"):
        ConvexCombinationPotential(6, weights=[0.5, 0.5])
    with pytest.raises(ConfigError, match="tie must be one of agent, role, all, got 'team'"):
        ConvexCombinationPotential(6, WORLD_COMM, "team")
    with pytest.raises(ConfigError, match="tie: role needs the agents' names"):
        ConvexCombinationPotential(6, tie="role")


def test_state_mixer_tied_within_a_role():
    phi = build_potential("state_mixer", n_agents=6, state_dim=4, agents=WORLD_COMM, tie="role").double()
    assert phi.dim == 3 * (4 + 1)  # one output per role instead of per agent
    w = np.zeros(phi.dim)
    w[4 * 2] = np.log(4.0)  # W[good agents, state 0]
    phi.set_flat_params(w)
    state = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], dtype=torch.float64)
    weights = phi.weights(state).detach().numpy()
    assert weights[0] == pytest.approx(np.array([1, 1, 1, 1, 4, 4]) / 12)  # state 0: good agents weighted 4 to 1
    assert weights[1] == pytest.approx(np.full(6, 1 / 6))
    rewards = torch.arange(6.0, dtype=torch.float64).expand(2, 6)
    assert phi.forward_encoded(phi.encode_state(state), None, rewards).detach().numpy() == pytest.approx(
        (weights * np.arange(6)).sum(1)
    )


def test_a_tie_that_leaves_nothing_to_tune_warns():
    with pytest.warns(UserWarning, match="puts all 3 agents in one role \\(agent\\): the weights stay uniform"):
        phi = ConvexCombinationPotential(3, ["agent_0", "agent_1", "agent_2"], "role")
    assert phi.dim == 1 and phi.describe()["weights"] == pytest.approx([1 / 3] * 3)
