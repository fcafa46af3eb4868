"""The potential-reward wrapper: a PettingZoo parallel env whose every agent is paid φ_w(s, a, r).

The global state s is the env's ``state()`` where it has one (mpe2 and the matrix games do), else the concatenation of
the agents' observations in ``possible_agents`` order, zero-filled for agents no longer present (the MAPPO convention).
Actions enter φ as a ``[N, A]`` array: a Discrete action as a one-hot, a Box action flattened, zero-padded to the widest
agent; an env whose ``unwrapped`` has ``potential_action(agent, action) -> vector`` (the matrix games: the mixed
strategy an action plays) decides that encoding itself. Each agent's true reward stays available for evaluation:
``infos[agent]`` gets ``true_reward``, and the per-step record ``true_rewards`` (vector over ``possible_agents``),
``state`` (s_t, the state the action was taken in) and ``potential`` (φ), from which Φ for any other w can be
recomputed without new env steps.

:class:`StepChecker` is the one check of what an env returns, used on every path that steps a parallel env (this
wrapper, :class:`~sb3_neppo.envs.vec.ParallelVecEnv`, :class:`~sb3_neppo.envs.frozen.FrozenOthersEnv`, the rollout
evaluator): an observation of the wrong shape or with a NaN/inf, a NaN/inf reward, or no reward for an agent that acted
is one :class:`~sb3_neppo.errors.ConfigError` line naming the agent and the step, never a traceback from deep inside.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

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


def where(step: int) -> str:
    """``at reset`` or ``at step t after reset`` (t counts ``env.step()`` calls since the last reset, from 1)."""
    return "at reset" if step == 0 else f"at step {step} after reset"


class StepChecker:
    """Checks what a PettingZoo parallel env returns, so a misbehaving env is one line naming the agent and the step.

    Every path that steps a parallel env (:class:`PotentialRewardWrapper`, the vector env, the frozen-others env, the
    rollout evaluator) goes through these checks: each observation has its space's shape and is finite, each reward is
    a finite number, and every agent that acted (it was in ``env.agents`` and was given an action) got a reward. An
    agent that has left the episode (no longer in ``env.agents``) is given no action and owes no reward.

    Steps are counted from 1 after each reset (``step=0``: the observations ``reset()`` returned).

    :param env: the (unwrapped or wrapped) parallel env; only its agents and spaces are read.
    """

    def __init__(self, env: ParallelEnv):
        check_parallel_env(env)
        self.possible_agents = list(env.possible_agents)
        self.index = {a: i for i, a in enumerate(self.possible_agents)}
        # None: a space without a shape (Dict, Tuple, ...), whose observations are not checked
        self.obs_shapes = {a: env.observation_space(a).shape for a in self.possible_agents}
        self._shaped = all(shape is not None for shape in self.obs_shapes.values())

    def observations(self, observations: Mapping, step: int, finite: bool = True) -> None:
        """Each agent's observation has its space's shape and (with ``finite``) no NaN or infinite value."""
        shapes = self.obs_shapes
        for agent, obs in observations.items():
            if getattr(obs, "shape", None) != shapes.get(agent):
                self._check_shape(agent, obs, step)
        if finite and observations:
            values = observations.values() if self._shaped else [o for a, o in observations.items() if shapes[a] is not None]
            flat = [obs.reshape(-1) if isinstance(obs, np.ndarray) else np.ravel(obs) for obs in values]
            if flat and not np.isfinite(np.concatenate(flat)).all():
                for agent, obs in observations.items():
                    self._check_finite(agent, obs, step)

    def _check_shape(self, agent: str, obs, step: int) -> None:
        if agent not in self.index:
            raise ConfigError(
                f"the env returned an observation for {agent!r} {where(step)}, which is not one of its possible_agents "
                f"({', '.join(map(str, self.possible_agents))})"
            )
        expected = self.obs_shapes[agent]
        if expected is None:
            return
        try:
            shape = np.shape(obs)
        except ValueError:  # a ragged nested list
            shape = "ragged"
        if shape != expected:
            raise ConfigError(
                f"the env returned an observation of shape {shape} for {agent} {where(step)}, but "
                f"observation_space({agent!r}).shape is {expected}; an agent's observations must keep its space's shape"
            )

    def _check_finite(self, agent: str, obs, step: int) -> None:
        if self.obs_shapes[agent] is None:
            return
        bad = ~np.isfinite(np.asarray(obs, dtype=np.float64).reshape(-1))
        if bad.any():
            first = int(np.argmax(bad))
            raise ConfigError(
                f"the env returned a non-finite observation for {agent} {where(step)} ({int(bad.sum())} of {bad.size} "
                f"values are NaN or infinite, the first at flat index {first}); fix the env so observations stay finite"
            )

    def rewards(self, rewards: Mapping, acted: Iterable[str] = (), step: int = 0) -> np.ndarray:
        """The reward vector over ``possible_agents`` (0 for agents that did not act); one line for a reward that is
        not a finite number, a reward for an unknown agent, or an agent in ``acted`` that got no reward."""
        out = np.zeros(len(self.possible_agents))
        index = self.index
        for agent, r in rewards.items():
            try:
                finite = math.isfinite(r)
            except TypeError:
                raise ConfigError(f"the env returned a reward for {agent} {where(step)} that is not a number: {r!r}") from None
            if not finite:
                raise ConfigError(
                    f"the env returned a non-finite reward for {agent}: {r} {where(step)}; fix the env or clip its rewards"
                )
            i = index.get(agent)
            if i is None:
                raise ConfigError(
                    f"the env returned a reward for {agent!r} {where(step)}, which is not one of its possible_agents "
                    f"({', '.join(map(str, self.possible_agents))})"
                )
            out[i] = r
        for agent in acted:
            if agent not in rewards:
                raise ConfigError(
                    f"the env returned no reward for {agent} {where(step)}, although {agent} acted (it was in env.agents "
                    "and was given an action); every agent that acts must be in the step's rewards dict"
                )
        return out


class StepEncoder(StepChecker):
    """Turns one parallel-env step into the arrays a potential reads: state ``[S]``, actions ``[N, A]``, rewards ``[N]``.

    Shared by :class:`PotentialRewardWrapper`, the vector env and the rollout evaluator, so all define s, a and r the
    same way (and check the env's steps the same way: :class:`StepChecker`).

    :param env: the (unwrapped or wrapped) parallel env; it is reset once to learn where the state comes from.
    """

    def __init__(self, env: ParallelEnv):
        super().__init__(env)
        self.action_spaces = {a: env.action_space(a) for a in self.possible_agents}
        # an env may say how a potential should read its actions (the matrix games: as mixed strategies)
        self._encode = getattr(env.unwrapped, "potential_action", None)
        if self._encode is not None:
            self.action_dim = max(len(self._encode(a, s.sample())) for a, s in self.action_spaces.items())
        else:
            self.action_dim = max(_action_width(s) for s in self.action_spaces.values())
        obs_dims = [int(np.prod(shape)) for shape in self.obs_shapes.values()]
        self._obs_offsets = np.cumsum([0, *obs_dims])
        observations, _ = env.reset()
        self.observations(observations, 0)
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
