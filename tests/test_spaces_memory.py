"""A user's own game on default settings: every observation space SB3 reads, envs without a usable ``state()``, env ids
of one's own (a top-level module, ``module:function``), and memory that stays bounded, and is planned, for large
observations and states (pistonball's 560×880×3 frame)."""

import dataclasses
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper
from stable_baselines3 import PPO

from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.frozen import FrozenOthersEnv
from sb3_neppo.envs.registry import make_env
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.potentials import ConvexCombinationPotential, StateMixerPotential, build_potential
from sb3_neppo.solvers.sb3 import MEMORY_MARGIN, RolloutEvaluator, check_memory, memory_sizes, plan_memory, sb3_solvers

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"n_envs": 2, "coop_updates": 1, "br_updates": 1, "eval_episodes": 3, "ppo": {"n_steps": 8, "batch_size": 16}}
# the mpe2 entry's settings, which any Markov game without an entry of its own gets
MPE2 = {
    "n_envs": 16,
    "coop_updates": 1,
    "br_updates": 1,
    "eval_episodes": 16,
    "ppo": {"n_steps": 25, "batch_size": 400, "n_epochs": 10, "policy_kwargs": {"net_arch": [64]}},
}

# PettingZoo's parallel rock-paper-scissors, as its documentation teaches it ("Environment Creation", parallel_rps.py):
# Discrete(4) observations (the other player's last move; 3 = none yet), `self.state` an attribute holding them
RPS_SOURCE = """
import functools

import gymnasium
from gymnasium.spaces import Discrete

from pettingzoo import ParallelEnv
from pettingzoo.utils import parallel_to_aec, wrappers

ROCK = 0
PAPER = 1
SCISSORS = 2
NONE = 3
MOVES = ["ROCK", "PAPER", "SCISSORS", "None"]
NUM_ITERS = 100
REWARD_MAP = {
    (ROCK, ROCK): (0, 0),
    (ROCK, PAPER): (-1, 1),
    (ROCK, SCISSORS): (1, -1),
    (PAPER, ROCK): (1, -1),
    (PAPER, PAPER): (0, 0),
    (PAPER, SCISSORS): (-1, 1),
    (SCISSORS, ROCK): (-1, 1),
    (SCISSORS, PAPER): (1, -1),
    (SCISSORS, SCISSORS): (0, 0),
}


def env(render_mode=None):
    internal_render_mode = render_mode if render_mode != "ansi" else "human"
    env = raw_env(render_mode=internal_render_mode)
    if render_mode == "ansi":
        env = wrappers.CaptureStdoutWrapper(env)
    env = wrappers.AssertOutOfBoundsWrapper(env)
    env = wrappers.OrderEnforcingWrapper(env)
    return env


def raw_env(render_mode=None):
    env = parallel_env(render_mode=render_mode)
    env = parallel_to_aec(env)
    return env


class parallel_env(ParallelEnv):
    metadata = {"render_modes": ["human"], "name": "rps_v2"}

    def __init__(self, render_mode=None):
        self.possible_agents = ["player_" + str(r) for r in range(2)]
        self.agent_name_mapping = dict(zip(self.possible_agents, list(range(len(self.possible_agents)))))
        self.render_mode = render_mode

    @functools.lru_cache(maxsize=None)
    def observation_space(self, agent):
        return Discrete(4)

    @functools.lru_cache(maxsize=None)
    def action_space(self, agent):
        return Discrete(3)

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("You are calling render method without specifying any render mode.")
            return
        if len(self.agents) == 2:
            string = "Current state: Agent1: {} , Agent2: {}".format(
                MOVES[self.state[self.agents[0]]], MOVES[self.state[self.agents[1]]]
            )
        else:
            string = "Game over"
        print(string)

    def close(self):
        pass

    def reset(self, seed=None, options=None):
        self.agents = self.possible_agents[:]
        self.num_moves = 0
        observations = {agent: NONE for agent in self.agents}
        infos = {agent: {} for agent in self.agents}
        self.state = observations
        return observations, infos

    def step(self, actions):
        if not actions:
            self.agents = []
            return {}, {}, {}, {}, {}
        rewards = {}
        rewards[self.agents[0]], rewards[self.agents[1]] = REWARD_MAP[(actions[self.agents[0]], actions[self.agents[1]])]
        terminations = {agent: False for agent in self.agents}
        self.num_moves += 1
        env_truncation = self.num_moves >= NUM_ITERS
        truncations = {agent: env_truncation for agent in self.agents}
        observations = {self.agents[i]: int(actions[self.agents[1 - i]]) for i in range(len(self.agents))}
        self.state = observations
        infos = {agent: {} for agent in self.agents}
        if env_truncation:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos
"""

