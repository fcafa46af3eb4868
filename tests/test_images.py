"""Image observations kept as images for CNN policies (``solver_kwargs.policy: CnnPolicy``): channel-first uint8, the
agent indicator as channels, differing sizes refused; Dict observations kept as Dicts for ``MultiInputPolicy``;
pistonball through ``env_wrapper`` under a memory bound."""

import dataclasses
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv
from pettingzoo.butterfly import pistonball_v6

from sb3_neppo import NePPO
from sb3_neppo.envs.frozen import FrozenOthersEnv
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.envs.wrapping import apply_wrappers
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import PolicyProfile
from sb3_neppo.solvers.sb3 import rollout_evaluator

ROOT = Path(__file__).resolve().parents[1]
PISTON_WRAPPERS = [
    {"supersuit.color_reduction_v0": {"mode": "B"}},
    {"supersuit.resize_v1": {"x_size": 84, "y_size": 84}},
    {"supersuit.frame_stack_v1": {"stack_size": 3}},
]


def pistons(wrappers=PISTON_WRAPPERS, n_pistons=5):
    return apply_wrappers(pistonball_v6.parallel_env(n_pistons=n_pistons, max_cycles=25), wrappers)


class Pictures(ParallelEnv):
    """Two agents seeing uint8 pictures of the given shapes (pixel values: 10 · step + agent index), one step long."""

    metadata = {"name": "pictures_v0"}

    def __init__(self, shapes=((36, 36, 3), (36, 36, 3))):
        self.possible_agents = ["a_0", "a_1"]
        self._spaces = {a: spaces.Box(0, 255, shape, np.uint8) for a, shape in zip(self.possible_agents, shapes)}

    def observation_space(self, agent):
        return self._spaces[agent]

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _observe(self, t):
        return {a: np.full(self._spaces[a].shape, 10 * t + i, np.uint8) for i, a in enumerate(self.agents)}

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        return self._observe(0), {a: {} for a in self.agents}

    def step(self, actions):
        obs = self._observe(1)
        rewards = {a: float(actions[a]) for a in self.agents}
        self.agents = []
        return obs, rewards, {a: True for a in obs}, {a: False for a in obs}, {a: {} for a in obs}


class Cues(ParallelEnv):
    """Two agents see a Dict: a 36×36 ``camera`` image (black or white) and a ``radio`` of 8 values (all 0 or all 1),
    each drawn anew every step; a_0 is paid 1 for matching the camera's colour, a_1 for matching the radio. 4 steps."""

    metadata = {"name": "cues_v0"}

    def __init__(self, radio: int = 8):
        self.possible_agents = ["a_0", "a_1"]
        self.radio = radio
        self.rng = np.random.default_rng(0)

    def observation_space(self, agent):
        camera = spaces.Box(0, 255, (36, 36, 1), np.uint8)
        return spaces.Dict({"camera": camera, "radio": spaces.Box(0.0, 1.0, (self.radio,), np.float32)})

    def action_space(self, agent):
        return spaces.Discrete(2)

    def _observe(self):
        self.cue = self.rng.integers(2, size=2)
        image = np.full((36, 36, 1), 255 * self.cue[0], np.uint8)
        return {a: {"camera": image, "radio": np.full(self.radio, self.cue[1], np.float32)} for a in self.agents}

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        return self._observe(), {a: {} for a in self.agents}

    def step(self, actions):
        rewards = {"a_0": float(actions["a_0"] == self.cue[0]), "a_1": float(actions["a_1"] == self.cue[1])}
        self.t += 1
        agents, obs = list(self.agents), self._observe()
        if self.t >= 4:
            self.agents = []
        return obs, rewards, {a: False for a in agents}, {a: self.t >= 4 for a in agents}, {a: {} for a in agents}


