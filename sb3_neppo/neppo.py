"""NePPO (Near-Potential Policy Optimization): Algorithm 1 of arXiv 2603.06977, composed from pluggable parts.

Read :meth:`NePPO.learn` and :meth:`NePPO.step` top to bottom: they are Algorithm 1. Steps 2-4 at one w are
:meth:`NePPO.solve_at` (:class:`~sb3_neppo.branch.BranchSolver`); an iteration's branches go to an
:class:`~sb3_neppo.execution.Executor`; the inner solvers are a :class:`~sb3_neppo.solvers.base.Solvers` bundle, the
potential any :class:`~sb3_neppo.potentials.Potential`, the outer step a
:class:`~sb3_neppo.zeroth_order.ZerothOrderOptimizer`. The rest of the class: where solves are counted and recorded
(one method, :meth:`NePPO._solve`), the env-step budget, several starts (exact solvers), the result and its
certificate, save and load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pettingzoo import ParallelEnv
from tqdm.auto import tqdm

from sb3_neppo.archive import read_archive, write_archive
from sb3_neppo.assembly import SOLVERS, make_potential, make_solvers
from sb3_neppo.branch import BranchSolver, Job, Key, Solve
from sb3_neppo.config import NePPOConfig
from sb3_neppo.console import cost_text, iteration_line
from sb3_neppo.defaults import neppo_settings
from sb3_neppo.devices import resolve_device
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.matrix import action_from_strategy
from sb3_neppo.envs.registry import check_importable
from sb3_neppo.envs.wrapping import check_wrappers_importable
from sb3_neppo.errors import ConfigError, first_line
from sb3_neppo.execution import Executor, InProcessExecutor, make_executor
from sb3_neppo.model import Callback, MultiAgentModel, iterations_first_deprecated
from sb3_neppo.objective import log_sum_exp, log_sum_exp_se, paired_gap_se
from sb3_neppo.policy import Memory
from sb3_neppo.potentials import POTENTIALS, Potential, potential_name
from sb3_neppo.solvers.base import AgentPolicy, FEstimate, JointPolicy, Solvers
from sb3_neppo.version import __version__
from sb3_neppo.zeroth_order import ZerothOrderOptimizer, clip_norm, sample_directions, two_point_gradient


@dataclass
class IterationLog(Mapping):
    """One row of the per-iteration log, at the iterate w after the step: attributes, and a mapping of the same names
    (the callback protocol of :mod:`sb3_neppo.model`)."""

    iteration: int
    w: np.ndarray
    objective: float
    F: np.ndarray
    F_se: np.ndarray
    regret: np.ndarray | None
    grad_norm: float
    step_size: float
    env_steps: int
    grad_norm_raw: float = float("nan")  # ‖g‖ before clipping: far above max_grad_norm, the step is the noise's sign
    loss_gap: float = float("nan")  # mean over directions of |L_β(w + δu) - L_β(w - δu)|, what g is made of
    # the standard error of one such gap (√(se⁺² + se⁻²), root mean square over directions; se of L_β by the delta
    # method): a gap of pure noise has E|gap| ≈ 0.8 se, so loss_gap / loss_gap_se near 0.8 says g is noise
    loss_gap_se: float = float("nan")
    # the same gap's standard error from the branches' paired per-episode F samples (the two branches play the same
    # episode seeds): what the pairing buys; NaN where the samples are not known (a solve read back from an older study)
    loss_gap_se_paired: float = float("nan")

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.__dataclass_fields__)

    def __len__(self) -> int:
        return len(self.__dataclass_fields__)


class Default:
    """The type of :data:`DEFAULT`: "not given, use the run's default" where None means something (no clipping)."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = Default()


class Recorder(Protocol):
    """Where NePPO records its solves (see :class:`sb3_neppo.storage.StudyRecorder`): keyed (iteration, direction, sign)."""

    def lookup(self, key: Key) -> Solve | None: ...

    def record(self, solve: Solve) -> None: ...


