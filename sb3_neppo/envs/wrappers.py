"""The potential-reward wrapper: a PettingZoo parallel env whose every agent is paid φ_w(s, a, r).

The global state s is the env's ``state()`` where it has one (mpe2 and the matrix games do), else the concatenation of
the agents' observations in ``possible_agents`` order, zero-filled for agents no longer present (the MAPPO convention).
Actions enter φ as a ``[N, A]`` array: a Discrete action as a one-hot, a Box action flattened, zero-padded to the widest
agent; an env whose ``unwrapped`` has ``potential_action(agent, action) -> vector`` (the matrix games: the mixed
strategy an action plays) decides that encoding itself. Each agent's true reward stays available for evaluation:
``infos[agent]`` gets ``true_reward``, and the per-step record ``true_rewards`` (vector over ``possible_agents``),
``state`` (s_t, the state the action was taken in) and ``potential`` (φ), from which Φ for any other w can be
recomputed without new env steps.
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


def check_parallel_env(env) -> None:
    """One clear error for anything that is not a PettingZoo ``ParallelEnv`` (an AEC env, a Gymnasium env, ...)."""
    if isinstance(env, AECEnv) or not isinstance(env, ParallelEnv):
        raise ConfigError(
            f"{type(env).__name__} is not a PettingZoo ParallelEnv; use the module's parallel_env() "
            "(or pettingzoo.utils.conversions.aec_to_parallel)"
        )


class StepEncoder:
    """Turns one parallel-env step into the arrays a potential reads: state ``[S]``, actions ``[N, A]``, rewards ``[N]``.

    Shared by :class:`PotentialRewardWrapper` and the vector env, so both define s, a and r the same way.

    :param env: the (unwrapped or wrapped) parallel env; it is reset once to learn where the state comes from.
    """

    def __init__(self, env: ParallelEnv):
        check_parallel_env(env)
        self.possible_agents = list(env.possible_agents)
        self.index = {a: i for i, a in enumerate(self.possible_agents)}
        self.action_spaces = {a: env.action_space(a) for a in self.possible_agents}
        # an env may say how a potential should read its actions (the matrix games: as mixed strategies)
        self._encode = getattr(env.unwrapped, "potential_action", None)
        if self._encode is not None:
            self.action_dim = max(len(self._encode(a, s.sample())) for a, s in self.action_spaces.items())
        else:
            self.action_dim = max(_action_width(s) for s in self.action_spaces.values())
        obs_dims = [int(np.prod(env.observation_space(a).shape)) for a in self.possible_agents]
        self._obs_offsets = np.cumsum([0, *obs_dims])
        observations, _ = env.reset()
        self.has_state = _has_state(env)
        self.state_dim = int(self.state(env, observations).size)

    def state(self, env: ParallelEnv, observations: dict) -> np.ndarray:
        """The global state: ``env.state()``, else the observations concatenated (zeros for absent agents)."""
        if self.has_state:
            return np.asarray(env.state(), dtype=np.float64).reshape(-1)
        state = np.zeros(self._obs_offsets[-1])
        for agent, obs in observations.items():
            i = self.index[agent]
            state[self._obs_offsets[i] : self._obs_offsets[i + 1]] = np.asarray(obs, dtype=np.float64).reshape(-1)
        return state

    def actions(self, actions: dict) -> np.ndarray:
        out = np.zeros((len(self.possible_agents), self.action_dim))
        for agent, action in actions.items():
            if self._encode is not None:
                vector = np.asarray(self._encode(agent, action), dtype=np.float64)
                out[self.index[agent], : vector.size] = vector
            else:
                out[self.index[agent]] = _action_vector(self.action_spaces[agent], action, self.action_dim)
        return out

    def rewards(self, rewards: dict) -> np.ndarray:
        """The reward vector over ``possible_agents`` (0 for absent agents); a NaN or infinite reward is an error."""
        out = np.zeros(len(self.possible_agents))
        for agent, r in rewards.items():
            if not np.isfinite(r):
                raise ConfigError(f"the env returned a non-finite reward for {agent}: {r}; fix the env or clip its rewards")
            out[self.index[agent]] = r
        return out

    def check_potential(self, potential: Potential) -> None:
        """Fail with one line if ``potential`` cannot read this env's state, actions and rewards."""
        n = len(self.possible_agents)
        try:
            zeros = np.zeros((1, self.state_dim)), np.zeros((1, n, self.action_dim)), np.zeros((1, n))
            out = potential_values(potential, *zeros)
        except ConfigError:
            raise
        except (RuntimeError, ValueError, IndexError) as exc:
            raise ConfigError(
                f"the potential does not fit this env (state {self.state_dim}, {n} agents, actions {self.action_dim}): "
                f"{str(exc).splitlines()[0]}"
            ) from None
        if out.shape != (1,):
            raise ConfigError(f"the potential must return one value per batch row, got shape {out.shape}")


def _has_state(env: ParallelEnv) -> bool:
    try:
        env.state()
        return True
    except (AttributeError, NotImplementedError):
        return False


def potential_values(potential: Potential, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """φ_w for a batch of steps ``[B, S], [B, N, A], [B, N] -> [B]``, in one torch call (no env steps)."""
    dtype = next(potential.parameters()).dtype
    tensors = [torch.as_tensor(x, dtype=dtype) for x in (states, actions, rewards)]
    with torch.no_grad():
        return potential(*tensors).double().numpy()


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
        self.encoder.check_potential(potential)

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations, infos = self.env.reset(seed=seed, options=options)
        self._state = self.encoder.state(self.env, observations)
        return observations, infos

    def step(self, actions: dict):
        if self._state is None:
            raise RuntimeError("step() before reset(): call reset() first")
        state = self._state
        observations, rewards, terminations, truncations, infos = self.env.step(actions)
        reward_vector = self.encoder.rewards(rewards)
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
