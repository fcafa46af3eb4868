"""The SB3 slots: rollout estimates (common random numbers, Φ recomputed without env steps), solver settings."""

import numpy as np
import pytest
import torch
from mpe2 import simple_tag_v3

from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.envs.games import alpha_game
from sb3_neppo.envs.matrix import alpha_env
from sb3_neppo.errors import ConfigError
from sb3_neppo.hyperparams_files import parse_value
from sb3_neppo.potentials import ConvexCombinationPotential, QuadraticPotential
from sb3_neppo.solvers.sb3 import sb3_solvers

SMALL = {"n_envs": 2, "coop_updates": 1, "br_updates": 1, "eval_episodes": 6, "ppo": {"n_steps": 16, "batch_size": 64}}


def tag():
    return simple_tag_v3.parallel_env(max_cycles=10)


@pytest.fixture(scope="module")
def tag_solvers():
    torch.set_num_threads(1)
    return sb3_solvers(tag, SMALL, seed=0)


def test_rollout_estimates_use_common_random_numbers(tag_solvers):
    potential = ConvexCombinationPotential(4)
    joint = tag_solvers.cooperative.solve(potential, None)
    evaluator = tag_solvers.evaluator
    a = evaluator.estimate(potential, joint, seed=11)
    b = evaluator.estimate(potential, joint, seed=11)
    c = evaluator.estimate(potential, joint, seed=12)
    np.testing.assert_array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns, c.returns)
    assert a.returns.shape == (6, 4) and a.potential.shape == (6,) and a.env_steps == 6 * 10
    # a deviation of agent_0 leaves the others' random numbers alone: with agent_0 deviating to the same policy,
    # every episode is identical
    same = evaluator.estimate(potential, joint.with_agent("agent_0", joint.policies["agent_0"]), seed=11)
    np.testing.assert_array_equal(same.returns, a.returns)


def test_potential_for_another_w_is_recomputed_from_logged_steps(tag_solvers):
    potential = ConvexCombinationPotential(4)
    joint = tag_solvers.cooperative.solve(potential, None)
    evaluator = tag_solvers.evaluator
    logged = evaluator.estimate(potential, joint, seed=3)
    other = ConvexCombinationPotential(4)
    other.set_flat_params(np.array([2.0, -1.0, 0.5, 0.0]))
    steps = evaluator.env_steps
    recomputed = logged.rollouts.potential_returns(other)
    assert evaluator.env_steps == steps  # no new env steps
    np.testing.assert_allclose(recomputed, evaluator.estimate(other, joint, seed=3).potential, rtol=1e-6)
    # and Φ is the discounted sum of the per-step potential: the convex combination of the discounted returns
    weights = np.array(other.describe()["weights"])
    np.testing.assert_allclose(recomputed, logged.returns @ weights, rtol=1e-5)


def test_matrix_game_estimates_are_the_exact_values():
    """On a one-step game with deterministic play the rollout estimates equal the exact expected payoffs."""
    config = {**SMALL, "deterministic": True, "gamma": 1.0}
    solvers = sb3_solvers(lambda: alpha_env(0.4), config, seed=0)
    potential = QuadraticPotential([2, 2])
    joint = solvers.cooperative.solve(potential, None)
    estimate = solvers.evaluator.estimate(potential, joint, seed=0)
    observations = {a: np.ones(1, np.float32) for a in joint.view.agents}
    actions = joint.act(observations, deterministic=True)
    strategies = [np.array([1 - float(actions[a][0]), float(actions[a][0])]) for a in joint.view.agents]
    np.testing.assert_allclose(estimate.returns[0], alpha_game(0.4).expected_payoffs(strategies), rtol=1e-5)
    assert np.all(estimate.returns == estimate.returns[0])  # every episode is the same


def test_bad_solver_settings_are_one_clear_line():
    with pytest.raises(ConfigError, match="unknown solver_kwargs key n_env;"):
        SB3SolverConfig.from_dict({"n_env": 4})
    with pytest.raises(ConfigError, match="br_warm_start must be one of"):
        SB3SolverConfig.from_dict({"br_warm_start": "best"})
    with pytest.raises(ConfigError, match="coop_updates must be an integer >= 1"):
        SB3SolverConfig.from_dict({"coop_updates": 0})
    with pytest.raises(ConfigError, match=r"br_n_envs must be an integer >= 1 or null \(n_envs\), got 0"):
        SB3SolverConfig.from_dict({"br_n_envs": 0})
    with pytest.raises(ConfigError, match="bad PPO argument"):
        sb3_solvers(tag, {"ppo": {"n_stepz": 8}})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ppo": {"learning_rate": "abc"}}, "solver_kwargs.ppo.learning_rate must be a number or a callable, got 'abc'"),
        ({"br_ppo": {"learning_rate": "abc"}}, "bad PPO argument: solver_kwargs.br_ppo.learning_rate must be a number or"),
        ({"ppo": {"batch_size": "x"}}, "bad PPO argument: solver_kwargs.ppo.batch_size must be an integer, got 'x'"),
        ({"ppo": {"n_epochs": 2.5}}, "bad PPO argument: solver_kwargs.ppo.n_epochs must be an integer, got 2.5"),
        ({"ppo": {"n_epochs": 0}}, "bad PPO argument: solver_kwargs.ppo.n_epochs must be >= 1, got 0"),
        ({"ppo": {"n_steps": 0}}, "bad PPO argument: solver_kwargs.ppo.n_steps must be >= 1, got 0"),
        ({"ppo": {"ent_coef": "x"}}, "bad PPO argument: solver_kwargs.ppo.ent_coef must be a number, got 'x'"),
        ({"ppo": {"normalize_advantage": "maybe"}}, "solver_kwargs.ppo.normalize_advantage must be true or false"),
        ({"ppo": {"batch_size": 1}}, "(gamma=0.99, batch_size=1): AssertionError: `batch_size` must be greater than 1"),
        ({"ppo": {"learning_rate": -1}}, "(gamma=0.99, learning_rate=-1): ValueError: Invalid learning rate: -1.0"),
        ({"ppo": {"policy_kwargs": {"net_arch": [-1]}}}, "RuntimeError: Trying to create tensor with negative dimension"),
        ({"gamma": "x"}, "solver_kwargs.gamma must be a number, got 'x'"),
        ({"deterministic": "maybe"}, "solver_kwargs.deterministic must be true or false, got 'maybe'"),
    ],
)
def test_bad_ppo_and_solver_values_are_one_line_naming_the_key(kwargs, message):
    with pytest.raises(ConfigError) as info:
        sb3_solvers(lambda: alpha_env(0.4), {"n_envs": 1, **kwargs})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_bad_ppo_value_on_the_command_line_is_one_line_and_exit_status_2(tmp_path, capsys):
    from sb3_neppo.train import main

    argv = ["--env", "mpe2.simple_tag_v3", "-f", str(tmp_path), "-params", "solver_kwargs:{ppo: {learning_rate: abc}}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == "error: bad PPO argument: solver_kwargs.ppo.learning_rate must be a number or a callable, got 'abc'\n"


def test_a_flow_mapping_without_spaces_gets_a_hint():
    # YAML reads {n_envs:2} as the single key "n_envs:2"
    with pytest.raises(ConfigError, match=r"unknown solver_kwargs key n_envs:2; .* YAML needs a space after each ':'"):
        SB3SolverConfig.from_dict(parse_value("{n_envs:2}"))
