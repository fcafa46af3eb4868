"""NePPO (Near-Potential Policy Optimization): Algorithm 1 of arXiv 2603.06977, composed from pluggable parts.

Read :meth:`NePPO.learn` top to bottom: it is Algorithm 1. The inner solvers sit behind the three slots of
:class:`~sb3_neppo.solvers.base.Solvers`; the potential is any :class:`~sb3_neppo.potentials.Potential`; the outer
step is :class:`~sb3_neppo.zeroth_order.ZerothOrderOptimizer`.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from pettingzoo import ParallelEnv
from tqdm.auto import tqdm

from sb3_neppo import __version__
from sb3_neppo.config import NePPOConfig, check_seed
from sb3_neppo.defaults import PROBE_STEPS, episode_length, neppo_settings
from sb3_neppo.envs.checks import check_parallel_env
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.matrix import MatrixGameEnv, action_from_strategy, strategy_from_action
from sb3_neppo.envs.registry import check_importable, make_env
from sb3_neppo.errors import ConfigError, first_line
from sb3_neppo.io import atomic_open
from sb3_neppo.objective import log_sum_exp
from sb3_neppo.potentials import POTENTIALS, Potential, build_potential, potential_name
from sb3_neppo.solvers.base import AgentPolicy, FEstimate, JointPolicy, Solvers, estimate_f
from sb3_neppo.solvers.exact import exact_solvers
from sb3_neppo.solvers.sb3 import PPOCooperativeSolver, sb3_solvers
from sb3_neppo.workers import BranchPool
from sb3_neppo.zeroth_order import ZerothOrderOptimizer, sample_directions

if TYPE_CHECKING:
    from sb3_neppo.distributed import JobQueue


@dataclass
class Branch:
    """Everything Algorithm 1 computes at one parameter vector w: π^Φ, the best responses, F and L_β."""

    w: np.ndarray
    policy: JointPolicy
    best_responses: dict[str, AgentPolicy]
    F: FEstimate
    objective: float


@dataclass
class IterationLog:
    """One row of the per-iteration log, at the iterate w after the step."""

    iteration: int
    w: np.ndarray
    objective: float
    F: np.ndarray
    F_se: np.ndarray
    regret: np.ndarray | None
    grad_norm: float
    step_size: float
    env_steps: int


Callback = Callable[[IterationLog, "NePPO"], "bool | None"]


class Default:
    """The type of :data:`DEFAULT`: "not given, use the run's default" where None means something (no clipping)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = Default()


class Recorder(Protocol):
    """Where NePPO records its solves (see :class:`sb3_neppo.study.StudyRecorder`): keyed (iteration, direction, sign)."""

    def lookup(self, key: tuple[int, int, int]) -> tuple[float, int] | None: ...

    def record(self, key: tuple[int, int, int], w, objective: float, F, F_se, regret, env_steps: int) -> None: ...


