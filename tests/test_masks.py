"""Action masks the PettingZoo way (an ``action_mask`` in the observation dict or the info dict) with sb3-contrib's
MaskablePPO: respected by the cooperative solver, the best responses, the frozen agents, the evaluator and predict."""

import numpy as np
import pytest
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sb3_neppo import IPPO, NePPO
from sb3_neppo.errors import ConfigError
from sb3_neppo.regret import RegretConfig, RegretEvaluator


class Locks(ParallelEnv):
    """Two agents, three actions; each step one action of each agent is locked (drawn by the env's generator) and
    playing it raises. Reward: the action's number (2 is best when allowed). Masks in the observation dict (PettingZoo's
    classic games' way) or, with ``in_info``, in the info dict."""

    metadata = {"name": "locks_v0"}

    def __init__(self, in_info: bool = False, max_cycles: int = 6):
        self.possible_agents = ["a_0", "a_1"]
        self.in_info, self.max_cycles = in_info, max_cycles
        self.rng = np.random.default_rng(0)
        self.played: list[int] = []

    def observation_space(self, agent):
        inner = spaces.Box(0.0, 1.0, (3,), np.float32)
        return inner if self.in_info else spaces.Dict({"observation": inner, "action_mask": spaces.MultiBinary(3)})

    def action_space(self, agent):
        return spaces.Discrete(3)

    def _step_out(self):
        self.locked = {a: int(self.rng.integers(3)) for a in self.agents}
        obs, infos = {}, {}
        for a in self.agents:
            mask = np.ones(3, np.int8)
            mask[self.locked[a]] = 0
            seen = mask.astype(np.float32)
            obs[a] = seen if self.in_info else {"observation": seen, "action_mask": mask}
            infos[a] = {"action_mask": mask} if self.in_info else {}
        return obs, infos

    def reset(self, seed=None, options=None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        return self._step_out()

    def step(self, actions):
        for a, action in actions.items():
            if int(action) == self.locked[a]:
                raise ValueError(f"{a} played its locked action {action}")
            self.played.append(int(action))
        self.t += 1
        rewards = {a: float(actions[a]) for a in self.agents}
        done = self.t >= self.max_cycles
        obs, infos = self._step_out()
        truncations = {a: done for a in self.agents}
        terminations = {a: False for a in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terminations, truncations, infos


MASKED = {"algo": "MaskablePPO", "n_envs": 4, "eval_episodes": 8, "ppo": {"n_steps": 12, "batch_size": 48, "n_epochs": 4}}


@pytest.mark.parametrize("in_info", [False, True])
def test_maskable_ppo_never_plays_a_locked_action_anywhere_and_learns_the_best_allowed_one(in_info):
    model = NePPO(Locks(in_info), seed=0, solver_kwargs=MASKED, n_directions=1)
    model.learn(total_timesteps=6_000)  # every solve, best response and evaluation episode: the env raises on a lock
    joint = model.result.policy
    evaluator = RegretEvaluator(
        lambda: Locks(in_info), joint.view, model.solvers.config, RegretConfig(br_timesteps=600, eval_episodes=8)
    )
    report = evaluator.evaluate(joint)  # best responses of MaskablePPO against frozen agents acting within their masks
    for row in report.agents:
        # 6 steps of 2 when 2 is open (2/3 of the steps), else 1: 5.33; a random legal policy gets 4
        assert row.base_return > 4.6 and np.isfinite(row.regret)
    env = Locks(in_info)
    observations, infos = env.reset(seed=11)
    masks = {a: i["action_mask"] for a, i in infos.items()} if in_info else None
    for _ in range(6):  # predict: within the observation dict's masks, or those given
        actions, _ = model.predict(observations, deterministic=False, action_masks=masks)
        observations, _, _, _, infos = env.step(actions)
        masks = {a: i["action_mask"] for a, i in infos.items()} if in_info else None


def test_ppo_on_the_same_game_plays_locked_actions_so_the_test_above_can_fail():
    with pytest.raises(ValueError, match="played its locked action"):
        NePPO(Locks(), seed=0, solver_kwargs={**MASKED, "algo": "PPO"}, n_directions=1).learn(total_timesteps=6_000)


def test_ippo_with_maskable_ppo_learners_respects_the_masks():
    model = IPPO(Locks(), seed=0, config={"algo": "MaskablePPO", "n_envs": 4, "ppo": {"n_steps": 12, "batch_size": 48}})
    model.learn(3_000)
    assert min(model.returns.values()) > 4.6


def test_maskable_ppo_on_an_env_without_masks_is_one_line():
    for kwargs in ({"solver_kwargs": {"algo": "MaskablePPO"}}, {"solver_kwargs": {"br_algo": "MaskablePPO"}}):
        with pytest.raises(ConfigError, match="MaskablePPO needs action masks, and this env gives none") as info:
            NePPO("mpe2.simple_spread_v3", seed=0, **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="algo MaskablePPO needs action masks"):
        IPPO("mpe2.simple_spread_v3", seed=0, config={"algo": "MaskablePPO"})
