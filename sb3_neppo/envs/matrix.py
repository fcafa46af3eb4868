"""Normal-form games as one-step PettingZoo ``ParallelEnv``s.

Two action modes:

* ``mixed=False`` (pure): each agent picks one action (``Discrete(k_i)``); rewards are the payoffs of the pure profile.
* ``mixed=True`` (the paper's mode): an action *is* a mixed strategy and the reward is the expected payoff of the mixed
  profile. A 2-action player's action is ``Box(0, 1, (1,))``, the probability of its second action, exactly as in the
  paper; a player with k > 2 actions gives ``Box(0, 1, (k,))`` weights that are normalised to sum to 1 (all zeros means
  uniform).

Every agent observes the same constant vector ``[1.0]`` (a one-step game has a single state); ``state()`` returns it too.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sb3_neppo.envs.games import NormalFormGame, alpha_game, matching_pennies, prisoners_dilemma, stag_hunt
from sb3_neppo.errors import ConfigError


def strategy_from_action(action, k: int) -> np.ndarray:
    """Map a mixed-mode action to a probability vector over k actions (see the module docstring)."""
    a = np.asarray(action, dtype=np.float64).reshape(-1)
    if k == 2 and a.shape == (1,):
        p = float(np.clip(a[0], 0.0, 1.0))
        return np.array([1.0 - p, p])
    if a.shape != (k,):
        raise ValueError(f"a mixed-strategy action for {k} actions must have shape ({k},), got {a.shape}")
    a = np.clip(a, 0.0, None)
    total = a.sum()
    return a / total if total > 0 else np.full(k, 1.0 / k)


def action_from_strategy(strategy: np.ndarray) -> np.ndarray:
    """Inverse of :func:`strategy_from_action`: the mixed-mode action that plays ``strategy``."""
    x = np.asarray(strategy, dtype=np.float32)
    return x[1:2].copy() if x.shape == (2,) else x.copy()


class MatrixGameEnv(ParallelEnv):
    """A one-step PettingZoo parallel env that plays a :class:`NormalFormGame`.

    ``infos[agent]`` after a step holds the agent's ``strategy`` (mixed mode) or ``action`` (pure mode) and the
    reward vector of all players under ``"rewards"``.
    """

    metadata = {"name": "matrix_game_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, game: NormalFormGame, mixed: bool = True, render_mode: str | None = None):
        if not isinstance(mixed, (bool, np.bool_)):
            raise ConfigError(f"mixed must be true (actions are mixed strategies) or false (pure actions), got {mixed!r}")
        self.game = game
        self.mixed = bool(mixed)
        self.render_mode = render_mode
        self.possible_agents = list(game.agents)
        self.agents: list[str] = []
        self._k = dict(zip(self.possible_agents, game.n_actions))
        self._obs = np.ones(1, dtype=np.float32)
        self.observation_spaces = {a: spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32) for a in self.possible_agents}
        self.action_spaces = {
            a: spaces.Box(0.0, 1.0, shape=(1 if k == 2 else k,), dtype=np.float32) if self.mixed else spaces.Discrete(k)
            for a, k in self._k.items()
        }
        self.state_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def state(self) -> np.ndarray:
        return self._obs.copy()

    def potential_action(self, agent: str, action) -> np.ndarray:
        """The action as a potential reads it: the mixed strategy it plays (a one-hot in pure mode)."""
        k = self._k[agent]
        return strategy_from_action(action, k) if self.mixed else np.eye(k)[int(action)]

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.agents = list(self.possible_agents)
        return {a: self._obs.copy() for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("step() called on a finished episode: call reset() first")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"missing actions for agents {missing}")
        if self.mixed:
            strategies = [strategy_from_action(actions[a], self._k[a]) for a in self.agents]
            payoffs = self.game.expected_payoffs(strategies)
            extra = {a: {"strategy": s} for a, s in zip(self.agents, strategies)}
        else:
            profile = tuple(int(actions[a]) for a in self.agents)
            payoffs = self.game.payoffs[(slice(None),) + profile].copy()
            extra = {a: {"action": p} for a, p in zip(self.agents, profile)}
        agents = self.agents
        observations = {a: self._obs.copy() for a in agents}
        rewards = {a: float(r) for a, r in zip(agents, payoffs)}
        terminations = {a: True for a in agents}
        truncations = {a: False for a in agents}
        infos = {a: {**extra[a], "rewards": payoffs.copy()} for a in agents}
        self.agents = []
        return observations, rewards, terminations, truncations, infos

    def render(self) -> None:
        return None

    def close(self) -> None:
        return None


def alpha_env(alpha: float = 0.0, mixed: bool = True) -> MatrixGameEnv:
    """The paper's alpha family (eq. 7) as an env."""
    return MatrixGameEnv(alpha_game(alpha), mixed=mixed)


def prisoners_dilemma_env(mixed: bool = True) -> MatrixGameEnv:
    return MatrixGameEnv(prisoners_dilemma(), mixed=mixed)


def stag_hunt_env(mixed: bool = True) -> MatrixGameEnv:
    return MatrixGameEnv(stag_hunt(), mixed=mixed)


def matching_pennies_env(mixed: bool = True) -> MatrixGameEnv:
    return MatrixGameEnv(matching_pennies(), mixed=mixed)
