"""Evaluation rollouts: episodes of a joint policy played on common random numbers and logged per step, from which
J_i and Φ_w (for any w) are computed without new env steps.

:class:`EvaluationEpisodes` plays a batch of episodes, one per env copy or world, and logs them in :class:`StepLogs`
(preallocated arrays) as :class:`Rollouts`; an env backend makes one
(:meth:`~sb3_neppo.envs.backend.EnvBackend.evaluation_episodes`). :class:`EnvCopyEpisodes` plays them on copies of a
PettingZoo parallel env (the batched VMAS one is :class:`~sb3_neppo.envs.vmas.VmasEpisodes`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pettingzoo import ParallelEnv

from sb3_neppo.envs.encoding import StepEncoder, potential_values
from sb3_neppo.envs.masks import masks_of
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import Memory
from sb3_neppo.potentials import Potential


@dataclass
class Rollouts:
    """Logged episodes: per episode, states ``[T, S]``, actions ``[T, N, A]`` and reward vectors ``[T, N]``.

    ``encoding``: None when ``states`` are the global states themselves; else the :attr:`Potential.state_encoding` of
    the potential whose fixed state features ``states`` hold (a large state is logged as its small encoding), and Φ can
    be recomputed for any w of a potential with that encoding.
    """

    states: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: list[np.ndarray]
    gamma: float
    encoding: tuple | None = None

    def _discount(self, values: np.ndarray) -> np.ndarray:
        """Per-episode discounted sums of per-step ``values`` (steps of all episodes concatenated)."""
        lengths = [len(r) for r in self.rewards]
        weights = np.concatenate([self.gamma ** np.arange(n) for n in lengths])
        starts = np.cumsum([0, *lengths[:-1]])
        weighted = values * (weights if values.ndim == 1 else weights[:, None])
        return np.add.reduceat(weighted, starts, axis=0)

    def returns(self) -> np.ndarray:
        """J_i per episode ``[E, N]``."""
        return self._discount(np.concatenate(self.rewards))

    def potential_returns(self, potential: Potential) -> np.ndarray:
        """Φ_w per episode ``[E]`` for any potential, from the logged steps in one batched call (no env steps)."""
        if self.encoding is not None and potential.state_encoding != self.encoding:
            raise ConfigError(
                f"these rollouts logged the state encoded as {self.encoding}, but this potential reads "
                f"{potential.state_encoding or 'the state itself'}; recompute Φ with a potential of the same state encoding"
            )
        steps = (np.concatenate(x) for x in (self.states, self.actions, self.rewards))
        phi = potential_values(potential, *steps, encoded=self.encoding is not None)
        return self._discount(phi)


class StepLogs:
    """The rollout evaluator's per-step logs of a batch of episodes, in arrays preallocated per episode and step:
    states (or a potential's state features) ``[E, T, S]`` and actions ``[E, T, N, A]`` in the potential's dtype
    (float32 for the SB3 solvers: what the potential reads, so Φ is the same as from float64 copies), rewards
    ``[E, T, N]`` in float64 (J_i exactly). T starts at ``capacity`` (pages never written take no memory) and doubles
    when an episode outgrows it.
    """

    def __init__(
        self, n_episodes: int, state_dim: int, n_agents: int, action_dim: int, dtype, capacity: int, encoding: tuple | None
    ):
        capacity = max(1, int(capacity))
        self.encoding = encoding  # what the states hold (see Rollouts.encoding)
        self.states = np.zeros((n_episodes, capacity, state_dim), dtype)
        self.actions = np.zeros((n_episodes, capacity, n_agents, action_dim), dtype)
        self.rewards = np.zeros((n_episodes, capacity, n_agents))
        self.lengths = np.zeros(n_episodes, dtype=int)

    def next_row(self, episode: int) -> int:
        """The row of ``episode``'s next step (its step number after reset, less one)."""
        t = int(self.lengths[episode])
        if t == self.states.shape[1]:
            for name in ("states", "actions", "rewards"):
                old = getattr(self, name)
                new = np.zeros((old.shape[0], 2 * old.shape[1], *old.shape[2:]), old.dtype)
                new[:, : old.shape[1]] = old
                setattr(self, name, new)
        self.lengths[episode] += 1
        return t

    def rollouts(self, gamma: float) -> Rollouts:
        """The logged episodes (views of the arrays, no copies)."""
        views = [[getattr(self, name)[e, :n] for e, n in enumerate(self.lengths)] for name in ("states", "actions", "rewards")]
        return Rollouts(*views, gamma=gamma, encoding=self.encoding)


def log_format(potential: Potential | None) -> tuple[tuple | None, np.dtype]:
    """(state encoding, dtype) of logs kept for ``potential``: its encoding and its parameters' dtype (None: the raw
    state in float32)."""
    if potential is None:
        return None, np.dtype(np.float32)
    return potential.state_encoding, torch.empty(0, dtype=next(potential.parameters()).dtype).numpy().dtype


def encode_states(potential: Potential, states: np.ndarray) -> np.ndarray:
    """``potential``'s fixed features of a batch of states ``[B, S] -> [B, F]``."""
    with torch.no_grad():
        return potential.encode_state(torch.as_tensor(states)).numpy()


class EvaluationEpisodes(ABC):
    """``n_episodes`` episodes of a joint policy, one per env copy or world, played together on common random numbers:
    episode e starts from a state that depends on the seed alone, whatever the policy, and samples its agents' actions
    from its own generator ``(seed, e)``, agents in order, so a deviation changes only the deviating agent's actions.

    :attr:`env` is one env of the kind played (its episode length sizes the logs); :attr:`env_steps` counts env steps.
    """

    n_episodes: int
    env: ParallelEnv
    env_steps: int

    @abstractmethod
    def play(self, profile: Any, seed: int, potential: Potential | None, log_states: bool, capacity: int) -> StepLogs:
        """The logs of one batch of episodes of ``profile`` (a :class:`~sb3_neppo.policy.PolicyProfile`) from ``seed``.

        With ``potential``, the logs are in its dtype and, when it encodes the state (:attr:`Potential.state_encoding`),
        hold the state's features rather than the state itself: what Φ of that potential needs, for any w. Without
        ``log_states`` no state is kept (returns only: a large state costs nothing). ``capacity``: the steps per
        episode to allocate first (the logs grow past it)."""


class EnvCopyEpisodes(EvaluationEpisodes):
    """The episodes on ``n_episodes`` copies of a parallel env, all stepped together: episode e uses env seed
    ``seed + e``; every copy's steps are checked (:class:`~sb3_neppo.envs.checks.StepChecker`).

    :param env_fn: builds one copy.
    :param deterministic: every agent plays its most likely action, else samples it.
    """

    def __init__(self, env_fn: Callable[[], ParallelEnv], n_episodes: int, deterministic: bool):
        self.envs = [env_fn() for _ in range(n_episodes)]
        self.encoder = StepEncoder(self.envs[0])
        self.n_episodes, self.env, self.deterministic = len(self.envs), self.envs[0], bool(deterministic)
        self._raw: np.ndarray | None = None  # the states of one step of every episode, while they are encoded
        self.env_steps = 0

    def play(self, profile: Any, seed: int, potential: Potential | None, log_states: bool, capacity: int) -> StepLogs:
        n_ep, n = len(self.envs), len(self.encoder.possible_agents)
        encoding, dtype = log_format(potential)
        width = self.encoder.state_dim if log_states else 0
        if not log_states:
            encoding = None
        elif encoding is not None:
            if self._raw is None or self._raw.dtype != dtype:
                self._raw = np.zeros((n_ep, self.encoder.state_dim), dtype)
            width = encode_states(potential, self._raw[:1]).shape[-1]
        logs = StepLogs(n_ep, width, n, self.encoder.action_dim, dtype, capacity, encoding)
        rngs = [np.random.default_rng([seed, e]) for e in range(n_ep)]
        resets = [env.reset(seed=seed + e) for e, env in enumerate(self.envs)]
        obs = [o for o, _ in resets]
        masks = [masks_of(o, infos) for o, infos in resets]  # action masks, where the env gives them
        for o in obs:
            self.encoder.observations(o, 0)
        active = [e for e in range(n_ep) if self.envs[e].agents]
        memory = Memory()  # recurrent policies' states, a row per episode
        while active:
            present = [{a: o for a, o in obs[e].items() if a in self.envs[e].agents} for e in active]
            joint = profile.act_batch(
                present, self.deterministic, [rngs[e] for e in active], memory, active, [masks[e] for e in active]
            )
            rows = []
            for k, (e, actions) in enumerate(zip(active, joint)):
                env = self.envs[e]
                t = logs.next_row(e)  # this step is step t + 1 after reset
                rows.append(t)
                if log_states:
                    self.encoder.state(env, obs[e], out=logs.states[e, t] if encoding is None else self._raw[k], step=t)
                obs[e], rewards, _, _, infos = env.step(actions)
                masks[e] = masks_of(obs[e], infos)
                self.encoder.observations(obs[e], t + 1)
                logs.actions[e, t] = self.encoder.actions(actions)
                logs.rewards[e, t] = self.encoder.rewards(rewards, actions, t + 1)
                self.env_steps += 1
            if encoding is not None:  # the states of this step, encoded in one call
                logs.states[active, rows] = encode_states(potential, self._raw[: len(active)])
            active = [e for e in active if self.envs[e].agents]
        return logs
