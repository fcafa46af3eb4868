"""Steps 2-4 of Algorithm 1 at one parameter vector w: the unit of work that NePPO's outer loop hands to an executor.

* :class:`Job` — a solve to do: its key ``(iteration, direction, sign)`` (sign 0: the iterate itself), w and seed;
* :class:`Solve` — the one record of a solve, wherever it ran: L_β, F (with standard errors and the best responses'
  gains), the exact regret where the game has one, the env steps it took and, when they were kept, π^Φ and the best
  responses; the same record is a trial of a study (:meth:`Solve.attrs`, :meth:`Solve.from_trial`);
* :class:`BranchSolver` — does a solve with a solver bundle and a potential;
* :class:`BranchSpec` — the plain, picklable data a worker process rebuilds a BranchSolver from (no model class).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sb3_neppo.errors import ConfigError
from sb3_neppo.objective import log_sum_exp
from sb3_neppo.potentials import Potential
from sb3_neppo.solvers.base import AgentPolicy, FEstimate, JointPolicy, Solvers, estimate_f

UNKNOWN = object()  # a Solve's regret not read off its policy yet
Key = tuple[int, int, int]  # (iteration, direction, sign): sign ±1 a branch w ± δu_j, 0 the iterate w itself
Warm = tuple[JointPolicy | None, Mapping[str, AgentPolicy]]  # π^Φ and the best responses a solve starts from


@dataclass
class Job:
    """A solve to do: at ``w``, with the solvers seeded ``seed`` (None: not reseeded, for exact solvers); ``replay``:
    play the warm start's best responses again, frozen, instead of training them (``br_every`` with the regret-weights
    step; a branch replays them by its key)."""

    key: Key
    w: np.ndarray
    seed: int | None = None
    replay: bool = False


@dataclass
class Solve:
    """Everything one solve of steps 2-4 found (see the module doc). ``policy`` is None where only the numbers are
    known: a stored trial read back on resume, or a job solved elsewhere whose policies were not asked for.

    The exact regret is read off the policy (``regret_of``: the bundle's :meth:`~sb3_neppo.solvers.base.Solvers.regret`)
    the first time it is asked for, not on every solve: most branches are never logged or recorded."""

    key: Key
    w: np.ndarray
    objective: float
    F: FEstimate
    env_steps: int = 0
    policy: JointPolicy | None = None
    best_responses: dict[str, AgentPolicy] | None = None
    stored: bool = False  # already a trial of the run's study (a job of the study's queue is its own trial)
    known_regret: Any = field(default=UNKNOWN, repr=False)
    regret_of: Callable[[JointPolicy], np.ndarray | None] | None = field(default=None, repr=False, compare=False)

    @property
    def regret(self) -> np.ndarray | None:
        """Exact per-agent regret of π^Φ where the game has one (None in a Markov game)."""
        if self.known_regret is UNKNOWN:
            known = self.regret_of is not None and self.policy is not None
            self.known_regret = self.regret_of(self.policy) if known else None
        return self.known_regret

    def numbers(self) -> Solve:
        """This record without its policies (what travels between processes unless they are asked for)."""
        return Solve(self.key, self.w, self.objective, self.F, self.env_steps, stored=self.stored, known_regret=self.regret)

    def attrs(self) -> dict[str, Any]:
        """The record as a trial's user attributes (plain values; the trial's value is L_β)."""
        iteration, direction, sign = self.key
        out = {"iteration": iteration, "direction": direction, "sign": sign, "w": self.w, "F": self.F.mean}
        out.update(F_se=self.F.se, regret=self.regret, env_steps=self.env_steps, gain=self.F.gain, gain_se=self.F.gain_se)
        out.update(F_samples=self.F.samples)
        return plain(out)

    @classmethod
    def from_trial(cls, trial: Any) -> Solve:
        """The record a completed trial holds (numbers only)."""
        attrs = trial.user_attrs
        array = lambda name: None if attrs.get(name) is None else np.asarray(attrs[name], dtype=float)  # noqa: E731
        key = (int(attrs["iteration"]), int(attrs["direction"]), int(attrs["sign"]))
        F = FEstimate(array("F"), array("F_se"), array("gain"), array("gain_se"), array("F_samples"))
        steps = int(attrs.get("env_steps", 0))
        return cls(key, array("w"), float(trial.value), F, steps, stored=True, known_regret=array("regret"))


def plain(value: Any) -> Any:
    """JSON-able copy (numpy scalars and arrays become Python numbers and lists): what a study stores."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class BranchSolver:
    """Steps 2-4 of Algorithm 1 with ``solvers`` for the potential ``potential``'s family: at each w, the cooperative
    solve, every agent's best response and the evaluation, F_i and L_β (temperature ``beta``).

    :param lr: the run's step size, named in the line that reports a non-finite L_β.
    """

    def __init__(self, solvers: Solvers, potential: Potential, agents: list[str], beta: float, lr: float):
        self.solvers, self.agents, self.beta, self.lr = solvers, list(agents), float(beta), lr
        self.potential = copy.deepcopy(potential)  # evaluates the branches w ± δu without touching the model's w

    def solve(self, job: Job, warm: Warm) -> Solve:
        """Solve at ``job.w`` from the warm start ``warm``; the record has π^Φ and the best responses."""
        before = self.solvers.env_steps
        if job.seed is not None:
            self.solvers.reseed(job.seed)
        policy_start, best_response_starts = warm
        phi = self.potential
        phi.set_flat_params(job.w)
        policy = self.solvers.cooperative.solve(phi, warm_start=policy_start)
        iteration, _, sign = job.key
        between = iteration % self.solvers.best_response_every != 0
        reuse = job.replay or (sign != 0 and between)  # br_every: play the last ones again
        best_responses = {
            agent: (
                best_response_starts[agent]
                if reuse and agent in best_response_starts
                else self.solvers.best_response.solve(agent, policy, warm_start=best_response_starts.get(agent))
            )
            for agent in self.agents
        }
        at_policy, at_deviations = self.solvers.evaluator.evaluate(phi, policy, best_responses)
        F = estimate_f(self.agents, at_policy, at_deviations)
        objective = log_sum_exp(F.mean, self.beta)
        if not (np.isfinite(objective) and np.isfinite(F.se).all()):
            raise ConfigError(
                f"L_beta is not finite at iteration {job.key[0]} (F = {F.mean.tolist()}, |w| = "
                f"{np.linalg.norm(job.w):.3g}): the potential's parameters or the game's payoffs are out of range; lower "
                f"lr (now {self.lr}) or clip the step (max_grad_norm), or rescale the rewards"
            )
        steps = self.solvers.env_steps - before
        return Solve(job.key, np.array(job.w), objective, F, steps, policy, best_responses, regret_of=self.solvers.regret)

    def describe(self, w: np.ndarray) -> dict[str, Any]:
        """The potential at ``w`` in words (:meth:`~sb3_neppo.potentials.Potential.describe`)."""
        self.potential.set_flat_params(w)
        return self.potential.describe()

    def spec(self) -> BranchSpec:
        return BranchSpec(self.solvers.factory(), copy.deepcopy(self.potential), self.agents, self.beta, self.lr)


@dataclass
class BranchSpec:
    """What a worker process rebuilds a :class:`BranchSolver` from: the bundle's factory and plain settings."""

    solvers: Callable[[], Solvers]
    potential: Potential
    agents: list[str]
    beta: float
    lr: float

    def build(self) -> BranchSolver:
        return BranchSolver(self.solvers(), self.potential, self.agents, self.beta, self.lr)
