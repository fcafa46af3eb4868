"""Regret of a joint policy: how much each agent gains by deviating alone, measured by training a best response.

For each agent i, every other agent is frozen at π (most likely actions by default, sampled with
``deterministic=False``) and:

1. J_i(π) is measured on ``eval_episodes`` episodes (env seeds ``REGRET_EVAL_SEED + e``, discounted by γ);
2. a best response is trained with SB3 PPO (or the settings' ``br_algo``) on agent i's own true reward (never a
   potential) against the frozen others, for ``br_timesteps`` env steps from each start in ``starts``: from scratch,
   and warm-started from π_i;
3. the best checkpoint of either run (its ``curve_points`` points and its start, so π_i itself is a candidate) is
   chosen on separate *selection* episodes (so the choice does not bias the reported number) and measured on the
   evaluation episodes: regret_i = mean_e [J_i(BR_i, π_-i) − J_i(π)]_e over the paired episodes (same env seeds, and
   each episode's random numbers drawn per agent in order: common random numbers).

Regret is reported raw: a best response that does worse than π on the evaluation episodes gives a negative number,
shown as such, never clipped (when π_i itself is kept, its gain is exactly 0).
A bootstrap over episodes gives each agent's confidence interval and, resampling the episodes of all agents together,
the interval of the max over agents. Settings that cannot give an interval are refused (one line, a
:class:`~sb3_neppo.errors.ConfigError`), never reported as an interval of zero width: fewer than 2 evaluation episodes
(one paired gain has no spread to resample), or fewer bootstrap resamples than put one in each tail
(``bootstrap >= 2 / (1 - confidence)``: 40 for 95 %). An interval of zero width from valid settings is what the
episodes say: every paired gain was the same (deterministic play in a deterministic game, or π_i itself kept).
Each best response's learning curve (its mean return on the selection episodes every ``br_timesteps / curve_points``
env steps) is kept, so a curve still rising says the budget was too small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from pettingzoo import ParallelEnv
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_neppo.config import REGRET_EVAL_SEED, REGRET_SELECTION_SEED, SB3SolverConfig, dataclass_from_dict
from sb3_neppo.envs.view import AgentView
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.solvers.sb3 import PPOBestResponseSolver, rollout_evaluator, start_from

STARTS = ("scratch", "warm")


@dataclass
class RegretConfig:
    """Settings of the regret evaluator.

    :param br_timesteps: env steps of best-response training per agent and start.
    :param eval_episodes: paired episodes for J_i(π) and J_i(BR_i, π_-i) (and as many selection episodes); at least
        2, the fewest a confidence interval can come from.
    :param deterministic: the frozen agents (and every agent in the measured episodes) play their most likely action;
        False samples from the policies.
    :param starts: best-response starts to try, the better kept: ``scratch`` and/or ``warm`` (from π_i).
    :param curve_points: points of each best response's learning curve.
    :param confidence: level of the bootstrap intervals.
    :param bootstrap: bootstrap resamples; at least ``2 / (1 - confidence)``, one in each tail of the interval.
    :param seed: seed of best-response training and of the bootstrap.
    """

    br_timesteps: int = 100_000
    eval_episodes: int = 64
    deterministic: bool = True
    starts: tuple[str, ...] = STARTS
    curve_points: int = 5
    confidence: float = 0.95
    bootstrap: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("br_timesteps", "eval_episodes", "curve_points", "bootstrap"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key} must be an integer >= 1 (got {value!r})")
        self.starts = tuple(self.starts)
        if not self.starts or any(s not in STARTS for s in self.starts):
            raise ConfigError(f"starts must be one or both of {', '.join(STARTS)} (got {', '.join(self.starts) or 'none'})")
        if self.eval_episodes < 2:
            raise ConfigError(
                f"eval_episodes must be >= 2: one paired episode gives no confidence interval (got {self.eval_episodes})"
            )
        if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)) or not 0 < self.confidence < 1:
            raise ConfigError(f"confidence must be in (0, 1) (got {self.confidence!r})")
        fewest = min_resamples(self.confidence)
        if self.bootstrap < fewest:
            raise ConfigError(
                f"bootstrap must be >= {fewest} resamples for a {100 * self.confidence:g} % interval, one in each tail "
                f"(got {self.bootstrap})"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> RegretConfig:
        return dataclass_from_dict(cls, values, "regret setting")


@dataclass
class AgentRegret:
    """One agent's regret: the raw mean gain of its best response over π on the paired evaluation episodes."""

    agent: str
    regret: float
    ci: tuple[float, float]
    base_return: float
    br_return: float
    start: str  # the start of the kept best response (scratch, warm; exact)
    br_env_steps: int  # env steps of best-response training, all starts
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # start -> (env steps, selection return)
    kept_at: int | None = None  # env steps into its start's training of the kept checkpoint (0 with warm: pi_i itself)