GAMES_SOURCE = """
import my_rps


def make_rps(render_mode=None):
    return my_rps.parallel_env(render_mode=render_mode)


def not_an_env():
    return {"player_0": 1}


def aec():
    return my_rps.raw_env()


value = 3
"""


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """``my_rps.py`` (the tutorial) and ``my_games.py`` (factories) in a fresh current directory, as a user has them."""
    (tmp_path / "my_rps.py").write_text(RPS_SOURCE)
    (tmp_path / "my_games.py").write_text(GAMES_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for name in ("my_rps", "my_games"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path
    for name in ("my_rps", "my_games"):
        sys.modules.pop(name, None)


def rps():
    """The tutorial's env, from the module the fixture wrote."""
    return make_env("my_rps")


class Menagerie(ParallelEnv):
    """Six agents, each observing through another kind of space SB3 reads (Discrete actions, each paid its action);
    4 steps. At step t every observation is a function of t, so its flat view is known exactly."""

    metadata = {"name": "menagerie_v0"}
    render_mode = None
    SPACES = {
        "box": spaces.Box(-1.0, 1.0, (2,), np.float32),
        "discrete": spaces.Discrete(4, start=1),
        "multi_discrete": spaces.MultiDiscrete([2, 3]),
        "multi_binary": spaces.MultiBinary(3),
        "dict": spaces.Dict({"pos": spaces.Box(-5.0, 5.0, (2,), np.float32), "mode": spaces.Discrete(3)}),
        "tuple": spaces.Tuple((spaces.Discrete(2), spaces.Box(0.0, 1.0, (1,), np.float32))),
    }

    def __init__(self, bad_at=None):
        self.possible_agents = list(self.SPACES)
        self.agents = []
        self.bad_at = bad_at

    def observation_space(self, agent):
        return self.SPACES[agent]

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _observations(self):
        t = self.t
        obs = {
            "box": np.array([t / 10, -t / 10], np.float32),
            "discrete": 1 + t % 4,
            "multi_discrete": np.array([t % 2, t % 3]),
            "multi_binary": np.array([1, t % 2, 0], np.int8),
            "dict": {"mode": t % 3, "pos": np.array([t, -1.0], np.float32)},
            "tuple": (t % 2, np.array([0.5], np.float32)),
        }
        if t == self.bad_at:
            obs["discrete"] = 9
        return obs

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        rewards = {a: float(actions[a]) for a in self.agents}
        done = self.t >= 4
        obs = self._observations()
        self.agents = [] if done else self.agents
        return obs, rewards, {a: False for a in obs}, {a: done for a in obs}, {a: {} for a in obs}


def flat_at(t: int) -> dict[str, list[float]]:
    """Each Menagerie agent's observation at step t as SB3 preprocesses it: one-hots, flattened, Dict keys sorted."""
    one_hot = lambda i, n: [float(i == k) for k in range(n)]  # noqa: E731
    return {
        "box": [t / 10, -t / 10],
        "discrete": one_hot(t % 4, 4),
        "multi_discrete": one_hot(t % 2, 2) + one_hot(t % 3, 3),
        "multi_binary": [1.0, float(t % 2), 0.0],
        "dict": one_hot(t % 3, 3) + [float(t), -1.0],
        "tuple": one_hot(t % 2, 2) + [0.5],
    }


def test_agents_observing_every_kind_of_space_share_one_policy_view():
    env = Menagerie()
    view = AgentView(env)
    assert view.obs_dim == 5 and view.observation_space.shape == (5 + 6,)
    np.testing.assert_array_equal(view.observation_space.low, [-1, -1, 0, -5, -5] + [0] * 6)
    np.testing.assert_array_equal(view.observation_space.high, [1, 1, 1, 5, 5] + [1] * 6)
    venv = ParallelVecEnv(Menagerie, 2)
    venv.seed(0)
    first = venv.reset()
    obs, rewards, dones, infos = venv.step(np.array([1, 0, 1, 0, 1, 0] * 2))
    for t, batch in ((0, first), (1, obs)):
        for i, agent in enumerate(env.possible_agents):
            expected = np.zeros(11, np.float32)
            expected[: len(flat_at(t)[agent])] = flat_at(t)[agent]
            expected[5 + i] = 1.0  # the agent indicator
            np.testing.assert_allclose(batch[i], expected, rtol=0, atol=1e-7)
            np.testing.assert_allclose(batch[6 + i], expected, rtol=0, atol=1e-7)  # the second copy
    assert [info["true_reward"] for info in infos[:6]] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    # the global state (no state()): every agent's flat observation, concatenated
    encoder = StepEncoder(env)
    observations, _ = env.reset()
    assert not encoder.has_state and encoder.state_dim == 2 + 4 + 5 + 3 + 5 + 3
    np.testing.assert_allclose(encoder.state(env, observations), sum(flat_at(0).values(), []), atol=1e-7)
    # a best response's own env for the Dict agent (no shared view): the flat Box that any SB3 MlpPolicy reads
    frozen = FrozenOthersEnv(Menagerie(), "dict", PolicyProfile.shared(view, frozen_copy(PPO("MlpPolicy", venv).policy)))
    assert frozen.observation_space == spaces.Box(np.array([0, 0, 0, -5, -5]), np.array([1, 1, 1, 5, 5]), dtype=np.float32)
    check_env(frozen, skip_render_check=True)
    np.testing.assert_allclose(frozen.reset(seed=0)[0], flat_at(0)["dict"])


def test_the_sb3_solvers_run_on_every_kind_of_space():
    torch.set_num_threads(1)
    solvers = sb3_solvers(Menagerie, SMALL, seed=0)
    potential = ConvexCombinationPotential(6)
    joint = solvers.cooperative.solve(potential, None)
    best = solvers.best_response.solve("dict", joint, None)
    at_joint, deviations = solvers.evaluator.evaluate(potential, joint, {"dict": best})
    returns_of_actions = {round(sum(a * 0.99**t for t, a in enumerate(bits)), 9) for bits in np.ndindex(2, 2, 2, 2)}
    for estimate in (at_joint, deviations["dict"]):
        assert estimate.returns.shape == (3, 6) and estimate.env_steps == 3 * 4
        assert set(np.round(estimate.returns, 9).ravel()) <= returns_of_actions  # paid its action, 0 or 1, each step
        # Φ of the uniform convex combination is the agents' mean return
        np.testing.assert_allclose(estimate.potential, estimate.returns.mean(axis=1), rtol=1e-6)


def test_an_observation_outside_its_space_is_one_line_naming_the_agent_and_the_step():
    venv = ParallelVecEnv(lambda: Menagerie(bad_at=2), 1)
    venv.seed(0)
    venv.reset()
    venv.step(np.zeros(6, dtype=int))
    with pytest.raises(ConfigError) as info:
        venv.step(np.zeros(6, dtype=int))
    assert str(info.value) == (
        "the env returned an observation for discrete at step 2 after reset that is 9, which is not in "
        "Discrete(4, start=1); an agent's observations must lie in its observation_space('discrete'), Discrete(4, start=1)"
    )


class _Odd(Menagerie):
    def __init__(self, space):
        super().__init__()
        self.odd = space

    def observation_space(self, agent):
        return self.odd if agent == "tuple" else super().observation_space(agent)


@pytest.mark.parametrize(
    "space, kind",
    [
        (spaces.Text(5), "Text"),
        (spaces.Graph(spaces.Box(0.0, 1.0, (2,)), None), "Graph"),
        (spaces.Sequence(spaces.Discrete(2)), "Sequence"),
        (spaces.Dict({"ok": spaces.Discrete(2), "words": spaces.Text(3)}), "Text"),
    ],
)
def test_an_observation_space_sb3_cannot_read_is_one_line(space, kind):
    with pytest.raises(ConfigError) as info:
        ParallelVecEnv(lambda: _Odd(space), 1)
    message = str(info.value)
    assert message.startswith(f"the observation space of tuple is {space}, and {kind} observations are not something an")
    assert "\n" not in message


class Cameras(ParallelEnv):
    """Two agents with 4×5 RGB camera images (uint8), identical spaces."""

    metadata = {"name": "cameras_v0"}
    render_mode = None

    def __init__(self):
        self.possible_agents = ["cam_0", "cam_1"]
        self.agents = []

    def observation_space(self, agent):
        return spaces.Box(0, 255, (4, 5, 3), np.uint8)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        image = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
        return {a: image + i for i, a in enumerate(self.agents)}, {a: {} for a in self.agents}


def test_images_are_flattened_and_scaled_as_sb3_does_even_when_agents_share_their_space():
    obs, _ = Cameras().reset()
    view = AgentView(Cameras(), agent_indicator=False)
    assert view.observation_space == spaces.Box(0.0, 1.0, (60,), np.float32)
    np.testing.assert_allclose(view.observe("cam_1", obs["cam_1"]), (np.arange(60) + 1) / 255, rtol=1e-6)
    assert view.observe("cam_0", None).shape == (60,)


def test_the_tutorials_rock_paper_scissors_runs_through_the_vector_env_and_the_solvers(user_modules):
    env = rps()
    encoder = StepEncoder(env)  # its `state` is a dict attribute: the observations, one-hot and concatenated, instead
    assert not encoder.has_state and encoder.state_dim == 8
    np.testing.assert_array_equal(encoder.state(env, {"player_0": 3, "player_1": 0}), [0, 0, 0, 1, 1, 0, 0, 0])
    wrapped = BaseParallelWrapper(rps())  # a wrapper's state() calls the dict: the same fallback
    assert StepEncoder(wrapped).state_dim == 8
    venv = ParallelVecEnv(rps, 1)
    venv.seed(0)
    obs = venv.reset()
    np.testing.assert_array_equal(obs, [[0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 0, 1]])  # NONE one-hot, then the indicator
    for t in range(100):
        obs, rewards, dones, infos = venv.step(np.array([0, 1]))  # rock against paper
        assert rewards.tolist() == [-1.0, 1.0] and dones.all() == (t == 99)
    assert infos[0]["TimeLimit.truncated"] and infos[0]["episode"]["l"] == 100 and infos[0]["episode"]["r"] == -100
    np.testing.assert_array_equal(infos[0]["terminal_observation"], [0, 1, 0, 0, 1, 0])  # player_0 saw paper
    torch.set_num_threads(1)
    solvers = sb3_solvers(rps, {**SMALL, "eval_episodes": 2}, seed=0)
    potential = StateMixerPotential(2, 8)
    joint = solvers.cooperative.solve(potential, None)
    at_joint, deviations = solvers.evaluator.evaluate(
        potential, joint, {a: solvers.best_response.solve(a, joint, None) for a in joint.view.agents}
    )
    for estimate in (at_joint, *deviations.values()):
        assert estimate.env_steps == 2 * 100
        np.testing.assert_allclose(estimate.returns[:, 0], -estimate.returns[:, 1])  # zero-sum, step by step


class _States(ParallelEnv):
    """A one-agent env whose ``state()`` does ``kind``."""

    metadata = {"name": "states_v0"}
    render_mode = None
    possible_agents = ["solo"]

    def __init__(self, kind):
        self.kind, self.agents = kind, []

    def observation_space(self, agent):
        return spaces.Box(-1.0, 1.0, (2,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents = ["solo"]
        return {"solo": np.array([0.5, -0.5], np.float32)}, {"solo": {}}

    def state(self):
        if self.kind == "raises":
            raise RuntimeError("no global view here")
        return {"text": "a dict, not numbers"} if self.kind == "dict" else np.arange(3.0)


@pytest.mark.parametrize(
    "kind, reason",
    [
        ("raises", "raised RuntimeError: no global view here"),
        ("dict", "returned dict {'text': 'a dict, not numbers'}, not an array of finite numbers"),
    ],
)
def test_a_state_that_raises_or_is_not_numbers_falls_back_to_the_observations_with_one_warning(kind, reason):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder = StepEncoder(_States(kind))
    fallback = "the potential reads the agents' observations, concatenated, as the global state"
    assert [str(w.message) for w in caught] == [f"env.state() {reason}; {fallback}"]
    assert not encoder.has_state and encoder.state_dim == 2
    assert StepEncoder(_States("array")).state_dim == 3


def test_env_ids_of_a_users_own_modules_and_factories(user_modules):
    assert make_env("my_rps").possible_agents == ["player_0", "player_1"]  # a top-level module in the current directory
    env = make_env("my_games:make_rps", {"render_mode": None})  # a factory
    assert type(env).__name__ == "parallel_env" and env.observation_space("player_0") == spaces.Discrete(4)
    assert make_env("matrix", {"payoffs": [[[1, 0], [0, 1]], [[1, 0], [0, 1]]]}).game.n_actions == (2, 2)  # built-in first
    (user_modules / "matrix.py").write_text("def parallel_env():\n    raise RuntimeError('shadowed')\n")
    assert type(make_env("matrix", {"payoffs": [[[1, 0], [0, 1]], [[1, 0], [0, 1]]]})).__name__ == "MatrixGameEnv"
    bad = [
        (
            "my_games",
            "module 'my_games' has no parallel_env() factory; give a PettingZoo parallel env module, or name the "
            "function that builds the env: --env my_games:<function>",
        ),
        (
            "my_games:nope",
            "module 'my_games' has no function 'nope' (env id 'my_games:nope'); it has: aec, make_rps, not_an_env",
        ),
        ("my_games:not_an_env", "'my_games:not_an_env' returned dict, not a PettingZoo ParallelEnv"),
        (
            "my_games:aec",
            "'my_games:aec' returned OrderEnforcingWrapper, not a PettingZoo ParallelEnv (an AEC env: wrap "
            "it with pettingzoo.utils.conversions.aec_to_parallel)",
        ),
        ("my_games:value", "'my_games:value' names 3, not a function that returns a ParallelEnv"),
        ("my_games:make_rps", "env 'my_games:make_rps' takes no argument size; it accepts: render_mode"),
        ("no_such_module_here", "unknown env id 'no_such_module_here': use one of matching-pennies, matrix"),
        ("no_such_module_here:f", "cannot import env module 'no_such_module_here' (No module named 'no_such_module_here')"),
    ]
    for env_id, message in bad:
        with pytest.raises(ConfigError) as info:
            make_env(env_id, {"size": 3} if env_id == "my_games:make_rps" else {})
        assert str(info.value).startswith(message), str(info.value)
        assert "\n" not in str(info.value)


def test_the_command_line_trains_on_a_top_level_module_and_a_model_rebuilds_a_factorys_env(user_modules, capsys):
    from sb3_neppo.neppo import NePPO
    from sb3_neppo.train import main

    settings = {**SMALL, "eval_episodes": 2}
    argv = [
        "--env",
        "my_rps",
        "--seed",
        "0",
        "-f",
        str(user_modules / "logs"),
        "-params",
        "n_iterations:1",
        "solver:sb3",
        "potential:state_mixer",
        f"solver_kwargs:{json.dumps(settings)}",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    (summary,) = (user_modules / "logs").rglob("summary.json")
    assert json.loads(summary.read_text())["env"] == "my_rps"
    model = NePPO("my_games:make_rps", potential="state_mixer", solver="sb3", solver_kwargs=settings, seed=0)
    model.learn(n_iterations=1)
    model.save(user_modules / "model.zip")
    del sys.modules["my_games"]  # a fresh process: a file alone never imports a module
    with pytest.raises(ConfigError, match="names the env module my_games; importing it runs its code, so pass "):
        NePPO.load(user_modules / "model.zip")
    loaded = NePPO.load(user_modules / "model.zip", env="my_games:make_rps")
    assert loaded.env_id == "my_games:make_rps" and loaded.summary()["F"] == model.summary()["F"]


class Frames(ParallelEnv):
    """``n`` walkers on a line whose ``state()`` is a 30×40 RGB frame (3,600 uint8 values) with a bright column at each
    walker's position; observations are small Boxes. 6 steps."""

    metadata = {"name": "frames_v0"}
    render_mode = None
    max_cycles = 6

    def __init__(self, n=2, height=30, width=40):
        self.possible_agents = [f"walker_{i}" for i in range(n)]
        self.agents, self.shape = [], (height, width, 3)

    def observation_space(self, agent):
        return spaces.Box(-100.0, 100.0, (3,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(3)

    def _obs(self):
        return {a: np.array([self.pos[a], self.t, 1.0], np.float32) for a in self.agents}

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        self.pos = {a: 10 + 5 * i for i, a in enumerate(self.agents)}
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        for agent in self.agents:
            self.pos[agent] = int(np.clip(self.pos[agent] + int(actions[agent]) - 1, 0, self.shape[1] - 1))
        rewards = {a: float(self.pos[a]) / 10 for a in self.agents}
        done = self.t >= self.max_cycles
        obs = self._obs()
        self.agents = [] if done else self.agents
        return obs, rewards, {a: False for a in obs}, {a: done for a in obs}, {a: {} for a in obs}

    def state(self):
        frame = np.zeros(self.shape, np.uint8)
        for i, agent in enumerate(self.possible_agents):
            frame[:, self.pos[agent], i % 3] = 200
        return frame


def test_a_large_state_gets_a_small_fixed_encoding_that_save_and_load_rebuild():
    phi = build_potential("state_mixer", n_agents=2, state_dim=3600)
    assert phi.state_features == 32 and phi.dim == 2 * 32 + 2
    assert phi.get_config() == {"n_agents": 2, "state_dim": 3600, "state_features": 32}
    block = StateMixerPotential(2, 3200, state_features=32)  # 32 blocks of 100 consecutive values, averaged
    np.testing.assert_allclose(block.encode_state(torch.arange(3200.0)[None])[0], 100 * np.arange(32) + 49.5)
    assert build_potential("state_mixer", n_agents=2, state_dim=1024).state_features is None  # small states: as they are
    assert build_potential("state_mixer", n_agents=2, state_dim=3600, state_features=None).dim == 2 * 3601
    rng = np.random.default_rng(0)
    phi.set_flat_params(rng.normal(size=phi.dim))
    rebuilt = StateMixerPotential(**phi.get_config())
    rebuilt.load_state_dict(phi.state_dict())
    states, actions, rewards = torch.rand(5, 3600) * 255, torch.zeros(5, 2, 3), torch.rand(5, 2)
    torch.testing.assert_close(rebuilt(states, actions, rewards), phi(states, actions, rewards), rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r"state_features must be an integer in \[1, 3600\) .* got 0"):
        StateMixerPotential(2, 3600, state_features=0)


def test_a_potential_too_large_for_the_zeroth_order_step_is_one_warning_naming_the_option():
    from sb3_neppo.neppo import NePPO

    env = Frames(n=3, height=64, width=64)  # a 12,288-value state
    settings = dict(solver="sb3", solver_kwargs=SMALL, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = NePPO(env, potential="state_mixer", **settings)
    assert model.potential.state_features == 32 and not [w for w in caught if "parameters" in str(w.message)]
    with pytest.warns(UserWarning) as record:
        NePPO(env, potential="state_mixer", potential_kwargs={"state_features": None}, **settings)
    (large,) = [str(w.message) for w in record if "parameters" in str(w.message)]
    assert large == (
        "the potential has 36,867 parameters, more than the 10,000 a zeroth-order step can tune (it estimates the "
        "gradient from a few random directions, so w would hardly move); use potential_kwargs state_features: 32 (a "
        "fixed 32-value encoding of the state)"
    )


def test_the_evaluators_logs_are_float32_preallocated_and_hold_the_state_encoding():
    torch.set_num_threads(1)
    solvers = sb3_solvers(Frames, SMALL, seed=0)
    potential = build_potential("state_mixer", n_agents=2, state_dim=3600)
    joint = solvers.cooperative.solve(potential, None)
    evaluator = solvers.evaluator
    logged = evaluator.estimate(potential, joint, seed=5).rollouts
    assert logged.encoding == ("adaptive_avg_pool1d", 3600, 32)
    assert [s.shape for s in logged.states] == [(6, 32)] * 3 and logged.states[0].dtype == np.float32
    assert logged.actions[0].dtype == np.float32 and logged.rewards[0].dtype == np.float64
    assert all(s.base is logged.states[0].base for s in logged.states)  # views of one preallocated array
    raw = evaluator.rollouts(joint, seed=5)  # no potential: the states themselves, float32
    assert [s.shape for s in raw.states] == [(6, 3600)] * 3 and raw.states[0].dtype == np.float32
    other = build_potential("state_mixer", n_agents=2, state_dim=3600)
    other.set_flat_params(np.random.default_rng(1).normal(size=other.dim))
    # Φ for another w: from the 32 logged features, from the raw states, and from new rollouts, all the same
    np.testing.assert_allclose(logged.potential_returns(other), raw.potential_returns(other), rtol=1e-6)
    np.testing.assert_allclose(logged.potential_returns(other), evaluator.estimate(other, joint, seed=5).potential, rtol=1e-6)
    with pytest.raises(ConfigError, match="logged the state encoded as .* this potential reads the state itself"):
        logged.potential_returns(StateMixerPotential(2, 3600))
    returns_only = evaluator.rollouts(joint, seed=5, log_states=False)  # e.g. for a regret evaluation: no states at all
    assert [s.shape for s in returns_only.states] == [(6, 0)] * 3
    np.testing.assert_array_equal(returns_only.returns(), raw.returns())


def test_a_model_with_an_encoded_state_saves_and_loads_with_the_same_encoding(tmp_path):
    from sb3_neppo.neppo import NePPO

    env_id = f"{__name__}:Frames"  # this module's factory: what a saved model records to rebuild the env
    model = NePPO(env_id, potential="state_mixer", solver="sb3", solver_kwargs=SMALL, seed=0).learn(n_iterations=1)
    assert model.potential.get_config() == {"n_agents": 2, "state_dim": 3600, "state_features": 32}
    model.save(tmp_path / "model.zip")
    loaded = NePPO.load(tmp_path / "model.zip")
    assert loaded.env_id == env_id and loaded.potential.get_config() == model.potential.get_config()
    np.testing.assert_array_equal(loaded.potential.get_flat_params(), model.potential.get_flat_params())
    states, actions, rewards = torch.rand(4, 3600) * 200, torch.zeros(4, 2, 3), torch.rand(4, 2)
    torch.testing.assert_close(loaded.potential(states, actions, rewards), model.potential(states, actions, rewards))


def test_memory_of_a_solve_is_estimated_from_the_settings_and_too_much_is_refused_with_settings_that_fit():
    small = {**SMALL, "ppo": {**SMALL["ppo"], "policy_kwargs": {"net_arch": [64, 64]}}}
    config = SB3SolverConfig.from_dict(small)
    sizes = dataclasses.replace(memory_sizes(Frames, Frames(), config), env_bytes=0)  # an env copy: weighed, not exact
    assert (sizes.n_agents, sizes.obs_width, sizes.state_dim, sizes.logged_state, sizes.episode_length) == (2, 5, 3600, 32, 6)
    plan = plan_memory(sizes, config)
    coop, br = 8 * 2 * 2 * (5 + 1 + 6) * 4, 8 * 2 * (5 + 1 + 6) * 4  # n_steps × slots × (obs, action, 6 numbers) × float32
    assert plan.parts["PPO rollout buffers"][0] == coop + br + coop
    assert plan.parts["evaluator logs"][0] == 3 * 3 * 6 * (32 * 4 + 2 * 3 * 4 + 2 * 8)
    policy = 2 * (5 * 64 + 64 + 64 * 64 + 64) + 64 * 3 + 3 + 64 + 1  # SB3's default [64, 64] actor and critic
    assert plan.parts["networks"][0] == (4 * 2 * policy + 3 * 3 * policy) * 4
    assert check_memory(sizes, config, available=plan.total * 2).total == plan.total
    big = SB3SolverConfig.from_dict({**small, "n_envs": 64, "eval_episodes": 64})
    budget = int(MEMORY_MARGIN * plan.total * 4)
    with pytest.raises(ConfigError) as info:
        check_memory(sizes, big, available=plan.total * 4, bound="MemAvailable")
    message = str(info.value)
    assert message.startswith("a solve needs about ") and "\n" not in message
    assert f"of the {plan.total * 4 / 2**20:.0f} MB available, MemAvailable): env copies and states " in message  # largest
    assert "; PPO rollout buffers " in message and "; networks " in message and "; evaluator logs " in message
    fitting = yaml.safe_load(message.split("settings that would fit: solver_kwargs ")[1])
    assert set(fitting) <= {"n_envs", "eval_episodes", "ppo"} and fitting["n_envs"] < 64
    assert fitting == {"n_envs": 16}  # the largest number of copies that fits
    assert plan_memory(sizes, SB3SolverConfig.from_dict({**small, "eval_episodes": 64, **fitting})).total <= budget


PISTONBALL_UNDER_4_GB = f"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from sb3_neppo.errors import run_command

def run(argv):
    from pettingzoo.butterfly import pistonball_v6
    from sb3_neppo.solvers.sb3 import sb3_solvers
    sb3_solvers(lambda: pistonball_v6.parallel_env(n_pistons=20), {MPE2!r})

try:
    rc = run_command(run, [])
finally:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(rc)
"""


@pytest.mark.slow
def test_pistonball_with_the_mpe2_settings_in_4_gb_is_refused_before_it_allocates():
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PISTONBALL_UNDER_4_GB)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: a solve needs about ") and "(ulimit -v)): PPO rollout buffers" in line
    assert "cooperative 320 slots × 25 steps × 164,540 values" in line  # 20 pistons × 16 copies; 457×120×3 + 20
    estimate = float(line.split("needs about ")[1].split(" GB")[0])
    assert estimate > 4
    assert "settings that would fit: solver_kwargs {n_envs: 1, eval_episodes: 2, ppo: {policy_kwargs: {net_arch: [" in line
    # peak RSS (kB) of the refusal: 0.35 GB alone, 1.1 GB once in a full-suite run; far below the estimate it refuses
    assert int(done.stdout.split()[-1]) < 2 * 1024 * 1024


@pytest.mark.slow
def test_pistonball_on_default_settings_in_4_gb_is_refused_in_one_line_before_anything_is_written(tmp_path):
    """The command line on pistonball's defaults (20 pistons) under a 4 GB address-space limit: one line with the
    estimate and settings that fit, exit status 2, no run folder."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    argv = ["-m", "sb3_neppo.train", "--env", "pettingzoo.butterfly.pistonball_v6", "-n", "100000", "-f", str(tmp_path)]
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=300, preexec_fn=limit)
    assert done.returncode == 2 and not done.stdout, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: a solve needs about ") and "(ulimit -v)): PPO rollout buffers" in line
    assert "cooperative 320 slots × 125 steps × 164,540 values" in line  # 16 copies × 20 pistons, 125-step rollouts
    # one env copy's 20 × 125-step rollouts alone are 1.6 GB, twice while PPO flattens them: nothing fits in 4 GB
    assert line.endswith(
        "make the observations smaller (e.g. SuperSuit's resize_v1 or color_reduction_v0 in env_wrapper) or use a machine "
        "with more memory; or read the images as images: solver_kwargs.policy CnnPolicy"
    )
    assert not (tmp_path / "neppo").exists()


def test_pistonballs_frame_is_logged_as_32_float32_features():
    from pettingzoo.butterfly import pistonball_v6

    def make():
        return pistonball_v6.parallel_env(n_pistons=20, max_cycles=5)

    config = SB3SolverConfig.from_dict({**SMALL, "eval_episodes": 2, "ppo": {"policy_kwargs": {"net_arch": [8]}}})
    evaluator = RolloutEvaluator(make, config)
    view = AgentView(make())
    policy = PPO("MlpPolicy", ParallelVecEnv(make, 1, view), n_steps=2, batch_size=40, policy_kwargs={"net_arch": [8]}).policy
    joint = PolicyProfile.shared(view, frozen_copy(policy))
    potential = build_potential("state_mixer", n_agents=20, state_dim=560 * 880 * 3)
    logged = evaluator.estimate(potential, joint, seed=0).rollouts
    assert sum(s.nbytes for s in logged.states) == 2 * 5 * 32 * 4  # the raw frames, as float64 copies: 118 MB
    raw = evaluator.rollouts(joint, seed=0)
    assert raw.states[0].dtype == np.float32 and sum(s.nbytes for s in raw.states) == 2 * 5 * 1_478_400 * 4


class _NoRenderMode(Menagerie):
    """An env that never sets ``render_mode`` (PettingZoo's ParallelEnv does not define it)."""

    def __getattribute__(self, name):
        if name == "render_mode":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_sb3_warnings_that_would_repeat_on_every_build_are_shown_once_on_one_line():
    torch.set_num_threads(1)
    settings = {**SMALL, "ppo": {"n_steps": 11, "batch_size": 37}}  # neither rollout (132 and 22 samples) divides by 37
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            solvers = sb3_solvers(_NoRenderMode, settings, seed=0)
            joint = solvers.cooperative.solve(ConvexCombinationPotential(6), None)
            for agent in joint.view.agents:
                solvers.best_response.solve(agent, joint, None)
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "render_mode" in m]
    minibatch = [m for m in messages if "mini-batch" in m]
    assert len(minibatch) == 2 and all("\n" not in m for m in minibatch)  # the cooperative PPO's and the best responses'
    assert "`n_steps * n_envs = 132`" in minibatch[0] and "`n_steps * n_envs = 22`" in minibatch[1]


def test_gymnasium_is_the_flattening_reference():
    """The view's flat observation is gymnasium's ``flatten`` (SB3's MLP preprocessing), agent by agent."""
    env = Menagerie()
    view = AgentView(env, agent_indicator=False)
    observations, _ = env.reset()
    for agent, obs in observations.items():
        flat = gymnasium.spaces.utils.flatten(env.observation_space(agent), obs).astype(np.float32)
        np.testing.assert_array_equal(view.observe(agent, obs)[: flat.size], flat)
