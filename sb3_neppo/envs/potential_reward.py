"""The potential-reward wrapper: a PettingZoo parallel env whose every agent is paid φ_w(s, a, r).

s, a and r are what :class:`~sb3_neppo.envs.encoding.StepEncoder` makes of each step (the env's state or the
observations concatenated; one-hot or flat actions; the reward vector), and every step is checked
(:class:`~sb3_neppo.envs.checks.StepChecker`). Each agent's true reward stays available for evaluation:
``infos[agent]`` gets ``true_reward``, and the per-step record ``true_rewards`` (vector over ``possible_agents``),
``state`` (s_t, the state the action was taken in) and ``potential`` (φ), from which Φ for any other w can be
recomputed without new env steps.
"""

from __future__ import annotations

import numpy as np
from pettingzoo import ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from sb3_neppo.envs.encoding import StepEncoder, potential_values
from sb3_neppo.potentials import Potential


class PotentialRewardWrapper(BaseParallelWrapper):
    """Replace every agent's reward by the shared potential reward φ_w(s, a, r) (see the module docstring).

    :param env: a PettingZoo ``ParallelEnv``.
    :param potential: the potential; the wrapper keeps a reference, so updating w on the module takes effect at once.
    """

    def __init__(self, env: ParallelEnv, potential: Potential):
        self.encoder = StepEncoder(env)
        super().__init__(env)
        self.potential = potential
        self.possible_agents = self.encoder.possible_agents
        self.action_dim = self.encoder.action_dim
        self.state_dim = self.encoder.state_dim
        self._state: np.ndarray | None = None  # s_t: set by reset(), so step() before reset() is caught
        self._t = 0  # steps since the last reset (for the env-fault messages)
        self.encoder.check_potential(potential)

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations, infos = self.env.reset(seed=seed, options=options)
        self.encoder.observations(observations, 0)
        self._state = self.encoder.state(self.env, observations)
        self._t = 0
        return observations, infos

    def step(self, actions: dict):
        if self._state is None:
            raise RuntimeError("step() before reset(): call reset() first")
        state = self._state
        acting = [a for a in self.env.agents if a in actions]
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        self._t += 1
        self.encoder.observations(observations, self._t)
        reward_vector = self.encoder.rewards(rewards, acting, self._t)
        phi = self.potential_reward(state[None], self.encoder.actions(actions)[None], reward_vector[None])[0]
        self._state = self.encoder.state(self.env, observations)
        new_infos = {}
        for agent in rewards:
            info = dict(infos.get(agent, {}))
            info.update(true_reward=float(rewards[agent]), true_rewards=reward_vector, state=state, potential=float(phi))
            new_infos[agent] = info
        return observations, {a: float(phi) for a in rewards}, terminations, truncations, new_infos

    def potential_reward(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """φ_w for a batch of logged steps ``[B, S], [B, N, A], [B, N] -> [B]`` (no env steps)."""
        return potential_values(self.potential, states, actions, rewards)
