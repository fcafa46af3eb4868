"""The frozen-others env: a Gymnasium env in which one agent acts and every other agent plays a fixed joint policy.

Agent i is paid its own *true* reward, so any single-agent algorithm trained on this env learns a best response of i
to the others' policy. The best-response solver and the regret evaluator use it; so can users. What the env returns
is checked each step (:class:`~sb3_neppo.envs.checks.StepChecker`): a misbehaving env is one line naming the agent
and the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_neppo.envs.checks import StepChecker, where
from sb3_neppo.envs.masks import masks_of
from sb3_neppo.envs.view import AgentView
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import Memory


class JointActor(Protocol):
    """Anything that acts for a dict of observations, e.g. :class:`sb3_neppo.policy.PolicyProfile`.

    ``act_batch(list of observation dicts, deterministic, list of generators)`` must equal ``act`` on each entry; it
    lets :class:`FrozenOthersVecEnv` move the frozen agents of all copies in one forward pass.
    """

    def act(
        self,
        observations: dict,
        deterministic: bool,
        rng: np.random.Generator | None = None,
        memory=None,
        row: int = 0,
        masks: dict | None = None,
    ) -> dict: ...

    def act_batch(
        self, batch: list[dict], deterministic: bool, rng: list[np.random.Generator], memory=None, rows=None, masks=None
    ) -> list[dict]: ...


class FrozenOthersEnv(gym.Env):
    """``agent`` acts; every other agent plays ``others`` (frozen: this env never trains it) and is paid nothing here.

    :param env: the PettingZoo parallel env (this env owns it from now on).
    :param agent: the learning agent.
    :param others: the joint policy the other agents play (only its actions for the others are used).
    :param deterministic: the others play their most likely action (True) or sample it (False, the default: a
        stochastic policy *is* its distribution). Samples come from this env's ``np_random``, so ``reset(seed=...)``
        makes episodes reproducible.
    :param view: present ``agent``'s observations and actions as a shared policy sees them (padding, agent indicator),
        so a best response can start from the shared policy's weights. None: the agent's own spaces, except that an
        observation space other than a Box (Discrete, Dict, ...) is flattened as SB3's preprocessing would
        (:class:`~sb3_neppo.envs.observations.FlatObservation`), so any SB3 ``MlpPolicy`` reads it.

    Recurrent frozen policies keep their hidden states in :attr:`memory` under :attr:`row` (forgotten at each reset);
    :class:`FrozenOthersVecEnv` gives its copies one memory, a row each. Where the env gives action masks
    (:mod:`sb3_neppo.envs.masks`), the frozen agents act within theirs and :meth:`action_masks` is the learning
    agent's, for sb3-contrib's MaskablePPO.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        env: ParallelEnv,
        agent: str,
        others: JointActor,
        deterministic: bool = False,
        view: AgentView | None = None,
    ):
        self.checker = StepChecker(env)  # one line for a misbehaving env, naming the agent and the step
        if agent not in env.possible_agents:
            raise ConfigError(f"agent '{agent}' is not in this env; its agents are: {', '.join(env.possible_agents)}")
        self.env = env
        self.agent = agent
        self.others = others
        self.deterministic = bool(deterministic)
        self.view = view
        own = env.observation_space(agent)
        self._flat = None if view is not None or isinstance(own, spaces.Box) else self.checker.flat[agent]
        if view is not None:
            self.observation_space = view.observation_space
        elif self._flat is not None:
            self.observation_space = spaces.Box(self._flat.low, self._flat.high, dtype=np.float32)
        else:
            self.observation_space = own
        self.action_space = view.action_space if view is not None else env.action_space(agent)
        self._obs: dict[str, Any] = {}
        self._masks: dict[str, np.ndarray] = {}  # this step's action masks of the agents that have one
        self._others_actions: dict | None = None  # set by FrozenOthersVecEnv: this step's actions, computed in a batch
        self._t = 0  # steps since the last reset
        self.memory, self.row = Memory(), 0

    def _observe(self, obs) -> np.ndarray:
        if self.view is not None:
            return self.view.observe(self.agent, obs)
        if self._flat is not None:
            return np.zeros(self._flat.size, np.float32) if obs is None else self._flat(obs)
        return np.zeros(self.observation_space.shape, self.observation_space.dtype) if obs is None else obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._obs, infos = self.env.reset(seed=seed, options=options)
        self._masks = masks_of(self._obs, infos)
        self._t = 0
        self.memory.forget([self.row])
        if self.agent not in self._obs:
            raise ConfigError(f"the env returned no observation for {self.agent} {where(0)}, so {self.agent} cannot act")
        self.checker.observations(self._obs, 0)
        return self._observe(self._obs[self.agent]), dict(infos.get(self.agent, {}))

    def action_masks(self) -> np.ndarray:
        """The learning agent's action mask (bool, over its actions as the view gives them; all allowed: no mask)."""
        mask = self._masks.get(self.agent)
        if self.view is not None:
            return self.view.joint_mask(self.agent, mask)
        return np.ones(self.action_space.n, bool) if mask is None else mask

    def others_masks(self) -> dict:
        """The frozen agents' action masks (their own actions), where the env gives them."""
        return {a: m for a, m in self._masks.items() if a != self.agent}

    def others_observations(self) -> dict:
        """The current observations of the frozen agents still in the episode."""
        return {a: o for a, o in self._obs.items() if a != self.agent and a in self.env.agents}

    def step(self, action):
        if self._others_actions is not None:
            joint, self._others_actions = self._others_actions, None
        else:
            others = self.others_observations()
            joint = (
                self.others.act(others, self.deterministic, self.np_random, self.memory, self.row, self.others_masks())
                if others
                else {}
            )
        joint[self.agent] = self.view.env_action(self.agent, action) if self.view is not None else action
        acting = [a for a in joint if a in self.env.agents]
        obs, rewards, terminations, truncations, infos = self.env.step(joint)
        self._masks = masks_of(obs, infos)
        self._t += 1
        self.checker.observations(obs, self._t)
        reward = float(self.checker.rewards(rewards, acting, self._t)[self.checker.index[self.agent]])
        self._obs = obs
        terminated = bool(terminations.get(self.agent, False))
        truncated = bool(truncations.get(self.agent, False)) or (not terminated and self.agent not in self.env.agents)
        info = dict(infos.get(self.agent, {}))
        return self._observe(obs.get(self.agent)), reward, terminated, truncated, info

    def close(self) -> None:
        self.env.close()