class NePPO:
    """Find an approximate Nash equilibrium by learning a potential whose cooperative solution has low regret.

    Every hyperparameter left out (None) gets the value the command line would give this game (:mod:`sb3_neppo.defaults`:
    the paper's Markov-game settings sized from the env, the ``normal-form`` settings for a normal-form game, the env
    id's entry in ``hyperparams/neppo.yml``); mappings given (``solver_kwargs``) merge into those key by key. So
    ``NePPO("mpe2.simple_tag_v3", seed=0)`` is ``python -m sb3_neppo.train --env mpe2.simple_tag_v3 --seed 0``.

    :param env: a PettingZoo ``ParallelEnv`` or an env id (see :func:`sb3_neppo.envs.make_env`).
    :param potential: a :class:`Potential` instance, or a name (``auto``, ``quadratic``, ``convex``, ``state_mixer``,
        ``package.module:Class``).
    :param solver: ``auto`` (exact for normal-form games, sb3 otherwise), ``exact``, ``sb3`` or a :class:`Solvers`
        instance (the three inner slots).
    :param solver_kwargs: settings of the sb3 solvers (:class:`~sb3_neppo.solvers.sb3.SB3SolverConfig`).
    :param delta, lr, lr_schedule, n_directions, max_grad_norm: the zeroth-order step (see ``zeroth_order``).
    :param beta: temperature of L_β.
    :param iterate_solve: ``every`` (solve at each new iterate: it is logged and warm-starts the next iteration) or
        ``final`` (the paper's 2m solves per iteration: the next one warm-starts from the branch with the lowest L_β;
        the final iterate is solved once when ``learn`` ends).
    :param keep_best: return the iterate with the lowest exact L_β instead of the last (exact solvers only).
    :param n_starts: also descend from the best of ``n_starts - 1`` other starts and return the iterate of lowest exact
        max regret of both descents (exact solvers, with ``keep_best``; see :meth:`_screen_starts`).
    :param potential_kwargs: constructor arguments when ``potential`` is a name.
    :param env_kwargs: arguments of the env when ``env`` is an id.
    :param seed: seed of everything random in the run (drawn and recorded when None).
    :param verbose: 0 silent, 1 one line per iteration.
    :param n_workers: processes that solve the branches of an iteration side by side (1: in this process). The numbers
        are the same for any number of workers.
    :param hyperparams_file: another hyperparameter file than ``hyperparams/neppo.yml`` (the command line's ``-yaml``).
    :param config: complete settings (a :class:`~sb3_neppo.config.NePPOConfig`), used as they are, instead of the
        hyperparameter arguments.
    """

    def __init__(
        self,
        env: ParallelEnv | str,
        potential: Potential | str | None = None,
        solver: Solvers | str | None = None,
        *,
        solver_kwargs: dict | None = None,
        delta: float | None = None,
        lr: float | None = None,
        lr_schedule: str | None = None,
        n_directions: int | None = None,
        beta: float | None = None,
        max_grad_norm: float | None | Default = DEFAULT,
        iterate_solve: str | None = None,
        keep_best: bool | None = None,
        n_starts: int | None = None,
        potential_kwargs: dict | None = None,
        env_kwargs: dict | None = None,
        seed: int | None = None,
        verbose: int = 0,
        n_workers: int = 1,
        hyperparams_file: str | os.PathLike | None = None,
        config: NePPOConfig | None = None,
    ):
        self.env_id, self.env_kwargs, self.env = _resolve_env(env, env_kwargs)
        self.agents: list[str] = list(self.env.possible_agents)
        self.game = self.env.unwrapped.game if isinstance(self.env.unwrapped, MatrixGameEnv) else None
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)  # directions
        self.solver_rng = np.random.default_rng([self.seed, 1])  # seeds of the sampled solvers, one per direction
        self.predict_rng = np.random.default_rng([self.seed, 2])
        self.verbose = verbose
        given = dict(
            potential=potential if potential is None or isinstance(potential, str) else potential_name(potential),
            potential_kwargs=potential_kwargs,
            solver=solver if solver is None or isinstance(solver, str) else type(solver).__name__,
            solver_kwargs=solver_kwargs,
            delta=delta,
            lr=lr,
            lr_schedule=lr_schedule,
            n_directions=n_directions,
            beta=beta,
            iterate_solve=iterate_solve,
            keep_best=keep_best,
            n_starts=n_starts,
        )
        given = {k: v for k, v in given.items() if v is not None}
        if max_grad_norm is not DEFAULT:
            given["max_grad_norm"] = max_grad_norm
        if config is not None and (set(given) - {"potential", "solver"} or hyperparams_file is not None):
            raise ConfigError(f"give either config or hyperparameters ({', '.join(sorted(given))}), not both")
        if config is None:  # the settings the command line would use: defaults, hyperparameter file, these arguments
            config = NePPOConfig.from_dict(neppo_settings(self.env, self.env_id, given, hyperparams_file))
        self.config = config
        self.solvers = self._make_solvers(config.solver if solver is None else solver)
        if config.keep_best and config.iterate_solve == "final":
            raise ConfigError("keep_best selects among solved iterates; use it with iterate_solve: every")
        if config.n_starts > 1 and not (self.solvers.exact and config.keep_best):
            raise ConfigError(
                "n_starts > 1 returns the best exact certificate over several starts: it needs the exact solvers and "
                "keep_best: true (-params n_starts:1 for one start)"
            )
        if config.keep_best and not self.solvers.exact:
            raise ConfigError(
                "keep_best needs exact solvers: the minimum of noisy L_β estimates is biased low (-params keep_best:false)"
            )
        self.potential = self._make_potential(config.potential if potential is None else potential)
        StepEncoder(self.env).check_potential(self.potential)  # one clear line now, not a traceback mid-training
        if self.solvers.exact:
            self.potential.double()  # exact certificates: no float32 rounding in Φ
        self.optimizer = ZerothOrderOptimizer(
            delta=config.delta,
            lr=config.lr,
            lr_schedule=config.lr_schedule,
            n_directions=config.n_directions,
            max_grad_norm=config.max_grad_norm,
            project=self.potential.project_flat,
        )
        self._scratch = copy.deepcopy(self.potential)  # evaluates the branches w ± δu without touching w
        self.policy: JointPolicy | None = None  # π^Φ at the current w: the warm start of both branches
        self.best_responses: dict[str, AgentPolicy] = {}
        self.num_iterations = 0
        self.wall_time_s = 0.0
        self.last_branch: Branch | None = None  # the current iterate
        self.best: tuple[int, Branch] | None = None  # (iteration, branch) of the lowest _certificate, when keep_best
        self.best_start = 0  # which start's descent it came from (0: the given start)
        self._best_key: tuple[float, ...] = ()  # _certificate(self.best[1]), kept rather than recomputed
        self._starts: list[np.ndarray] = []  # the other starts' w (n_starts > 1, exact solvers)
        self._screened = self.config.n_starts == 1
        self._on_solve: Callable[[], None] | None = None  # progress-bar hook while learn() runs
        self.n_workers = int(n_workers)
        if self.n_workers < 1:
            raise ConfigError(f"n_workers must be >= 1 (got {n_workers})")
        if self.n_workers > 1 and ((solver is not None and not isinstance(solver, str)) or self.env_id is None):
            raise ConfigError("n_workers > 1 needs an env id and a named solver (workers rebuild the model from them)")
        self._pool: BranchPool | None = None  # started by learn() when n_workers > 1
        self.recorder: Recorder | None = None  # records every solve (sb3_neppo.study.StudyRecorder) when a study drives
        self.queue: JobQueue | None = None  # branches go through the study's job queue (sb3_neppo.distributed) when set
        self._timesteps_offset = 0  # env steps spent before a load, or by solves a recorder already had
        self._episode_length: int | None = None  # the env's, found when first needed (sb3_neppo.defaults)

    # --- construction ---------------------------------------------------------------------------------------------------

    def _make_solvers(self, solver: Solvers | str) -> Solvers:
        if isinstance(solver, Solvers):
            return solver
        if solver not in ("auto", "exact", "sb3"):
            raise ConfigError(f"unknown solver '{solver}': use auto, exact or sb3")
        if solver == "exact" and self.game is None:
            raise ConfigError(f"solver 'exact' needs a normal-form game; '{self.env_id}' is not one (use sb3)")
        if solver == "sb3" or self.game is None:
            return sb3_solvers(self._env_fn(), self.config.solver_kwargs, seed=self.seed)
        if self.config.solver_kwargs:
            raise ConfigError("solver_kwargs are settings of the sb3 solver; drop them or set solver: sb3")
        self.env.reset(seed=self.seed)
        return exact_solvers(self.game, self.env.state(), seed=self.seed)

    def _env_fn(self) -> Callable[[], ParallelEnv]:
        """Builds fresh copies of the env (from its id, else by copying the instance)."""
        if self.env_id is not None:
            return lambda: make_env(self.env_id, self.env_kwargs)
        return lambda: copy.deepcopy(self.env)

    def _make_potential(self, potential: Potential | str) -> Potential:
        if isinstance(potential, Potential):
            return potential
        name = potential
        if name == "auto":
            name = "quadratic" if self.game is not None else "state_mixer"
        return build_potential(
            name,
            n_agents=len(self.agents),
            state_dim=StepEncoder(self.env).state_dim,  # env.state(), or the observations concatenated
            n_actions=self.game.n_actions if self.game is not None else None,
            **self.config.potential_kwargs,
        )

    # --- Algorithm 1 ----------------------------------------------------------------------------------------------------

    def solve_at(self, w: np.ndarray) -> Branch:
        """Steps 2-4 of Algorithm 1 at one parameter vector: cooperative solve, best responses, F_i and L_β."""
        phi = self._scratch
        phi.set_flat_params(w)
        policy = self.solvers.cooperative.solve(phi, warm_start=self.policy)
        best_responses = {
            agent: self.solvers.best_response.solve(agent, policy, warm_start=self.best_responses.get(agent))
            for agent in self.agents
        }
        at_policy, at_deviations = self.solvers.evaluator.evaluate(phi, policy, best_responses)
        F = estimate_f(self.agents, at_policy, at_deviations)
        objective = log_sum_exp(F.mean, self.config.beta)
        if not (np.isfinite(objective) and np.isfinite(F.se).all()):
            raise ConfigError(
                f"L_beta is not finite at iteration {self.num_iterations} (F = {F.mean.tolist()}, |w| = "
                f"{np.linalg.norm(w):.3g}): the potential's parameters or the game's payoffs are out of range; lower lr "
                f"(now {self.config.lr}) or clip the step (max_grad_norm), or rescale the rewards"
            )
        return Branch(np.array(w), policy, best_responses, F, objective)

    def learn(
        self,
        n_iterations: int | None = None,
        callback: Callback | Sequence[Callback] | None = None,
        progress_bar: bool = False,
        total_timesteps: int | None = None,
    ) -> NePPO:
        """Run outer iterations of Algorithm 1, continuing from where the last call stopped.

        :param n_iterations: iterations to run (None: until ``total_timesteps`` is spent or, without a budget, the
            settings' ``n_iterations``).
        :param callback: called as ``callback(log, model)`` after each iteration; returning False stops training.
        :param progress_bar: show a progress bar (of iterations, or of the env-step budget) with L_β and max regret.
        :param total_timesteps: env-step budget of this call with everything counted (cooperative solves, best
            responses, evaluation rollouts), in env steps, not SB3's agent-steps. An iteration starts only if it fits,
            with the final solve (``iterate_solve: final``), by its planned cost (:meth:`iteration_cost`, an upper
            bound), so the budget holds; a budget smaller than one iteration is one clear line.
        """
        if n_iterations is None and total_timesteps is None:
            n_iterations = self.config.n_iterations  # what the settings say, as the command line runs without -n
        for name, value in (("n_iterations", n_iterations), ("total_timesteps", total_timesteps)):
            if value is not None and (int(value) != value or value < 1):
                raise ConfigError(f"{name} must be an integer >= 1 (got {value})")
        if total_timesteps is not None and self.solvers.exact:
            raise ConfigError("an env-step budget needs the sampled (sb3) solvers; the exact ones take no env steps")
        callbacks = [] if callback is None else [callback] if callable(callback) else list(callback)
        budget = None if total_timesteps is None else int(total_timesteps)
        cost = self.iteration_cost()
        if budget is not None:
            self.check_budget(budget)
        if self.verbose:
            tqdm.write(f"NePPO on {self.env_id or type(self.env.unwrapped).__name__}: {self.cost_text(cost, budget)}")
        bar = tqdm(
            total=budget if budget is not None else int(n_iterations),
            desc="NePPO",
            unit="env-step" if budget is not None else "it",
            disable=not progress_bar,
            dynamic_ncols=True,
        )
        start, start_steps = time.perf_counter(), self.num_timesteps
        if budget is not None:  # move the bar after every solve: an iteration of a Markov game can take minutes
            self._on_solve = lambda: bar.update(min(self.num_timesteps - start_steps, budget) - bar.n)
        try:
            if self.policy is None and self.config.iterate_solve == "every":
                self.solve_iterate()
            if not self._screened:
                self._screen_starts()
            done, need = 0, cost["iteration"] + (cost["solve"] if self.config.iterate_solve == "final" else 0)
            while n_iterations is None or done < n_iterations:
                if budget is not None and done and self.num_timesteps - start_steps + need > budget:
                    break  # the next iteration and the final solve would not fit (planned costs: a resume decides alike)
                log = self.step()
                done += 1
                spent = self.num_timesteps - start_steps
                bar.update(min(spent, budget) - bar.n if budget is not None else 1)
                bar.set_postfix(L=f"{log.objective:.4g}", max_regret="-" if log.regret is None else f"{log.regret.max():.4g}")
                if self.verbose:
                    tqdm.write(self._format(log))
                if any(cb(log, self) is False for cb in callbacks):
                    break
            self.solve_iterate()  # 6. π^Φ at the final w (already solved when iterate_solve is every)
        except BaseException:
            self.close()  # a worker may be mid-solve: stop them all
            raise
        finally:
            self._on_solve = None
            bar.close()
            self.wall_time_s += time.perf_counter() - start
        return self

    def iteration_cost(self) -> dict[str, int]:
        """The env steps one outer iteration is planned to take (all 0 with the exact solvers): ``solve`` (one solve:
        ``cooperative`` K1 × n_envs × n_steps, ``best_responses`` N × K2 × n_envs × n_steps, ``evaluation``
        eval_episodes × (N + 1) joint policies × the episode length, an upper bound where episodes end early),
        ``solves`` per iteration (2 per direction, and one at the iterate with ``iterate_solve: every``) and
        ``iteration``."""
        solves = 2 * self.config.n_directions + (self.config.iterate_solve == "every")
        if self.solvers.exact or not isinstance(self.solvers.cooperative, PPOCooperativeSolver):
            return {"cooperative": 0, "best_responses": 0, "evaluation": 0, "solve": 0, "solves": solves, "iteration": 0}
        kwargs, n = self.config.solver_kwargs, len(self.agents)
        n_steps = int(kwargs["ppo"].get("n_steps", 2048))
        br_steps = int(kwargs["br_ppo"].get("n_steps", n_steps))
        if self._episode_length is None:
            self._episode_length = episode_length(self.env) or PROBE_STEPS
        parts = {
            "cooperative": kwargs["coop_updates"] * kwargs["n_envs"] * n_steps,
            "best_responses": n * kwargs["br_updates"] * kwargs["n_envs"] * br_steps,
            "evaluation": kwargs["eval_episodes"] * (n + 1) * self._episode_length,
        }
        solve = sum(parts.values())
        return {**parts, "solve": solve, "solves": solves, "iteration": solves * solve}

    def check_budget(self, total_timesteps: int) -> None:
        """One line if ``total_timesteps`` env steps cannot pay for one outer iteration (and the solve of the starting
        point or the final iterate that goes with it), saying what would."""
        cost = self.iteration_cost()
        first = cost["iteration"] + (cost["solve"] if self.policy is None or self.config.iterate_solve == "final" else 0)
        if total_timesteps >= first:
            return
        hint = "fewer env copies, evaluation episodes or directions"
        if cost["evaluation"] > cost["cooperative"] + cost["best_responses"]:
            hint = (
                f"shorter episodes (evaluating a solve plays {cost['evaluation']:,} steps: episodes of "
                f"{self._episode_length:,} steps), or {hint}"
            )
        raise ConfigError(
            f"a budget of {total_timesteps:,} env steps is less than one outer iteration of this run ({first:,} env steps: "
            f"{self.cost_text(cost)}); give a budget of at least {first:,}, or {hint}"
        )

    @staticmethod
    def cost_text(cost: dict[str, int], budget: int | None = None) -> str:
        """:meth:`iteration_cost` in words (and what a budget allows)."""
        if not cost["iteration"]:
            return "exact solvers, no env steps"
        text = (
            f"one outer iteration takes about {cost['iteration']:,} env steps ({cost['solves']} solves of "
            f"{cost['cooperative']:,} cooperative + {cost['best_responses']:,} best-response + "
            f"{cost['evaluation']:,} evaluation)"
        )
        if budget is not None:
            iterations = max((budget - cost["solve"]) // cost["iteration"], 0)
            text += f"; a budget of {budget:,} allows about {iterations} iteration{'s' if iterations != 1 else ''}"
        return text

    def step(self) -> IterationLog:
        """One outer iteration of Algorithm 1 (steps 1-5) from the current w and warm start; returns its log."""
        t = self.num_iterations
        w = self.potential.get_flat_params()
        # 1. directions u_j on the unit sphere; the branches w ± δu_j
        directions = sample_directions(self.rng, self.optimizer.n_directions, w.size)
        w_plus, w_minus = self.optimizer.branches(w, directions)
        # 2-4. per branch, from the same warm start (and, for sampled solvers, the same seeds for w ± δu_j):
        # cooperative solve, best responses, F_i, L_β
        seeds = [self._solver_seed() for _ in directions]
        m = len(directions)
        keys = [(t, j, 1) for j in range(m)] + [(t, j, -1) for j in range(m)]
        ws, seeds = [*w_plus, *w_minus], seeds + seeds
        losses, branches = self._solve_branches(keys, ws, seeds)
        loss_plus, loss_minus = losses[:m], losses[m:]
        # 5. g = dim(w)/(2δ) · mean_j (L⁺_j - L⁻_j) u_j, clipped; w ← Proj(w - η_t g)
        with np.errstate(all="ignore"):  # an overflowing step is reported below, in one line
            w_next, g = self.optimizer.step(w, t, loss_plus, loss_minus, directions)
        if not np.isfinite(w_next).all():
            raise ConfigError(
                f"the step of iteration {t} took w out of range (|g| = {np.linalg.norm(g):.3g}, step size "
                f"{self.optimizer.step_size(t):.3g}): lower lr (now {self.config.lr}) or clip the step (max_grad_norm)"
            )
        self.potential.set_flat_params(w_next)
        self.num_iterations += 1
        self._step_other_starts(t, directions)
        if self.config.iterate_solve == "every":  # π^Φ at the new w: logged, and the next warm start
            self._adopt(self._evaluate((self.num_iterations, 0, 0), w_next, self._solver_seed()))
        else:  # the paper's cost: the next iteration starts from the branch with the lowest L_β
            k = int(np.argmin(losses))
            self._adopt(branches[k] if branches[k] is not None else self._replay(keys[k], ws[k], seeds[k]))
        return self._iteration_log(float(np.linalg.norm(g)), self.optimizer.step_size(t))

    # --- several starts (exact solvers) ---------------------------------------------------------------------------------

    def _screen_starts(self) -> None:
        """With ``n_starts > 1``: besides the given start, descend from the best of ``n_starts - 1`` candidate starts
        (the potential's :meth:`~sb3_neppo.potentials.Potential.start_points`: for the quadratic potential the pure
        profiles, lowest max regret first, then random targets), chosen as results are (:meth:`_certificate`: the exact
        max regret, then L_β). A start costs one solve to screen
        and its descent one more of each iteration's solves; a descent from uniform targets can stall at a mixed
        profile of a coordination game while a pure equilibrium has F = 0. The candidates come from their own random
        stream, so the given start's descent is exactly the one-start run's."""
        self._screened = True
        rng = np.random.default_rng([self.seed, 3])
        candidates = self.potential.start_points(self.config.n_starts - 1, rng, self.game)
        if not candidates:
            return
        solved = [self.solve_at(np.asarray(w, dtype=float)) for w in candidates]
        best = min(solved, key=self._certificate)
        self._starts = [best.w]
        self._consider(best, start=1)

    def _step_other_starts(self, t: int, directions: np.ndarray) -> None:
        """Step 5 for the other starts' w, on the same directions (their branches are exact solves, not trials). Once the
        result is an exact equilibrium (max regret 0) no other start can do better, and they stop."""
        if self._starts and len(self._best_key) == 2 and self._best_key[0] <= 0.0:
            return
        for k, w in enumerate(self._starts):
            w_plus, w_minus = self.optimizer.branches(w, directions)
            loss_plus = [self.solve_at(x).objective for x in w_plus]
            loss_minus = [self.solve_at(x).objective for x in w_minus]
            with np.errstate(all="ignore"):
                self._starts[k], _ = self.optimizer.step(w, t, loss_plus, loss_minus, directions)
            self._consider(self.solve_at(self._starts[k]), start=k + 1)

    def _certificate(self, branch: Branch) -> tuple[float, ...]:
        """What ranks solutions for ``keep_best``: the exact L_β; with several starts (``n_starts > 1``), the exact max
        regret first (a normal-form game with exact solvers knows it exactly, and F only bounds it: at a pure
        equilibrium whose deviations lose little, F is the potential's own loss and can exceed the regret of a mixed
        profile with a lower L_β), then L_β."""
        regret = self.exact_regret(branch) if self.config.n_starts > 1 else None
        return (branch.objective,) if regret is None else (float(regret.max()), branch.objective)

    def _consider(self, branch: Branch, start: int) -> None:
        """Keep ``branch`` (of start ``start``) as the result if its exact certificate is the lowest yet."""
        key = self._certificate(branch)
        if self.best is None or key < self._best_key:
            self.best, self.best_start, self._best_key = (self.num_iterations, branch), start, key

    def close(self) -> None:
        """Stop the worker processes (``n_workers > 1``); a later ``learn`` starts new ones."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _solver_seed(self) -> int:
        return int(self.solver_rng.integers(2**31 - 1))

    def solve_iterate(self) -> Branch:
        """Solve at the current w (π^Φ there, its best responses and F) unless that is the current solution already.

        ``learn`` calls it; with ``iterate_solve: final`` it is the one solve at the final iterate."""
        w = self.potential.get_flat_params()
        if self.last_branch is None or not np.array_equal(self.last_branch.w, w):
            self._adopt(self._evaluate((self.num_iterations, 0, 0), w, self._solver_seed()))
        return self.last_branch

    def _recorded(self, key: tuple[int, int, int]) -> bool:
        """Whether the solve ``key`` is a trial of the recorder's study: every solve with sampled solvers (a resumed run
        reads back the ones that completed); with exact ones only the solve at each iterate (``sign`` 0), since
        branches cost microseconds to redo and a trial per branch would cost a journal write each (about 1 ms)."""
        return self.recorder is not None and (not self.solvers.exact or key[2] == 0)

    def _evaluate(self, key: tuple[int, int, int], w: np.ndarray, seed: int) -> Branch:
        """Solve at ``w`` with ``seed``; a recorder, if any, gets the solve as a trial keyed (iteration, direction, sign)."""
        before = self.num_timesteps
        self.solvers.reseed(seed)
        branch = self.solve_at(w)
        if self._recorded(key) and self.recorder.lookup(key) is None:
            steps = self.num_timesteps - before
            self.recorder.record(key, w, branch.objective, branch.F.mean, branch.F.se, self.exact_regret(branch), steps)
        if self._on_solve is not None:
            self._on_solve()
        return branch

    def _replay(self, key: tuple[int, int, int], w: np.ndarray, seed: int) -> Branch:
        """Solve again a branch that a resumed run knows only as a stored trial, for its policy: the same warm start and
        seed give the same policy. Its env steps were counted when it was first solved, so they are not again."""
        before = self.solvers.env_steps
        self.solvers.reseed(seed)
        branch = self.solve_at(w)
        self._timesteps_offset -= self.solvers.env_steps - before
        return branch

    def _solve_branches(
        self, keys: list[tuple[int, int, int]], ws: list[np.ndarray], seeds: list[int]
    ) -> tuple[list[float], list[Branch | None]]:
        """L_β of branches and, with ``iterate_solve: final``, the branches themselves (the next warm start is one).

        A recorder's stored value is used where that solve already completed (a resumed run: its branch is None);
        the others are solved through the study's job queue (when ``queue`` is set: workers anywhere may take some), in
        the ``n_workers`` processes, or here."""
        keep = self.config.iterate_solve == "final"
        losses: list[float] = [0.0] * len(keys)
        branches: list[Branch | None] = [None] * len(keys)
        pending = []
        for k, key in enumerate(keys):
            done = self.recorder.lookup(key) if self._recorded(key) else None
            if done is not None:
                losses[k] = done[0]
                self._timesteps_offset += done[1]  # those env steps were spent, before the restart
            else:
                pending.append(k)
        jobs = [(keys[k], ws[k], seeds[k]) for k in pending]
        if not jobs:
            return losses, branches
        if self.queue is not None:  # through the study, so that workers on other machines can take some
            own = self.solvers.env_steps
            results = self.queue.run(self, jobs, self._branch_pool() if self.n_workers > 1 else None, keep)
            # the env steps of the jobs solved in this very process are counted by its solvers already
            self._timesteps_offset += sum(r.env_steps for r in results) - (self.solvers.env_steps - own)
        elif self.n_workers > 1 and len(jobs) > 1:
            results = self._branch_pool().solve([(w, seed) for _, w, seed in jobs], self.warm_state(), keep)
            for (key, w, _), r in zip(jobs, results):
                self._timesteps_offset += r.env_steps
                if self._recorded(key):
                    self.recorder.record(key, w, r.objective, r.F, r.F_se, r.regret, r.env_steps)
        else:
            results = [self._evaluate(*job) for job in jobs]  # moves the progress bar itself
        for k, r in zip(pending, results):
            losses[k] = r.objective
            if isinstance(r, Branch):
                branches[k] = r
            elif r.state is not None:
                F = FEstimate(r.F, r.F_se, r.gain, r.gain_se)
                branches[k] = Branch(np.array(ws[k]), *self._from_state(r.state), F, r.objective)
        if self._on_solve is not None:
            self._on_solve()
        return losses, branches

    def _branch_pool(self) -> BranchPool:
        if self._pool is None:
            self._pool = BranchPool(self._worker_spec(), self.n_workers)
        return self._pool

    def _worker_spec(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model in a worker process."""
        spec = {"env": self.env_id, "potential": copy.deepcopy(self.potential), "env_kwargs": self.env_kwargs}
        return {**spec, "seed": self.seed, "config": self.config}

    def warm_state(self) -> tuple:
        """π^Φ and the best responses in a form another process can load (:meth:`set_warm_state`)."""
        return self.branch_state(self.policy, self.best_responses)

    def branch_state(self, policy: JointPolicy | None, best_responses: dict[str, AgentPolicy]) -> tuple:
        """A joint policy and best responses as plain data (state dicts; the strategies themselves when exact)."""
        if policy is None or self.solvers.exact:
            return policy, best_responses
        shared = next(iter(policy.policies.values())).state_dict()
        return shared, {a: p.state_dict() for a, p in best_responses.items()}

    def _from_state(self, state: tuple) -> tuple[JointPolicy | None, dict[str, AgentPolicy]]:
        policy, best_responses = state
        if policy is None or self.solvers.exact:
            return policy, dict(best_responses)
        cooperative = self.solvers.cooperative
        return cooperative.profile_from_state(policy), {
            a: cooperative.profile_from_state(sd).policies[a] for a, sd in best_responses.items()
        }

    def set_warm_state(self, state: tuple) -> None:
        """Adopt π^Φ and best responses from :meth:`warm_state` as the warm start of the next solves."""
        self.policy, self.best_responses = self._from_state(state)

    # --- results --------------------------------------------------------------------------------------------------------

    def _adopt(self, branch: Branch) -> None:
        self.last_branch = branch
        self.policy, self.best_responses = branch.policy, branch.best_responses
        if self.config.keep_best:
            self._consider(branch, start=0)

    @property
    def result(self) -> Branch:
        """The returned solution: the last iterate, or the best-certified one with ``keep_best``."""
        if self.last_branch is None:
            raise RuntimeError("no solution yet: call learn() first")
        return self.best[1] if self.best is not None else self.last_branch

    @property
    def result_iteration(self) -> int:
        return self.best[0] if self.best is not None else self.num_iterations

    def _iteration_log(self, grad_norm: float, step_size: float) -> IterationLog:
        branch = self.last_branch
        return IterationLog(
            iteration=self.num_iterations,
            w=branch.w,
            objective=branch.objective,
            F=branch.F.mean,
            F_se=branch.F.se,
            regret=self.exact_regret(branch),
            grad_norm=grad_norm,
            step_size=step_size,
            env_steps=self.num_timesteps,
        )

    def _format(self, log: IterationLog) -> str:
        regret = "" if log.regret is None else f" max_regret={log.regret.max():.5f}"
        w = f"w={np.round(log.w, 4).tolist()}" if log.w.size <= 8 else f"|w|={np.linalg.norm(log.w):.4g}"
        steps = f" env_steps={log.env_steps}" if log.env_steps else ""
        return f"iter {log.iteration:5d} L={log.objective:.5f} max_F={log.F.max():.5f}{regret} {w}{steps}"

    @property
    def num_timesteps(self) -> int:
        """Env steps spent so far by every solver (0 with the exact solvers)."""
        return self._timesteps_offset + self.solvers.env_steps

    def exact_strategies(self, branch: Branch) -> list[np.ndarray] | None:
        """The mixed strategies of a branch's π^Φ in a normal-form game (None in Markov games).

        With the exact solvers they are the solution itself; with the sb3 solvers they are read off the learned policy:
        its (mean) action in mixed mode, its action probabilities in pure mode (one-hot of the most likely action when
        the solvers play deterministically).
        """
        if self.game is None:
            return None
        if self.solvers.exact:
            return [np.asarray(x) for x in branch.policy]
        observations, _ = self.env.reset(seed=self.seed)
        if self.env.unwrapped.mixed:
            actions = branch.policy.act(observations, deterministic=True)
            return [strategy_from_action(actions[a], k) for a, k in zip(self.agents, self.game.n_actions)]
        deterministic = self.solvers.cooperative.config.deterministic
        strategies = []
        for agent, k in zip(self.agents, self.game.n_actions):
            probs = branch.policy.action_probabilities(agent, observations[agent])[:k]
            strategies.append(np.eye(k)[int(np.argmax(probs))] if deterministic else probs / probs.sum())
        return strategies

    def exact_regret(self, branch: Branch) -> np.ndarray | None:
        """Exact per-agent regret of a branch's π^Φ in a normal-form game (None in Markov games)."""
        strategies = self.exact_strategies(branch)
        return None if strategies is None else self.game.regret(strategies)

    def strategies(self) -> list[np.ndarray] | None:
        """The mixed strategies of the returned π^Φ in a normal-form game (None otherwise)."""
        return self.exact_strategies(self.result)

    def regret(self) -> np.ndarray | None:
        """Exact per-agent regret of the returned π^Φ in a normal-form game (None where it needs the regret evaluator)."""
        return self.exact_regret(self.result)

    def predict(self, observation: dict | None = None, deterministic: bool = True) -> tuple[dict[str, Any], None]:
        """SB3-style: each agent's action under π^Φ for a dict of observations (optional in a normal-form game)."""
        if not self.solvers.exact:
            if observation is None:
                observation = self.env.reset(seed=self.seed)[0] if self.game is not None else None
            if observation is None:
                raise ValueError("predict() needs a dict of observations, one per agent")
            return self.result.policy.act(observation, deterministic, self.predict_rng), None
        actions = {}
        for agent, x in zip(self.agents, self.strategies()):
            if self.env.unwrapped.mixed:
                actions[agent] = action_from_strategy(x)
            else:
                actions[agent] = int(np.argmax(x)) if deterministic else int(self.predict_rng.choice(len(x), p=x))
        return actions, None

    def summary(self) -> dict[str, Any]:
        """The run summary (the schema of ``summary.json``): F, regret and strategies are those of the returned π^Φ."""
        result = self.result
        regret_values = self.exact_regret(result)
        regret = None if regret_values is None else dict(zip(self.agents, regret_values.tolist()))
        strategies = self.exact_strategies(result)
        out: dict[str, Any] = {
            "algo": "neppo",
            "version": __version__,
            "env": self.env_id,
            "env_kwargs": self.env_kwargs,
            "seed": self.seed,
            "agents": self.agents,
            "solver": self._solver_name(),
            "iterations": self.num_iterations,
            "selected_iteration": self.result_iteration,
            "selected_start": self.best_start if self.best is not None else 0,
            "env_steps": self.num_timesteps,
            "wall_time_s": round(self.wall_time_s, 4),
            "objective": result.objective,
            "F": dict(zip(self.agents, result.F.mean.tolist())),
            "F_se": dict(zip(self.agents, result.F.se.tolist())),
            "regret": regret,
            "max_regret": None if regret is None else max(regret.values()),
            "regret_method": None if regret is None else "exact" if self.solvers.exact else "exact, from learned strategies",
            "potential": {
                "class": type(self.potential).__name__,
                "name": potential_name(self.potential),
                "params": result.w.tolist(),
                **self._describe(result.w),
            },
            "hyperparams": self.config.to_dict(),
        }
        out.update(self.certificate(result))
        if strategies is not None:
            out["strategies"] = {a: x.tolist() for a, x in zip(self.agents, strategies)}
            out["action_names"] = {a: list(n) for a, n in zip(self.agents, self.game.action_names)}
        return out

    def certificate(self, branch: Branch) -> dict[str, Any]:
        """What F is worth for ``branch``: ``certificate`` is ``exact`` (exact solvers: max_i F_i bounds every regret,
        Theorem 3.1) or ``estimate`` (sampled solvers: F is estimated, and bounds regret only as well as π^Φ maximises
        Φ and the best responses are solved, with their ``best_response_budget``); ``best_response_gain`` (± ``_se``)
        is what each best response gained over π^Φ, a lower bound on its regret; ``warnings`` say when F ≈ 0 is no
        evidence (best responses that barely moved)."""
        if self.solvers.exact:
            return {"certificate": "exact", "warnings": []}
        out: dict[str, Any] = {"certificate": "estimate", "warnings": []}
        if isinstance(self.solvers.cooperative, PPOCooperativeSolver):
            kwargs = self.config.solver_kwargs
            steps = kwargs["n_envs"] * int(kwargs["br_ppo"].get("n_steps", kwargs["ppo"].get("n_steps", 2048)))
            out["best_response_budget"] = {
                "ppo_updates": kwargs["br_updates"],
                "env_steps": kwargs["br_updates"] * steps,
                "warm_start": kwargs["br_warm_start"],
            }
        F = branch.F
        if F.gain is not None:
            out["best_response_gain"] = dict(zip(self.agents, F.gain.tolist()))
            out["best_response_gain_se"] = dict(zip(self.agents, F.gain_se.tolist()))
            still = [a for a, g, se in zip(self.agents, F.gain, F.gain_se) if g <= 2 * se]
            # F_i - gain_i = Φ(π^Φ) - Φ(deviation): below 0 the deviation raised Φ, so π^Φ is no maximiser of Φ there
            raised = [a for a, f, g, se in zip(self.agents, F.mean, F.gain, F.gain_se) if g > 2 * se and f - g < -g / 2]
            if raised:
                out["warnings"].append(
                    f"the best responses of {', '.join(raised)} gained over pi^Phi and raised Phi itself (as in a "
                    "shared-reward game, where Phi is their own return): pi^Phi does not maximise Phi yet (give the "
                    "cooperative solve more updates), so their F does not bound their regret"
                )
            if still:
                budget = out.get("best_response_budget", {})
                out["warnings"].append(
                    f"the best responses of {', '.join(still)} gained nothing measurable over pi^Phi (gain <= 2 SE) with "
                    f"{budget.get('ppo_updates', '?')} PPO update(s) of {budget.get('env_steps', '?')} env steps: their F "
                    "near 0 is no evidence of a small regret; measure it with python -m sb3_neppo.evaluate RUN"
                )
        return out

    def _solver_name(self) -> str:
        if self.solvers.exact:
            return "exact"
        return "sb3" if isinstance(self.solvers.cooperative, PPOCooperativeSolver) else type(self.solvers.cooperative).__name__

    def _describe(self, w: np.ndarray) -> dict:
        self._scratch.set_flat_params(w)
        return self._scratch.describe()

    # --- save / load ----------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to a zip file atomically (a crash never leaves a half-written file). A model built from an
        env object saves everything but the env (as SB3 does): ``NePPO.load(path, env=...)`` takes it back."""
        path = Path(path)
        if path.suffix != ".zip":
            path = path.with_suffix(".zip")
        data = {
            "version": __version__,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "config": self.config.to_dict(),
            "potential": {"name": potential_name(self.potential), "config": self.potential.get_config()},
            "seed": self.seed,
            "num_iterations": self.num_iterations,
            "wall_time_s": self.wall_time_s,
            "rng_state": self.rng.bit_generator.state,
            "solver_rng_state": self.solver_rng.bit_generator.state,
            "num_timesteps": self.num_timesteps,
            "best": None if self.best is None else {"iteration": self.best[0], "w": self.best[1].w.tolist()},
            "best_start": self.best_start,
            "starts": [w.tolist() for w in self._starts],
            "screened": self._screened,
        }
        files = {"potential.pt": self.potential.state_dict()}
        if not self.solvers.exact and self.last_branch is not None:  # sampled solutions cannot be re-solved on load
            branch = self.last_branch
            data["branch"] = {"w": branch.w.tolist(), "F": branch.F.mean.tolist(), "F_se": branch.F.se.tolist()}
            if branch.F.gain is not None:
                data["branch"].update(gain=branch.F.gain.tolist(), gain_se=branch.F.gain_se.tolist())
            files["policy.pt"] = next(iter(branch.policy.policies.values())).state_dict()
            files["best_responses.pt"] = {a: p.state_dict() for a, p in branch.best_responses.items()}
        with atomic_open(path, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("data.json", json.dumps(data, indent=2))
            for name, state in files.items():
                buffer = io.BytesIO()
                torch.save(state, buffer)
                archive.writestr(name, buffer.getvalue())

    @classmethod
    def load(
        cls, path: str | os.PathLike, env: ParallelEnv | str | None = None, potential: Potential | None = None, **kwargs
    ) -> NePPO:
        """Load a saved model and continue training where it stopped.

        With the exact solvers the numbers continue exactly (same directions, same solutions). With the sb3 solvers the
        saved π^Φ, best responses and F are restored as they were (``predict`` and ``summary`` match the saved run);
        continued training warm-starts from them but does not replay the PPO optimiser states.

        :param env: the env to run on: an instance (for a model whose env has no id, or to replace it), or the saved env
            id itself, which allows importing its module: a file never makes us import a module on its own, except the
            env packages we know (``mpe2``, ``pettingzoo``, ``vmas``) and modules already imported.
        :param potential: an instance of the saved potential's class, for a custom potential (never imported by name).
        :param kwargs: hyperparameters to change (SB3's ``load(**kwargs)``): any :class:`NePPO` argument but the env,
            its kwargs, the seed, the potential and the solver, which a trained model keeps.
        """
        data, tensors = read_model_archive(path)
        config = dict(data["config"])
        config.pop("n_iterations", None)
        for key in ("potential", "potential_kwargs", "solver"):
            if key in kwargs and kwargs.pop(key) != config[key]:
                raise ConfigError(f"cannot change {key} of a trained model ({path}); train a new model instead")
        for key in ("env_kwargs", "seed"):
            if key in kwargs:
                raise ConfigError(f"a loaded model keeps its {key}; train a new model to change it")
        config.update(kwargs)
        if isinstance(env, str):
            if env != data["env_id"]:
                raise ConfigError(f"{path} was trained on {data['env_id']}, not {env}")
        elif env is None and data["env_id"] is None:
            raise ConfigError(f"{path} was built from an env object, which is not saved: pass env=<the env> to NePPO.load")
        elif env is None:
            check_importable(data["env_id"], path)
        if potential is None:
            name = data["potential"]["name"]
            if name not in POTENTIALS:  # never import a module named by a file: the caller builds custom potentials
                raise ConfigError(f"{path} uses the custom potential {name}; pass potential=<an instance> to NePPO.load")
            try:
                potential = POTENTIALS[name](**data["potential"]["config"])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"cannot load NePPO model {path}: its potential settings are invalid ({exc})") from None
        by_id = env is None or isinstance(env, str)
        extra = {k: config.pop(k) for k in ("verbose", "n_workers") if k in config}
        if config["solver"] not in ("auto", "exact", "sb3"):
            config["solver"] = "auto"  # a custom solver bundle is not saved: the run continues with the named ones
        try:
            settings = NePPOConfig.from_dict({**config, "n_iterations": NePPOConfig.n_iterations})
        except ConfigError as exc:
            raise ConfigError(f"cannot load NePPO model {path}: {exc}") from None
        model = cls(
            data["env_id"] if by_id else env,
            potential=potential,
            env_kwargs=data["env_kwargs"] if by_id else None,
            seed=data["seed"],
            config=settings,
            **extra,
        )
        try:
            model.potential.load_state_dict(tensors["potential.pt"])
            model.num_iterations = int(data["num_iterations"])
            model.wall_time_s = float(data["wall_time_s"])
            model.rng.bit_generator.state = data["rng_state"]
            if "solver_rng_state" in data:
                model.solver_rng.bit_generator.state = data["solver_rng_state"]
            model._timesteps_offset = int(data.get("num_timesteps", 0)) - model.solvers.env_steps
            if "branch" in data:
                saved = data["branch"]
                model.set_warm_state((tensors["policy.pt"], tensors["best_responses.pt"]))
                F = FEstimate(
                    *(None if saved.get(k) is None else np.array(saved[k], float) for k in ("F", "F_se", "gain", "gain_se"))
                )
                objective = log_sum_exp(F.mean, model.config.beta)
                model._adopt(Branch(np.array(saved["w"], dtype=float), model.policy, model.best_responses, F, objective))
                return model
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise ConfigError(
                f"cannot load NePPO model {path}: it is damaged or from another version ({first_line(exc)})"
            ) from None
        model._starts = [np.array(w, dtype=float) for w in data.get("starts", [])]
        model._screened = bool(data.get("screened", model._screened))
        if data.get("best"):
            model.best = (data["best"]["iteration"], model.solve_at(np.array(data["best"]["w"])))
            model.best_start, model._best_key = int(data.get("best_start", 0)), model._certificate(model.best[1])
        model._adopt(model.solve_at(model.potential.get_flat_params()))
        return model


MODEL_FILES = ("potential.pt", "policy.pt", "best_responses.pt")


def read_model_data(path: str | os.PathLike) -> dict[str, Any]:
    """The ``data.json`` of a saved NePPO model (settings, env, counters), checked; one line if it is not one."""
    return read_model_archive(path, tensors=False)[0]


def read_model_archive(path: str | os.PathLike, tensors: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data.json, {member: tensors})`` of a saved model, read safely (JSON and ``torch.load(weights_only=True)``:
    no pickled object ever runs); a missing, damaged or tampered file is one line."""
    path = Path(path)
    if not path.exists() and path.with_suffix(".zip").exists():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise ConfigError(f"{path}: no such model file (give a run's model.zip)")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data.json"))
            if not isinstance(data, dict) or data.get("algo", "neppo") != "neppo":
                raise ValueError("not a NePPO model")
            for key, kind in (("env_id", (str, type(None))), ("env_kwargs", dict), ("config", dict), ("seed", int)):
                if not isinstance(data.get(key), kind):
                    raise ValueError(f"data.json has no valid {key}")
            if not isinstance(data.get("potential"), dict) or not isinstance(data["potential"].get("config"), dict):
                raise ValueError("data.json has no valid potential")
            members = {}
            for name in MODEL_FILES if tensors else ():
                if name in archive.namelist():
                    members[name] = torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            if tensors and "potential.pt" not in members:
                raise KeyError("potential.pt")
    except pickle.UnpicklingError:  # torch's own message suggests weights_only=False: never
        message = f"cannot load NePPO model {path}: a tensor file in it holds something other than tensors (tampered?)"
        raise ConfigError(message) from None
    except (OSError, KeyError, ValueError, RuntimeError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"cannot load NePPO model {path}: {first_line(exc)}") from None
    return data, members


def _resolve_env(env: ParallelEnv | str, env_kwargs: dict | None) -> tuple[str | None, dict, ParallelEnv]:
    """(env id, env kwargs, env instance): ids are built through the registry; matrix games get an id that rebuilds them."""
    if isinstance(env, str):
        kwargs = dict(env_kwargs or {})
        return env, kwargs, make_env(env, kwargs)
    check_parallel_env(env)
    inner = env.unwrapped
    if isinstance(inner, MatrixGameEnv):
        game = inner.game
        kwargs = {
            "payoffs": game.payoffs.tolist(),
            "mixed": inner.mixed,
            "agents": list(game.agents),
            "action_names": [list(a) for a in game.action_names],
        }
        return "matrix", kwargs, env
    return None, {}, env