@dataclass
class RegretReport:
    """Every agent's regret and the max over agents, with the settings that produced them."""

    agents: list[AgentRegret]
    max_regret: float
    max_ci: tuple[float, float]
    method: str  # "best-response" or "exact"
    settings: dict[str, Any]

    @property
    def regret(self) -> dict[str, float]:
        return {r.agent: r.regret for r in self.agents}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "regret": self.regret,
            "max_regret": self.max_regret,
            "max_regret_ci": list(self.max_ci),
            "agents": {r.agent: {k: v for k, v in asdict(r).items() if k != "agent"} for r in self.agents},
            "settings": self.settings,
        }


def min_resamples(confidence: float) -> int:
    """The fewest bootstrap resamples that put one in each tail of a ``confidence`` percentile interval."""
    return math.ceil(2 / (1 - confidence) - 1e-9)


def bootstrap_ci(gains: np.ndarray, confidence: float, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile intervals ``[N, 2]`` of each column's mean, and ``[2]`` of the max over columns, of paired samples
    ``gains[E, N]`` (rows resampled together); refused for fewer than 2 rows or too few resamples (no interval)."""
    if len(gains) < 2:
        raise ConfigError(f"a confidence interval needs at least 2 paired episodes (got {len(gains)})")
    if resamples < min_resamples(confidence):
        raise ConfigError(f"a {100 * confidence:g} % bootstrap interval needs at least {min_resamples(confidence)} resamples")
    rng = np.random.default_rng(seed)
    rows = rng.integers(len(gains), size=(resamples, len(gains)))
    means = gains[rows].mean(axis=1)  # [resamples, N]
    tail = 100 * (1 - confidence) / 2
    per_column = np.percentile(means, [tail, 100 - tail], axis=0).T
    of_max = np.percentile(means.max(axis=1), [tail, 100 - tail])
    return per_column, of_max


class RegretEvaluator:
    """Per-agent regret of joint policies in a Markov game by best-response training (see the module docstring).

    :param env_fn: builds the PettingZoo parallel env (VMAS scenarios run on the batched backend).
    :param view: the joint policy's view (observation padding, agent indicator, action rules).
    :param solver_config: PPO settings of the best responses (``br_ppo`` over ``ppo``), ``n_envs`` and γ.
    :param config: the evaluator's own settings.
    """

    def __init__(
        self,
        env_fn: Callable[[], ParallelEnv],
        view: AgentView,
        solver_config: SB3SolverConfig,
        config: RegretConfig | None = None,
    ):
        self.config = config if config is not None else RegretConfig()
        self.env_fn, self.view = env_fn, view
        self.solver_config = SB3SolverConfig(
            **{**asdict(solver_config), "deterministic": self.config.deterministic, "eval_episodes": self.config.eval_episodes}
        )
        self.rollouts = rollout_evaluator(env_fn, self.solver_config, view)

    def _returns(self, profile: PolicyProfile, seed: int) -> np.ndarray:
        return self.rollouts.rollouts(profile, seed).returns()

    def _train(self, agent: str, joint: PolicyProfile, start: str) -> tuple[list[tuple[int, float, ActorCriticPolicy]], int]:
        """A best response from ``start`` trained for the budget, as checkpoints (env steps, return on the selection
        episodes, frozen policy) at ``curve_points`` points and at the start; and the env steps it took."""
        solver = PPOBestResponseSolver(self.env_fn, self.view, self.solver_config, self.config.seed)
        model = solver.model(agent, joint)
        start_from(model, solver.initial_states[agent] if start == "scratch" else joint.policies[agent])
        model.set_random_seed(self.config.seed + self.view.index[agent])
        index, rollout = self.view.index[agent], model.n_steps * model.n_envs
        rollouts = math.ceil(self.config.br_timesteps / rollout)  # whole PPO updates, at least the budget
        marks = sorted({round(x) for x in np.linspace(0, rollouts, self.config.curve_points + 1)} - {0})

        def checkpoint() -> tuple[int, float, ActorCriticPolicy]:
            policy = frozen_copy(model.policy)
            selection = self._returns(joint.with_agent(agent, policy), REGRET_SELECTION_SEED)[:, index].mean()
            return int(model.num_timesteps), float(selection), policy

        checkpoints, done = [checkpoint()], 0
        for mark in marks:
            model.learn((mark - done) * rollout, reset_num_timesteps=done == 0)
            done = mark
            checkpoints.append(checkpoint())
        return checkpoints, int(model.num_timesteps)

    def evaluate(self, joint: PolicyProfile, agents: Sequence[str] | None = None) -> RegretReport:
        """The regret of every agent in ``agents`` (default: all) at ``joint``."""
        agents = list(self.view.agents if agents is None else agents)
        for agent in agents:
            if agent not in self.view.agents:
                raise ConfigError(f"no agent '{agent}' in this env; its agents are: {', '.join(self.view.agents)}")
        base = self._returns(joint, REGRET_EVAL_SEED)
        gains, rows = [], []
        for agent in agents:
            i = self.view.index[agent]
            trained = {start: self._train(agent, joint, start) for start in self.config.starts}
            # the best checkpoint of either start, chosen on the selection episodes, is measured on the evaluation ones
            kept, (kept_at, _, policy) = max(
                ((start, point) for start, (points, _) in trained.items() for point in points), key=lambda x: x[1][1]
            )
            deviation = joint.with_agent(agent, policy)
            gain = self._returns(deviation, REGRET_EVAL_SEED)[:, i] - base[:, i]
            gains.append(gain)
            rows.append(
                AgentRegret(
                    agent=agent,
                    regret=float(gain.mean()),
                    ci=(0.0, 0.0),
                    base_return=float(base[:, i].mean()),
                    br_return=float(base[:, i].mean() + gain.mean()),
                    start=kept,
                    br_env_steps=sum(steps for _, steps in trained.values()),
                    curves={start: [(n, r) for n, r, _ in points] for start, (points, _) in trained.items()},
                    kept_at=int(kept_at),
                )
            )
        config = self.config
        per_agent, of_max = bootstrap_ci(np.stack(gains, axis=1), config.confidence, config.bootstrap, config.seed)
        for row, ci in zip(rows, per_agent):
            row.ci = (float(ci[0]), float(ci[1]))
        solver = self.solver_config
        ppo = solver.algo_kwargs(best_response=True)
        settings = {
            **asdict(self.config),
            "starts": list(self.config.starts),
            "gamma": solver.gamma,
            "n_envs": solver.n_envs,
            "algo": solver.br_algo or solver.algo,
            "policy": solver.policy_name(best_response=True),
            "ppo": {k: repr(v) if callable(v) else v for k, v in ppo.items()},  # a schedule by its repr: JSON stays JSON
        }
        top = max(r.regret for r in rows)
        return RegretReport(rows, top, (float(of_max[0]), float(of_max[1])), "best-response", settings)