def test_dict_observations_stay_dicts_with_images_channel_first_and_the_indicator_as_a_part():
    view = AgentView(Cues(), dicts=True)
    assert view.observation_space == spaces.Dict(
        {
            "camera": spaces.Box(0, 255, (1, 36, 36), np.uint8),
            "radio": spaces.Box(0.0, 1.0, (8,), np.float32),
            "agent_indicator": spaces.Box(0.0, 1.0, (2,), np.float32),
        }
    )
    venv = ParallelVecEnv(Cues, n_copies=2, view=view)
    venv.seed(3)
    batch = venv.reset()
    cues = [env.cue for env in venv.envs]
    for k in range(4):  # slot c·2 + i: copy c, agent i
        c, i = divmod(k, 2)
        assert (batch["camera"][k] == 255 * cues[c][0]).all() and (batch["radio"][k] == cues[c][1]).all()
        np.testing.assert_array_equal(batch["agent_indicator"][k], np.eye(2)[i])
    with pytest.raises(ConfigError, match="a multi-input policy needs the same Dict keys for every agent"):
        AgentView(Menagerie(), dicts=True)


def test_a_multi_input_policy_reads_the_camera_through_its_cnn_and_learns_the_cue():
    settings = {"policy": "MultiInputPolicy", "n_envs": 4, "eval_episodes": 8, "coop_updates": 4}
    settings["ppo"] = {"n_steps": 16, "batch_size": 64, "n_epochs": 4}
    model = NePPO(Cues(), seed=0, solver_kwargs=settings, n_directions=1).learn(total_timesteps=6_000)
    policy = model.solvers.cooperative.model.policy
    assert type(policy.features_extractor).__name__ == "CombinedExtractor"
    config = dataclasses.replace(model.solvers.config, eval_episodes=64)
    returns = rollout_evaluator(Cues, config, model.result.policy.view).rollouts(model.result.policy, 5).returns().mean(0)
    # a_0's cue is only in the image: 4 matches are 3.94 (discounted), chance 1.97 (SE 0.13 over 64 episodes)
    assert returns[0] > 3.0, returns
    actions, _ = model.predict(Cues().reset(seed=2)[0])
    assert set(actions) == {"a_0", "a_1"}


class Menagerie(Cues):
    """Cues whose a_1 has a Dict with other keys."""

    def observation_space(self, agent):
        space = super().observation_space(agent)
        return space if agent == "a_0" else spaces.Dict({"camera": space["camera"], "other": space["radio"]})


def test_images_stay_channel_first_uint8_with_the_agent_indicator_as_channels():
    env = pistons()
    view = AgentView(env, images=True)
    assert view.observation_space == spaces.Box(0, 255, (3 + 5, 84, 84), np.uint8)  # 3 stacked frames, 5 indicators
    observations, _ = env.reset(seed=0)
    for i, agent in enumerate(env.agents):
        seen = view.observe(agent, observations[agent])
        np.testing.assert_array_equal(seen[:3], observations[agent].transpose(2, 0, 1))  # HWC -> CHW, values kept
        indicator = np.zeros(5, np.uint8)
        indicator[i] = 255  # SuperSuit's agent_indicator_v0 on images: the agent's own channel at the space's high
        np.testing.assert_array_equal(seen[3:].max(axis=(1, 2)), indicator)
        np.testing.assert_array_equal(seen[3:].min(axis=(1, 2)), indicator)
    # one channel, no channel axis (colour reduction alone): a channel axis is added
    single = AgentView(pistons(PISTON_WRAPPERS[:2]), agent_indicator=False, images=True)
    assert single.observation_space.shape == (1, 84, 84)


def test_the_vector_env_and_the_frozen_others_env_show_a_cnn_policy_the_views_images():
    view = AgentView(Pictures(), images=True)
    venv = ParallelVecEnv(Pictures, n_copies=2, view=view)
    batch = venv.reset()
    assert batch.shape == (4, 3 + 2, 36, 36) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[1, :3], np.full((3, 36, 36), 1))  # copy 0, agent a_1: pixels 10·0 + 1
    np.testing.assert_array_equal(batch[1, 3:].max(axis=(1, 2)), [0, 255])
    from stable_baselines3 import PPO

    model = PPO("CnnPolicy", venv, n_steps=4, batch_size=8, n_epochs=1, seed=0)
    model.learn(8)
    frozen = FrozenOthersEnv(Pictures(), "a_0", PolicyProfile.shared(view, model.policy), view=view)
    obs, _ = frozen.reset(seed=0)
    assert obs.shape == (5, 36, 36) and obs.dtype == np.uint8
    np.testing.assert_array_equal(obs, batch[0])
    obs, reward, terminated, *_ = frozen.step(1)
    assert reward == 1.0 and terminated and int(obs[0, 0, 0]) == 10