class NePPO(MultiAgentModel):
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
    :param solver_kwargs: settings of the sb3 solvers (:class:`~sb3_neppo.config.SB3SolverConfig`).
    :param delta, lr, lr_schedule, n_directions, max_grad_norm, shrink_z: the zeroth-order step (see ``zeroth_order``).
    :param outer_step: ``zeroth_order`` (Algorithm 1) or ``regret_weights`` (the convex potential's weight moves to the
        groups with the largest F_i; :class:`~sb3_neppo.config.NePPOConfig`).
    :param beta: temperature of L_β.
    :param iterate_solve: ``every`` (solve at each new iterate: it is logged and warm-starts the next iteration) or
        ``final`` (the paper's 2m solves per iteration: the next one warm-starts from the branch with the lowest L_β;
        the final iterate is solved once when ``learn`` ends).
    :param keep_best: return the iterate with the lowest exact L_β instead of the last (exact solvers only).
    :param n_starts: also descend from the best of ``n_starts - 1`` other starts and return the iterate of lowest exact
        max regret of both descents (exact solvers, with ``keep_best``; see :meth:`_screen_starts`).
    :param potential_kwargs: constructor arguments when ``potential`` is a name.
    :param env_kwargs: arguments of the env when ``env`` is an id.
    :param device: where the sb3 solvers' networks run: ``auto`` (a CUDA GPU if torch sees one), ``cpu`` or ``cuda``
        (the exact solvers have none); ``solver_kwargs.device`` says the same.
    :param env_wrapper: wrappers applied to the env, in order: ``module.function`` or ``{module.function: {kwargs}}``
        (SuperSuit's, PettingZoo's; :mod:`sb3_neppo.envs.wrapping`), in every process that builds it.
    :param seed: seed of everything random in the run (drawn and recorded when None).
    :param verbose: 0 silent, 1 one line per iteration.
    :param n_workers: processes that solve the branches of an iteration side by side (1: in this process). The numbers
        are the same for any number of workers.
    :param executor: where the branches are solved instead (:mod:`sb3_neppo.execution`; e.g. the study's job queue,
        :class:`sb3_neppo.distributed.QueueExecutor`).
    :param recorder: records every solve and answers which ones a resumed run already did
        (:class:`sb3_neppo.storage.StudyRecorder`).
    :param hyperparams_file: another hyperparameter file than ``hyperparams/neppo.yml`` (the command line's ``-yaml``).
    :param config: complete settings (a :class:`~sb3_neppo.config.NePPOConfig`), used as they are, instead of the
        hyperparameter arguments.
    """

    algo = "neppo"

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
        shrink_z: float | None = None,
        outer_step: str | None = None,
        iterate_solve: str | None = None,
        keep_best: bool | None = None,
        n_starts: int | None = None,
        env_wrapper: list | None = None,
        device: str | None = None,
        potential_kwargs: dict | None = None,
        env_kwargs: dict | None = None,
        seed: int | None = None,
        verbose: int = 0,
        n_workers: int = 1,
        executor: Executor | None = None,
        recorder: Recorder | None = None,
        hyperparams_file: str | os.PathLike | None = None,
        config: NePPOConfig | None = None,
    ):
        self._set_env(env, env_kwargs, seed)
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
            shrink_z=shrink_z,
            outer_step=outer_step,
            iterate_solve=iterate_solve,
            keep_best=keep_best,
            n_starts=n_starts,
        )
        given = {k: v for k, v in given.items() if v is not None}
        if max_grad_norm is not DEFAULT:
            given["max_grad_norm"] = max_grad_norm
        if env_wrapper is not None:
            given["env_wrapper"] = env_wrapper
        if device is not None and (solver == "sb3" or (solver is None and self.game is None)):
            resolve_device(device)  # one line now for a cuda this machine does not have
            given["solver_kwargs"] = {**given.get("solver_kwargs", {}), "device": device}
        if config is not None and (set(given) - {"potential", "solver"} or hyperparams_file is not None):
            raise ConfigError(f"give either config or hyperparameters ({', '.join(sorted(given))}), not both")
        if config is None:  # the settings the command line would use: defaults, hyperparameter file, these arguments
            config = NePPOConfig.from_dict(neppo_settings(self.env, self.env_id, given, hyperparams_file))
            if config.env_wrapper:  # sized again on the env as the solvers see it (its observations, its length)
                self._wrap_env(config.env_wrapper)
                config = NePPOConfig.from_dict(neppo_settings(self.env, self.env_id, given, hyperparams_file))
        else:
            self._wrap_env(config.env_wrapper)
        self.config = config
        given_solver = config.solver if solver is None else solver
        self.solvers = make_solvers(given_solver, self.env, self.env_id, self.env_fn, config, self.seed)
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
        self.potential = make_potential(
            config.potential if potential is None else potential, self.env, config.potential_kwargs
        )
        StepEncoder(self.env).check_potential(self.potential)  # one clear line now, not a traceback mid-training
        if config.outer_step == "regret_weights" and not hasattr(self.potential, "regret_direction"):
            raise ConfigError(
                f"outer_step: regret_weights moves the weights of a convex potential, not a {potential_name(self.potential)} "
                "one: add -params potential:convex (or outer_step:zeroth_order)"
            )
        if self.solvers.exact:
            self.potential.double()  # exact certificates: no float32 rounding in Φ
        self.optimizer = ZerothOrderOptimizer(
            delta=config.delta,
            lr=config.lr,
            lr_schedule=config.lr_schedule,
            n_directions=config.n_directions,
            max_grad_norm=config.max_grad_norm,
            shrink_z=config.shrink_z,
            project=self.potential.project_flat,
        )
        self.branch_solver = BranchSolver(self.solvers, self.potential, self.agents, config.beta, config.lr)
        self.policy: JointPolicy | None = None  # π^Φ at the current w: the warm start of both branches
        self.best_responses: dict[str, AgentPolicy] = {}
        self.num_iterations = 0
        self.num_timesteps = 0  # env steps of every solve counted so far (0 with the exact solvers)
        self.wall_time_s = 0.0
        self.last_solve: Solve | None = None  # the current iterate
        self.best: tuple[int, Solve] | None = None  # (iteration, solve) of the lowest _certificate, when keep_best
        self.best_start = 0  # which start's descent it came from (0: the given start)
        self._best_key: tuple[float, ...] = ()  # _certificate(self.best[1]), kept rather than recomputed
        self._starts: list[np.ndarray] = []  # the other starts' w (n_starts > 1, exact solvers)
        self._screened = self.config.n_starts == 1
        self._on_solve: Callable[[], None] | None = None  # progress-bar hook while learn() runs
        self.recorder: Recorder | None = None
        self._here = InProcessExecutor()  # single solves (the iterate's) are done here, at once
        self._here.bind(self.branch_solver)
        self.executor: Executor = self._here
        self.set_executor(executor if executor is not None else make_executor(n_workers))
        if recorder is not None:
            self.set_recorder(recorder)

    def set_executor(self, executor: Executor) -> None:
        """Solve the branches with ``executor`` from now on (:mod:`sb3_neppo.execution`; the previous one is closed)."""
        self.executor.close()
        executor.bind(self.branch_solver)
        self.executor = executor

    def set_recorder(self, recorder: Recorder | None) -> None:
        """Record every solve with ``recorder`` (:class:`sb3_neppo.storage.StudyRecorder`), and look solves up there
        before doing them (a resumed run)."""
        self.recorder = recorder

    # --- Algorithm 1 ----------------------------------------------------------------------------------------------------

    def solve_at(self, w: np.ndarray, key: Key = (0, 0, 0), seed: int | None = None) -> Solve:
        """Steps 2-4 of Algorithm 1 at one parameter vector, here, from the current warm start: cooperative solve, best
        responses, F_i and L_β (:class:`~sb3_neppo.branch.BranchSolver`)."""
        return self.branch_solver.solve(Job(key, w, seed), (self.policy, self.best_responses))

    @iterations_first_deprecated
    def learn(
        self,
        total_timesteps: int | None = None,
        callback: Callback | Sequence[Callback] | None = None,
        progress_bar: bool = False,
        n_iterations: int | None = None,
    ) -> NePPO:
        """Run outer iterations of Algorithm 1, continuing from where the last call stopped.

        :param total_timesteps: env-step budget of this call with everything counted (cooperative solves, best
            responses, evaluation rollouts), in env steps, not SB3's agent-steps. An iteration starts only if it fits,
            with the final solve (``iterate_solve: final``), by its planned cost (:meth:`iteration_cost`, an upper
            bound), so the budget holds; a budget smaller than one iteration is one clear line.
        :param callback: called as ``callback(log, model)`` after each iteration (:mod:`sb3_neppo.model`); returning
            False stops training.
        :param progress_bar: show a progress bar (of iterations, or of the env-step budget) with L_β and max regret.
        :param n_iterations: iterations to run (None: until ``total_timesteps`` is spent or, without a budget, the
            settings' ``n_iterations``). ``learn(n)`` with a number first still means ``n_iterations=n`` for this
            release, with a warning.
        """
        if n_iterations is None and total_timesteps is None:
            n_iterations = self.config.n_iterations  # what the settings say, as the command line runs without -n
        for name, value in (("n_iterations", n_iterations), ("total_timesteps", total_timesteps)):
            if value is not None and (int(value) != value or value < 1):
                raise ConfigError(f"{name} must be an integer >= 1 (got {value})")
        if total_timesteps is not None and self.solvers.exact:
            raise ConfigError("an env-step budget needs the sampled (sb3) solvers; the exact ones take no env steps")
        callbacks = self._callbacks(callback)
        budget = None if total_timesteps is None else int(total_timesteps)
        cost = self.iteration_cost()
        if budget is not None:
            self.check_budget(budget)
        if self.verbose:
            tqdm.write(f"NePPO on {self.env_id or type(self.env.unwrapped).__name__}: {cost_text(cost, budget)}")
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
            if self._starts_with_a_solve:
                self.solve_iterate()
            if not self._screened:
                self._screen_starts()
            done = 0
            while n_iterations is None or done < n_iterations:
                if budget is not None and done and self.num_timesteps - start_steps + self.next_need() > budget:
                    break  # the next iteration and the final solve would not fit (planned costs: a resume decides alike)
                log = self.step()
                done += 1
                spent = self.num_timesteps - start_steps
                bar.update(min(spent, budget) - bar.n if budget is not None else 1)
                bar.set_postfix(L=f"{log.objective:.4g}", max_regret="-" if log.regret is None else f"{log.regret.max():.4g}")
                if self.verbose:
                    tqdm.write(iteration_line(log))
                if not self._call(callbacks, log, self):
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

    def step(self) -> IterationLog:
        """One outer iteration of Algorithm 1 (steps 1-5) from the current w and warm start; returns its log."""
        if self.config.outer_step == "regret_weights":
            return self._regret_weights_step()
        t = self.num_iterations
        w = self.potential.get_flat_params()
        # 1. directions u_j on the unit sphere; the branches w ± δu_j
        directions = sample_directions(self.rng, self.optimizer.n_directions, w.size)
        w_plus, w_minus = self.optimizer.branches(w, directions)
        # 2-4. per branch, from the same warm start (and, for sampled solvers, the same seeds for w ± δu_j):
        # cooperative solve, best responses, F_i, L_β
        seeds = [self._solver_seed() for _ in directions]
        m = len(directions)
        jobs = [Job((t, j, 1), w_plus[j], seeds[j]) for j in range(m)] + [
            Job((t, j, -1), w_minus[j], seeds[j]) for j in range(m)
        ]
        solves = self._solve(jobs, keep=self.config.iterate_solve == "final")
        losses = [s.objective for s in solves]
        paired = [paired_gap_se(solves[j].F, solves[m + j].F, self.config.beta) for j in range(m)]
        # 5. g = dim(w)/(2δ) · mean_j (L⁺_j - L⁻_j) u_j, clipped (and shrunk by the gaps' paired SE); w ← Proj(w - η_t g)
        with np.errstate(all="ignore"):  # an overflowing step is reported below, in one line
            w_next, g = self.optimizer.step(w, t, losses[:m], losses[m:], directions, gap_se=paired)
        if not np.isfinite(w_next).all():
            raise ConfigError(
                f"the step of iteration {t} took w out of range (|g| = {np.linalg.norm(g):.3g}, step size "
                f"{self.optimizer.step_size(t):.3g}): lower lr (now {self.config.lr}) or clip the step (max_grad_norm)"
            )
        self.potential.set_flat_params(w_next)
        self.num_iterations += 1
        self._step_other_starts(t, directions)
        if self.config.iterate_solve == "every":  # π^Φ at the new w: logged, and the next warm start
            self._adopt(self._solve_with_policy(Job((self.num_iterations, 0, 0), w_next, self._solver_seed())))
        else:  # the paper's cost: the next iteration starts from the branch with the lowest L_β
            k = int(np.argmin(losses))
            self._adopt(solves[k] if solves[k].policy is not None else self._replay(jobs[k]))
        log = self._iteration_log(float(np.linalg.norm(g)), self.optimizer.step_size(t))
        log.grad_norm_raw = float(np.linalg.norm(two_point_gradient(losses[:m], losses[m:], directions, self.optimizer.delta)))
        log.loss_gap = float(np.mean(np.abs(np.subtract(losses[:m], losses[m:]))))
        se = np.array([log_sum_exp_se(s.F.mean, s.F.se, self.config.beta) for s in solves])
        log.loss_gap_se = float(np.sqrt(np.mean(se[:m] ** 2 + se[m:] ** 2)))
        log.loss_gap_se_paired = float(np.sqrt(np.mean(np.square(paired))))
        return log

    def _regret_weights_step(self) -> IterationLog:
        """``outer_step: regret_weights``: solve at w (π^Φ, best responses, F), then move each group's logit by η_t times
        its largest F_i less the groups' mean (clipped to ``max_grad_norm``): w ← Proj(w + η_t d)."""
        t, w = self.num_iterations, self.potential.get_flat_params()
        if self._solved_here(w):  # the previous learn()'s final solve: this iteration's, solved once
            solve = self.last_solve
        else:
            replay = t % self.solvers.best_response_every != 0 and bool(self.best_responses)  # br_every: between k-th
            solve = self._solve_with_policy(Job((t, 0, 0), w, self._solver_seed(), replay))  # trains on where w stayed
            self._adopt(solve)
        d = clip_norm(self.potential.regret_direction(solve.F.mean), self.config.max_grad_norm)
        self.potential.set_flat_params(self.potential.project_flat(w + self.optimizer.step_size(t) * d))
        self.num_iterations += 1
        return self._iteration_log(float(np.linalg.norm(d)), self.optimizer.step_size(t))

    def _solved_here(self, w: np.ndarray) -> bool:
        """Whether the current solution is the solve at ``w`` keyed for the next iteration: the final solve of a learn()
        (``regret_weights``: the one solve its next iteration would do, from the same warm start and with the same
        seed draw, so ``learn(a)`` then ``learn(b)`` runs as one learn, neither training again nor counting it twice)."""
        last = self.last_solve
        return last is not None and last.key == (self.num_iterations, 0, 0) and np.array_equal(last.w, w)

    def solve_iterate(self) -> Solve:
        """Solve at the current w (π^Φ there, its best responses and F) unless that is the current solution already.

        ``learn`` calls it; with ``iterate_solve: final`` it is the one solve at the final iterate."""
        w = self.potential.get_flat_params()
        if self.last_solve is None or not np.array_equal(self.last_solve.w, w):
            self._adopt(self._solve_with_policy(Job((self.num_iterations, 0, 0), w, self._solver_seed())))
        return self.last_solve

    # --- where solves are done, counted and recorded ---------------------------------------------------------------------

    def _solve(self, jobs: list[Job], keep: bool) -> list[Solve]:
        """Solve ``jobs`` from the current warm start with the executor; ``keep``: the records must hold the policies
        (else a record may be numbers only). The one place solves are counted (env steps) and recorded: a solve the
        recorder already has (a resumed run) is read back, not done again, and its env steps count as spent."""
        done: dict[Key, Solve] = {}
        for job in jobs:
            stored = self.recorder.lookup(job.key) if self._recorded(job.key) else None
            if stored is not None:
                done[job.key] = stored
                self.num_timesteps += stored.env_steps  # spent before the restart
        pending = [job for job in jobs if job.key not in done]
        executor = self.executor if len(pending) > 1 else self._here  # one solve: here, at once
        if pending:
            for solve in executor.solve(pending, (self.policy, self.best_responses), keep, self._done):
                done[solve.key] = solve
        return [done[job.key] for job in jobs]

    def _done(self, solve: Solve) -> None:
        self.num_timesteps += solve.env_steps
        if self._recorded(solve.key):
            self.recorder.record(solve)
        if self._on_solve is not None:
            self._on_solve()

    def _recorded(self, key: Key) -> bool:
        """Whether the solve ``key`` is a trial of the recorder's study: every solve with sampled solvers (a resumed run
        reads back the ones that completed); with exact ones only the solve at each iterate (``sign`` 0), since
        branches cost microseconds to redo and a trial per branch would cost a journal write each (about 1 ms)."""
        return self.recorder is not None and (not self.solvers.exact or key[2] == 0)

    def _solve_with_policy(self, job: Job) -> Solve:
        """One solve whose policies are needed now (an iterate's: the next warm start): a stored record (a run killed
        after recording it) is solved again for them."""
        solve = self._solve([job], keep=True)[0]
        return solve if solve.policy is not None else self._replay(job)

    def _replay(self, job: Job) -> Solve:
        """Solve again, here, a branch that a resumed run knows only as a stored trial, for its policy: the same warm
        start and seed give the same policy. Its env steps were counted when it was first solved, so not again."""
        return self.branch_solver.solve(job, (self.policy, self.best_responses))

    def _solver_seed(self) -> int:
        return int(self.solver_rng.integers(2**31 - 1))

    def close(self) -> None:
        """Stop the executor's worker processes (a later ``learn`` starts new ones)."""
        self.executor.close()

    def set_warm_state(self, state: Any) -> None:
        """Adopt π^Φ and best responses, as the solver bundle encodes them (:meth:`Solvers.encode`), as the warm start
        of the next solves."""
        self.policy, self.best_responses = self.solvers.decode(state)

    # --- budget ----------------------------------------------------------------------------------------------------------

    def iteration_cost(self) -> dict[str, int]:
        """The env steps one outer iteration is planned to take (all 0 where the solvers plan none, e.g. the exact
        ones): ``solve`` (one solve: ``cooperative`` K1 × n_envs × n_steps, ``best_responses`` N × K2 × n_envs × n_steps,
        ``evaluation`` eval_episodes × (N + 1) joint policies × the episode length, an upper bound where episodes end
        early), ``solves`` per iteration (2 per direction, and one at the iterate with ``iterate_solve: every``; one
        with ``regret_weights``), ``replaying`` among them (the solves that replay the best responses between the k-th
        iterations: the branches at w ± δu, or the one solve of ``regret_weights``), ``iteration`` (one that trains best
        responses), ``best_response_every`` (k, :attr:`~sb3_neppo.solvers.base.Solvers.best_response_every`) and
        ``iteration_mean`` over k."""
        branches = 2 * self.config.n_directions if self.config.outer_step == "zeroth_order" else 0
        solves = branches + (self.config.iterate_solve == "every") if branches else 1  # regret_weights: one, at w
        replaying = branches or 1
        parts = self.solvers.solve_cost(len(self.agents)) or {"cooperative": 0, "best_responses": 0, "evaluation": 0}
        solve = parts["cooperative"] + parts["best_responses"] + parts["evaluation"]
        every = self.solvers.best_response_every
        mean = solves * solve - (replaying * parts["best_responses"] * (every - 1)) // every
        return {
            **parts,
            "solve": solve,
            "solves": solves,
            "replaying": replaying,
            "iteration": solves * solve,
            "best_response_every": every,
            "iteration_mean": mean,
        }

    def next_need(self) -> int:
        """The env steps the next outer iteration is planned to take, with the solve at the final iterate
        (``iterate_solve: final``): an iteration starts only if this fits what is left of a budget."""
        cost = self.iteration_cost()
        regret_weights = self.config.outer_step == "regret_weights"
        if regret_weights and self._solved_here(self.potential.get_flat_params()):
            return cost["solve"]  # its one solve is done (a learn()'s final solve): only the final solve after it
        final = self.config.iterate_solve == "final" or regret_weights
        need = cost["iteration"] + (cost["solve"] if final else 0)
        if self.num_iterations % cost["best_response_every"]:
            need -= cost["replaying"] * cost["best_responses"]  # its branches (or its one solve) replay the last ones
        return need

    @property
    def _starts_with_a_solve(self) -> bool:
        """Whether ``learn`` solves at the starting w before its first iteration (``iterate_solve: every``, untrained)."""
        return self.policy is None and self.config.iterate_solve == "every" and self.config.outer_step == "zeroth_order"

    def check_budget(self, total_timesteps: int) -> None:
        """One line if ``total_timesteps`` env steps cannot pay for one outer iteration (and the solve of the starting
        point or the final iterate that goes with it), saying what would."""
        cost = self.iteration_cost()
        first = self.next_need() + (cost["solve"] if self._starts_with_a_solve else 0)  # what learn() spends first
        if total_timesteps >= first:
            return
        hint = "fewer env copies, evaluation episodes or directions"
        if cost["evaluation"] > cost["cooperative"] + cost["best_responses"]:
            hint = (
                f"shorter episodes (evaluating a solve plays {cost['evaluation']:,} steps: episodes of "
                f"{cost['episode_length']:,} steps), or {hint}"
            )
        raise ConfigError(
            f"a budget of {total_timesteps:,} env steps is less than one outer iteration of this run ({first:,} env steps: "
            f"{cost_text(cost)}); give a budget of at least {first:,}, or {hint}"
        )

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

    def _certificate(self, branch: Solve) -> tuple[float, ...]:
        """What ranks solutions for ``keep_best``: the exact L_β; with several starts (``n_starts > 1``), the exact max
        regret first (a normal-form game with exact solvers knows it exactly, and F only bounds it: at a pure
        equilibrium whose deviations lose little, F is the potential's own loss and can exceed the regret of a mixed
        profile with a lower L_β), then L_β."""
        regret = branch.regret if self.config.n_starts > 1 else None
        return (branch.objective,) if regret is None else (float(regret.max()), branch.objective)

    def _consider(self, branch: Solve, start: int) -> None:
        """Keep ``branch`` (of start ``start``) as the result if its exact certificate is the lowest yet."""
        key = self._certificate(branch)
        if self.best is None or key < self._best_key:
            self.best, self.best_start, self._best_key = (self.num_iterations, branch), start, key

    # --- results --------------------------------------------------------------------------------------------------------

    def _adopt(self, solve: Solve) -> None:
        self.last_solve = solve
        self.policy, self.best_responses = solve.policy, solve.best_responses
        if self.config.keep_best:
            self._consider(solve, start=0)

    @property
    def result(self) -> Solve:
        """The returned solution: the last iterate, or the best-certified one with ``keep_best``."""
        if self.last_solve is None:
            raise RuntimeError("no solution yet: call learn() first")
        return self.best[1] if self.best is not None else self.last_solve

    @property
    def result_iteration(self) -> int:
        return self.best[0] if self.best is not None else self.num_iterations

    def _iteration_log(self, grad_norm: float, step_size: float) -> IterationLog:
        solve = self.last_solve
        return IterationLog(
            iteration=self.num_iterations,
            w=solve.w,
            objective=solve.objective,
            F=solve.F.mean,
            F_se=solve.F.se,
            regret=solve.regret,
            grad_norm=grad_norm,
            step_size=step_size,
            env_steps=self.num_timesteps,
        )

    def strategies(self) -> list[np.ndarray] | None:
        """The mixed strategies of the returned π^Φ in a normal-form game (None otherwise)."""
        return self.solvers.strategies(self.result.policy) if self.game is not None else None

    def regret(self) -> np.ndarray | None:
        """Exact per-agent regret of the returned π^Φ in a normal-form game (None where it needs the regret evaluator)."""
        return self.result.regret

    def _act(self, observation: dict, deterministic: bool, memory: Memory | None = None, masks=None) -> dict[str, Any]:
        if not self.solvers.exact:
            return self.result.policy.act(observation, deterministic, self.predict_rng, memory, masks=masks)
        actions = {}
        for agent, x in zip(self.agents, self.strategies()):
            if self.env.unwrapped.mixed:
                actions[agent] = action_from_strategy(x)
            else:
                actions[agent] = int(np.argmax(x)) if deterministic else int(self.predict_rng.choice(len(x), p=x))
        return actions

    def summary(self) -> dict[str, Any]:
        """The run summary (the schema of ``summary.json``): F, regret and strategies are those of the returned π^Φ."""
        result = self.result
        out = self._summary_head(self.num_iterations, solver=self.solvers.name)
        out.update(selected_iteration=self.result_iteration, selected_start=self.best_start if self.best is not None else 0)
        out.update(objective=result.objective, F=dict(zip(self.agents, result.F.mean.tolist())))
        out["F_se"] = dict(zip(self.agents, result.F.se.tolist()))
        out.update(regret_method=None)
        out.update(self._regret_fields(result.regret, "exact" if self.solvers.exact else "exact, from learned strategies"))
        out["potential"] = {
            "class": type(self.potential).__name__,
            "name": potential_name(self.potential),
            "params": result.w.tolist(),
            **self.branch_solver.describe(result.w),
        }
        out["hyperparams"] = self.config.to_dict()
        out.update(self.certificate(result))
        out.update(self._strategy_fields(self.strategies()))
        return out

    def certificate(self, branch: Solve) -> dict[str, Any]:
        """What F is worth for ``branch``: ``certificate`` is ``exact`` (exact solvers: max_i F_i bounds every regret,
        Theorem 3.1) or ``estimate`` (sampled solvers: F is estimated, and bounds regret only as well as π^Φ maximises
        Φ and the best responses are solved, with their ``best_response_budget``); ``best_response_gain`` (± ``_se``)
        is what each best response gained over π^Φ, a lower bound on its regret; ``warnings`` say when F ≈ 0 is no
        evidence (best responses that barely moved)."""
        if self.solvers.exact:
            return {"certificate": "exact", "warnings": []}
        out: dict[str, Any] = {"certificate": "estimate", "warnings": []}
        budget = self.solvers.best_response_budget()
        if budget is not None:
            out["best_response_budget"] = budget
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
                    f"{budget.get('ppo_updates', '?')} {budget.get('algo', 'PPO')} update(s) of "
                    f"{budget.get('env_steps', '?')} env steps: their F near 0 is no evidence of a small regret; measure it "
                    "with python -m sb3_neppo.evaluate RUN"
                )
        return out

    # --- save / load ----------------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to a zip file atomically (a crash never leaves a half-written file). A model built from an
        env object saves everything but the env (as SB3 does): ``NePPO.load(path, env=...)`` takes it back."""
        path = Path(path)
        if path.suffix != ".zip":
            path = path.with_suffix(".zip")
        data = {
            "algo": "neppo",
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
        if not self.solvers.exact and self.last_solve is not None:  # sampled solutions cannot be re-solved on load
            branch = self.last_solve
            data["branch"] = {
                "key": list(branch.key),
                "w": branch.w.tolist(),
                "F": branch.F.mean.tolist(),
                "F_se": branch.F.se.tolist(),
            }
            if branch.F.gain is not None:
                data["branch"].update(gain=branch.F.gain.tolist(), gain_se=branch.F.gain_se.tolist())
            files["policy.pt"], files["best_responses.pt"] = self.solvers.encode(branch.policy, branch.best_responses)
        write_archive(path, data, files)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        env: ParallelEnv | str | None = None,
        potential: Potential | None = None,
        solver: Solvers | None = None,
        **kwargs,
    ) -> NePPO:
        """Load a saved model and continue training where it stopped.

        With the exact solvers the numbers continue exactly (same directions, same solutions). With the sb3 solvers the
        saved π^Φ, best responses and F are restored as they were (``predict`` and ``summary`` match the saved run);
        continued training warm-starts from them but does not replay the PPO optimiser states.

        :param env: the env to run on: an instance (for a model whose env has no id, or to replace it), or the saved env
            id itself, which allows importing its module: a file never makes us import a module on its own, except the
            env packages we know (``mpe2``, ``pettingzoo``, ``vmas``) and modules already imported.
        :param potential: an instance of the saved potential's class, for a custom potential (never imported by name).
        :param solver: an instance of the saved solver bundle's class, for a custom bundle (never imported by name).
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
            check_wrappers_importable(config.get("env_wrapper"), path)
        if potential is None:
            name = data["potential"]["name"]
            if name not in POTENTIALS:  # never import a module named by a file: the caller builds custom potentials
                raise ConfigError(f"{path} uses the custom potential {name}; pass potential=<an instance> to NePPO.load")
            try:
                potential = POTENTIALS[name](**data["potential"]["config"])
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"cannot load NePPO model {path}: its potential settings are invalid ({exc})") from None
        by_id = env is None or isinstance(env, str)
        extra = {k: config.pop(k) for k in ("verbose", "n_workers", "executor", "recorder") if k in config}
        if config["solver"] not in SOLVERS and solver is None:
            raise ConfigError(
                f"{path} uses the custom solver bundle {config['solver']}; pass solver=<an instance> to NePPO.load"
            )
        try:
            settings = NePPOConfig.from_dict({**config, "n_iterations": NePPOConfig.n_iterations})
        except ConfigError as exc:
            raise ConfigError(f"cannot load NePPO model {path}: {exc}") from None
        model = cls(
            data["env_id"] if by_id else env,
            potential=potential,
            solver=solver,
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
            model.num_timesteps = int(data.get("num_timesteps", 0))
            if "branch" in data:
                saved = data["branch"]
                model.set_warm_state((tensors["policy.pt"], tensors["best_responses.pt"]))
                F = FEstimate(
                    *(None if saved.get(k) is None else np.array(saved[k], float) for k in ("F", "F_se", "gain", "gain_se"))
                )
                objective = log_sum_exp(F.mean, model.config.beta)
                w, policy = np.array(saved["w"], dtype=float), model.policy
                key = tuple(int(k) for k in saved.get("key", (-1, 0, 0)))  # -1: an older file, keyed to no iteration
                solve = Solve(key, w, objective, F, 0, policy, model.best_responses, regret_of=model.solvers.regret)
                model._adopt(solve)
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
DATA_FIELDS = (("env_id", (str, type(None))), ("env_kwargs", dict), ("config", dict), ("seed", int))


def read_model_data(path: str | os.PathLike) -> dict[str, Any]:
    """The ``data.json`` of a saved NePPO model (settings, env, counters), checked; one line if it is not one."""
    return read_model_archive(path, tensors=False)[0]


def read_model_archive(path: str | os.PathLike, tensors: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data.json, {member: tensors})`` of a saved model, read safely (:mod:`sb3_neppo.archive`); a missing, damaged
    or tampered file is one line."""
    path = Path(path)
    if not path.exists() and path.with_suffix(".zip").exists():
        path = path.with_suffix(".zip")
    if not path.is_file():
        raise ConfigError(f"{path}: no such model file (give a run's model.zip)")
    kind = "NePPO model"
    names, optional = (("data.json", "potential.pt"), MODEL_FILES[1:]) if tensors else (("data.json",), ())
    files = read_archive(path, names, optional, kind)
    data = files.pop("data.json")
    if not isinstance(data, dict) or data.get("algo", "neppo") != "neppo":
        raise ConfigError(f"cannot load {kind} {path}: not a NePPO model")
    for key, types in DATA_FIELDS:
        if not isinstance(data.get(key), types):
            raise ConfigError(f"cannot load {kind} {path}: data.json has no valid {key}")
    if not isinstance(data.get("potential"), dict) or not isinstance(data["potential"].get("config"), dict):
        raise ConfigError(f"cannot load {kind} {path}: data.json has no valid potential")
    return data, files
