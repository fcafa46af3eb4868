"""The potential-reward wrapper: a PettingZoo parallel env whose every agent is paid φ_w(s, a, r).

The global state s is the env's ``state()`` where it has one (mpe2 and the matrix games do), else the concatenation of
the agents' observations in ``possible_agents`` order, zero-filled for agents no longer present (the MAPPO convention).
Actions enter φ as a ``[N, A]`` array: a Discrete action as a one-hot, a Box action flattened, zero-padded to the widest
agent. Each agent's true reward stays available for evaluation: ``infos[agent]`` gets ``true_reward``, and the
per-step record ``true_rewards`` (vector over ``possible_agents``), ``state`` (s_t, the state the action was taken in)
and ``potential`` (φ), from which Φ for any other w can be recomputed without new env steps.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import AECEnv, ParallelEnv
from pettingzoo.utils.wrappers import BaseParallelWrapper

from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import Potential


def _action_width(space: spaces.Space) -> int:
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.Box):
        return int(np.prod(space.shape))
    raise ConfigError(f"action space {space} is not supported by the potential wrapper; use Discrete or Box actions")


def _action_vector(space: spaces.Space, action, width: int) -> np.ndarray:
    out = np.zeros(width)
    if isinstance(space, spaces.Discrete):
        out[int(action) - int(space.start)] = 1.0
    else:
        flat = np.asarray(action, dtype=np.float64).reshape(-1)
        out[: flat.size] = flat
    return out


class PotentialRewardWrapper(BaseParallelWrapper):
    """Replace every agent's reward by the shared potential reward φ_w(s, a, r) (see the module docstring).

    :param env: a PettingZoo ``ParallelEnv``.
    :param potential: the potential; the wrapper keeps a reference, so updating w on the module takes effect at once.
    """

    def __init__(self, env: ParallelEnv, potential: Potential):
        if isinstance(env, AECEnv) or not isinstance(env, ParallelEnv):
            raise ConfigError(
                f"{type(env).__name__} is not a PettingZoo ParallelEnv; use the module's parallel_env() "
                "(or pettingzoo.utils.conversions.aec_to_parallel)"
            )
        super().__init__(env)
        self.potential = potential
        self.possible_agents = list(env.possible_agents)
        self._index = {a: i for i, a in enumerate(self.possible_agents)}
        self.action_dim = max(_action_width(env.action_space(a)) for a in self.possible_agents)
        obs_dims = [int(np.prod(env.observation_space(a).shape)) for a in self.possible_agents]
        self._obs_offsets = np.cumsum([0, *obs_dims])
        observations, _ = env.reset()  # once, to learn where the global state comes from and its size
        self._has_state = self._env_has_state()
        self.state_dim = int(self._global_state(observations).size)
        self._state: np.ndarray | None = None  # s_t: set by reset(), so step() before reset() is caught
        self._check_potential()

    def _env_has_state(self) -> bool:
        try:
            self.env.state()
            return True
        except (AttributeError, NotImplementedError):
            return False

    def _check_potential(self) -> None:
        n = len(self.possible_agents)
        dtype = next(self.potential.parameters()).dtype
        try:
            with torch.no_grad():
                out = self.potential(
                    torch.zeros(1, self.state_dim, dtype=dtype),
                    torch.zeros(1, n, self.action_dim, dtype=dtype),
                    torch.zeros(1, n, dtype=dtype),
                )
        except ConfigError:
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ConfigError(
                f"the potential does not fit this env (state {self.state_dim}, {n} agents, actions {self.action_dim}): "
                f"{str(exc).splitlines()[0]}"
            ) from None
        if tuple(out.shape) != (1,):
            raise ConfigError(f"the potential must return one value per batch row, got shape {tuple(out.shape)}")

    def _global_state(self, observations: dict) -> np.ndarray:
        if self._has_state:
            return np.asarray(self.env.state(), dtype=np.float64).reshape(-1)
        state = np.zeros(self._obs_offsets[-1])
        for agent, obs in observations.items():
            i = self._index[agent]
            state[self._obs_offsets[i] : self._obs_offsets[i + 1]] = np.asarray(obs, dtype=np.float64).reshape(-1)
        return state

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations, infos = self.env.reset(seed=seed, options=options)
        self._state = self._global_state(observations)
        return observations, infos

    def step(self, actions: dict):
        if self._state is None:
            raise RuntimeError("step() before reset(): call reset() first")
        state = self._state
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        n = len(self.possible_agents)
        reward_vector = np.zeros(n)
        for agent, r in rewards.items():
            if not np.isfinite(r):
                raise ConfigError(f"the env returned a non-finite reward for {agent}: {r}; fix the env or clip its rewards")
            reward_vector[self._index[agent]] = r
        action_matrix = np.zeros((n, self.action_dim))
        for agent, action in actions.items():
            i = self._index[agent]
            action_matrix[i] = _action_vector(self.env.action_space(agent), action, self.action_dim)
        phi = self.potential_reward(state[None], action_matrix[None], reward_vector[None])[0]
        self._state = self._global_state(observations)
        new_infos = {}
        for agent in rewards:
            info = dict(infos.get(agent, {}))
            info.update(true_reward=float(rewards[agent]), true_rewards=reward_vector, state=state, potential=float(phi))
            new_infos[agent] = info
        return observations, {a: float(phi) for a in rewards}, terminations, truncations, new_infos

    def potential_reward(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """φ_w for a batch of logged steps ``[B, S], [B, N, A], [B, N] -> [B]`` (no env steps)."""
        dtype = next(self.potential.parameters()).dtype
        tensors = [torch.as_tensor(x, dtype=dtype) for x in (states, actions, rewards)]
        with torch.no_grad():
            return self.potential(*tensors).double().numpy()