class FrozenOthersVecEnv(DummyVecEnv):
    """A ``DummyVecEnv`` of :class:`FrozenOthersEnv` copies whose frozen agents act in one forward pass per step.

    Same numbers as stepping the copies one by one (each copy's frozen agents still draw from that copy's
    ``np_random``); only faster, because one batched forward replaces one per copy.
    """

    def __init__(self, env_fns: list[Callable[[], FrozenOthersEnv]]):
        super().__init__(env_fns)
        if not all(isinstance(env, FrozenOthersEnv) for env in self.envs):
            raise TypeError("FrozenOthersVecEnv needs FrozenOthersEnv copies (unwrapped)")
        self.memory = Memory()  # the frozen agents' recurrent states, a row per copy
        for row, env in enumerate(self.envs):
            env.memory, env.row = self.memory, row

    @property
    def others(self) -> JointActor:
        """The joint policy the frozen agents play; assign it to change it in every copy."""
        return self.envs[0].others

    @others.setter
    def others(self, joint: JointActor) -> None:
        for env in self.envs:
            env.others = joint

    def step_wait(self):
        envs: list[FrozenOthersEnv] = self.envs  # type: ignore[assignment]
        batch = [env.others_observations() for env in envs]
        rngs = [env.np_random for env in envs]
        masks = [env.others_masks() for env in envs]
        actions = envs[0].others.act_batch(batch, envs[0].deterministic, rngs, self.memory, range(len(envs)), masks)
        for env, joint in zip(envs, actions):
            env._others_actions = joint
        return super().step_wait()
