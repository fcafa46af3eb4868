"""The pluggable slots of Algorithm 1: a cooperative solver, a best-response solver and a policy evaluator.

A *joint policy* is whatever a cooperative solver produces (a list of mixed strategies for the exact normal-form
solvers, an SB3 model for the sampled ones); an *agent policy* is whatever a best-response solver produces. NePPO only
passes them between the three slots, so any set of solvers that agree on these types plugs in.
"""

from __future__ import annotations

import copy
import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sb3_neppo.objective import f_values
from sb3_neppo.potentials import Potential

JointPolicy = Any
AgentPolicy = Any


@dataclass
class Estimate:
    """Per-episode samples at one joint policy: ``returns[e, i]`` is J_i in episode e, ``potential[e]`` is Φ_w.

    Exact evaluators return a single "episode" holding the exact values; sampled ones keep the logged ``rollouts``, from
    which Φ for another w can be recomputed.
    """

    returns: np.ndarray
    potential: np.ndarray
    env_steps: int = 0
    rollouts: Any = None


class _Slot:
    def reseed(self, seed: int) -> None:  # a no-op by default: closed-form slots draw no random numbers
        """Seed the next call. NePPO gives both branches of a direction one seed: common random numbers."""

    @property
    def env_steps(self) -> int:
        """Env steps spent so far (0 for closed-form slots)."""
        return 0


class CooperativeSolver(_Slot, ABC):
    """Solves the cooperative game in which every agent maximises the potential Φ_w."""

    @abstractmethod
    def solve(self, potential: Potential, warm_start: JointPolicy | None) -> JointPolicy:
        """Return π^Φ for ``potential``, starting from ``warm_start`` (the current cooperative policy) if given."""


class BestResponseSolver(_Slot, ABC):
    """Finds agent i's best response (under its own true reward) to the others playing a frozen joint policy."""

    @abstractmethod
    def solve(self, agent: str, joint: JointPolicy, warm_start: AgentPolicy | None) -> AgentPolicy:
        """Return a best response of ``agent`` to the other agents of ``joint``."""


class PolicyEvaluator(_Slot, ABC):
    """Estimates J_i and Φ_w at a joint policy and at each agent's unilateral deviation from it."""

    @abstractmethod
    def evaluate(
        self, potential: Potential, joint: JointPolicy, deviations: Mapping[str, AgentPolicy]
    ) -> tuple[Estimate, dict[str, Estimate]]:
        """Estimates at ``joint`` and at (deviations[i], joint_-i) for each agent i, on common random numbers."""


@dataclass
class FEstimate:
    """F_i per agent with its standard error, from paired per-episode samples; and what each best response gained
    over π^Φ, J_i(π_i^J, π^Φ_-i) − J_i(π^Φ) with its standard error (a lower bound on the regret where the best
    response is solved only approximately; about 0 when it barely moved from π_i, and then F bounds nothing).
    ``samples``: the per-episode F samples (episodes × agents) they come from, where known; two solves evaluated on the
    same episode seeds (the branches w ± δu) are compared episode by episode (:func:`~sb3_neppo.objective.paired_gap_se`)."""

    mean: np.ndarray
    se: np.ndarray
    gain: np.ndarray | None = None
    gain_se: np.ndarray | None = None
    samples: np.ndarray | None = None


def _mean_se(samples: np.ndarray) -> tuple[float, float]:
    return float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else 0.0


def estimate_f(agents: list[str], coop: Estimate, deviations: Mapping[str, Estimate]) -> FEstimate:
    """F_i from paired samples: episode e of the deviation is compared with episode e at π^Φ (common random numbers)."""
    f, gains, samples = [], [], []
    for i, agent in enumerate(agents):
        dev = deviations[agent]
        samples.append(np.asarray(f_values(coop.potential, dev.potential, coop.returns[:, i], dev.returns[:, i]), float))
        f.append(_mean_se(samples[-1]))
        gains.append(_mean_se(np.asarray(dev.returns[:, i]) - np.asarray(coop.returns[:, i])))
    (mean, se), (gain, gain_se) = (np.array(x).T for x in (f, gains))
    return FEstimate(mean, se, gain, gain_se, np.stack(samples, axis=1))


@dataclass
class Solvers:
    """The three slots NePPO composes, and what NePPO may ask of them: their *capabilities*. NePPO knows nothing else
    of the solvers, so a custom bundle (this class as it is, or a subclass) gets everything the built-in ones get:

    * ``exact``: the values are exact (no sampling, no env steps); ``name`` is what ``summary.json`` records;
    * :meth:`solve_cost`: the env steps one solve is planned to take (None: no plan, so no env-step budget);
    * :meth:`encode` / :meth:`decode`: a warm start (π^Φ and the best responses) as plain data for another process, a
      study or a model file, and back (default: the objects themselves, for bundles whose policies pickle);
    * :meth:`factory`: rebuilds the bundle in a worker process (default: a pickled copy of this one);
    * :meth:`regret`: the exact per-agent regret of a joint policy where it is known (a normal-form game), and
      :meth:`strategies`, the mixed strategies it is computed from;
    * :meth:`best_response_budget`: what the best responses were given, for the certificate;
    * :attr:`best_response_every`: the branches train their best responses at every k-th outer iteration (default 1)
      and play the last ones again between.
    """

    cooperative: CooperativeSolver
    best_response: BestResponseSolver
    evaluator: PolicyEvaluator
    exact: bool = False

    @property
    def name(self) -> str:
        return "exact" if self.exact else type(self.cooperative).__name__

    @property
    def env_steps(self) -> int:
        return self.cooperative.env_steps + self.best_response.env_steps + self.evaluator.env_steps

    def reseed(self, seed: int) -> None:
        """Seed the next cooperative solve, best responses and evaluation (see :meth:`CooperativeSolver.reseed`)."""
        for slot in (self.cooperative, self.best_response, self.evaluator):
            slot.reseed(seed)

    def solve_cost(self, n_agents: int) -> dict[str, int] | None:
        """Planned env steps of one solve: ``cooperative``, ``best_responses``, ``evaluation`` (None: not planned)."""
        return {"cooperative": 0, "best_responses": 0, "evaluation": 0} if self.exact else None

    @property
    def best_response_every(self) -> int:
        """k: the branch solves of outer iteration t (or the regret-weights step's one solve) train best responses where
        t % k == 0, else they play the warm start's again, frozen (the solve at the final iterate always trains them)."""
        return 1

    def best_response_budget(self) -> dict[str, Any] | None:
        """What each best response is given (``ppo_updates``, ``env_steps``, ``warm_start``, ``algo``), where known."""
        return None

    def encode(self, policy: JointPolicy | None, best_responses: Mapping[str, AgentPolicy]) -> Any:
        """π^Φ and best responses as plain data (tensors, arrays, numbers) that :meth:`decode` turns back into them."""
        return policy, dict(best_responses)

    def decode(self, state: Any) -> tuple[JointPolicy | None, dict[str, AgentPolicy]]:
        policy, best_responses = state
        return policy, dict(best_responses)

    def factory(self) -> Callable[[], Solvers]:
        """A picklable callable that builds this bundle again in another process (workers)."""
        return functools.partial(copy.deepcopy, self)

    def strategies(self, policy: JointPolicy) -> list[np.ndarray] | None:
        """The mixed strategies ``policy`` plays in a normal-form game (None: a Markov game, or not known)."""
        return None

    def regret(self, policy: JointPolicy) -> np.ndarray | None:
        """The exact per-agent regret of ``policy`` (None where it needs the regret evaluator)."""
        return None