def test_images_of_differing_sizes_and_observations_that_are_not_images_are_one_line():
    with pytest.raises(ConfigError) as info:
        AgentView(Pictures(((36, 36, 3), (40, 40, 3))), images=True)
    message = str(info.value)
    assert "the agents' images differ in size (a_0: 3×36×36, a_1: 3×40×40 channel-first)" in message
    assert "supersuit.resize_v1" in message and "\n" not in message
    with pytest.raises(ConfigError, match="a CNN policy needs image observations") as info:
        NePPO("mpe2.simple_spread_v3", solver_kwargs={"policy": "CnnPolicy", "n_envs": 2}, seed=0)
    assert "\n" not in str(info.value)


def test_a_cnn_policy_reads_the_images_normalised_as_sb3_does():
    model = NePPO(Pictures(), seed=0, solver_kwargs={"policy": "CnnPolicy", "n_envs": 2, "eval_episodes": 2})
    policy = model.solvers.cooperative.model.policy  # the shared CNN policy
    assert type(policy).__name__ == "ActorCriticCnnPolicy" and policy.normalize_images
    view = model.solvers.cooperative.view
    obs = view.observe("a_1", Pictures().reset()[0]["a_1"])
    import torch
    from stable_baselines3.common.preprocessing import preprocess_obs

    seen = preprocess_obs(torch.as_tensor(obs[None]), policy.observation_space, normalize_images=True)
    np.testing.assert_allclose(seen[0, :3].numpy(), 1 / 255)  # a pixel of value 1, divided by 255
    np.testing.assert_allclose(seen[0, 3:].amax(dim=(1, 2)).numpy(), [0.0, 1.0])  # the indicator reads 0 / 1


PISTON_RUN = """
import pathlib, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from sb3_neppo import evaluate, train
folder, algo, argv = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
if train.main(argv) != 0:
    sys.exit("training failed")
(run,) = (folder / algo).iterdir()
sys.exit(evaluate.main([str(run), "--br-timesteps", "25", "--eval-episodes", "2", "--agents", "piston_4"]))
"""
SETTINGS = {
    "neppo": [
        "solver_kwargs:{policy: CnnPolicy, n_envs: 1, eval_episodes: 2, ppo: {n_steps: 25, batch_size: 125, n_epochs: 1}}"
    ],
    "ippo": ["policy:CnnPolicy", "n_envs:1", "ppo:{n_steps: 25, batch_size: 25, n_epochs: 1}"],
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["neppo", "ippo"])
def test_pistonball_through_env_wrapper_with_a_cnn_policy_trains_and_is_scored_under_4_gb(tmp_path, algo):
    """5 pistons, 25 cycles, color_reduction_v0 B, resize_v1 84×84, frame_stack_v1 3, CnnPolicy: a run and the
    regret evaluator end to end, in one process limited to 4 GB of address space."""
    argv = ["--algo", algo, "--env", "pettingzoo.butterfly.pistonball_v6", "--env-kwargs", "n_pistons:5", "max_cycles:25"]
    argv += [
        "-params",
        "env_wrapper:" + json.dumps(PISTON_WRAPPERS),
        *SETTINGS[algo],
        "-n",
        "1350" if algo == "neppo" else "150",
        "-f",
        str(tmp_path),
    ]
    argv += ["--seed", "0"]
    done = subprocess.run(
        [sys.executable, "-c", PISTON_RUN, str(tmp_path), algo, *argv], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = (tmp_path / algo).iterdir()
    report = json.loads((run / "regret.json").read_text())
    row = report["agents"]["piston_4"]
    assert np.isfinite(row["regret"]) and row["ci"][0] <= row["regret"] <= row["ci"][1] and row["br_env_steps"] > 0
    assert report["settings"]["policy"] == "CnnPolicy"
    # the peak of the process that trained and evaluated: kB on Linux
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 4 * 1024 * 1024
