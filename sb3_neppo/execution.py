"""Where the branches of an iteration are solved: the executor NePPO is given (ARS's ``AsyncEval`` in SB3's terms).

The 2m branches w ± δu_j of an iteration are independent. An :class:`Executor` takes them as :class:`~sb3_neppo.branch.Job`
records, all from one warm start, and returns one :class:`~sb3_neppo.branch.Solve` each, in order:

* :class:`InProcessExecutor` — one after another, in this process (the default);
* :class:`ProcessExecutor` — side by side in K worker processes (processes, not threads: the work is PyTorch and
  Python), each with a :class:`~sb3_neppo.branch.BranchSolver` rebuilt once from its plain
  :class:`~sb3_neppo.branch.BranchSpec`; the warm start travels as the solver bundle encodes it;
* :class:`~sb3_neppo.distributed.QueueExecutor` — as jobs of the run's Optuna study, which processes on other machines
  take too.

A branch gives the same numbers wherever it is solved: its seed travels with it.
"""

from __future__ import annotations

import multiprocessing
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import torch

from sb3_neppo.branch import BranchSolver, BranchSpec, Job, Solve, Warm
from sb3_neppo.errors import ConfigError

OnSolve = Callable[[Solve], None]


class Executor(ABC):
    """Solves jobs for one model; :meth:`bind` gives it the model's :class:`BranchSolver` before the first solve."""

    n_workers = 1
    solver: BranchSolver | None = None

    def bind(self, solver: BranchSolver) -> None:
        """Solve with ``solver`` here (and, for executors with workers, rebuild it there from :meth:`BranchSolver.spec`)."""
        self.solver = solver

    @abstractmethod
    def solve(self, jobs: list[Job], warm: Warm, keep: bool, on_solve: OnSolve | None = None) -> list[Solve]:
        """Solve ``jobs`` from the warm start ``warm``; ``keep``: the records must hold π^Φ and the best responses
        (the next iteration may start from one). ``on_solve`` is called with each record as it is done."""

    def close(self) -> None:
        """Stop whatever the executor started (worker processes); a later solve starts them again."""
        return None  # nothing started by default


class InProcessExecutor(Executor):
    """Every job in this process, one after another."""

    def solve(self, jobs: list[Job], warm: Warm, keep: bool, on_solve: OnSolve | None = None) -> list[Solve]:
        solves = []
        for job in jobs:
            solves.append(self.solver.solve(job, warm))
            if on_solve is not None:
                on_solve(solves[-1])
        return solves


_SOLVER: BranchSolver | None = None  # a worker process's own


def _init_worker(spec: BranchSpec) -> None:
    global _SOLVER
    torch.set_num_threads(1)
    _SOLVER = spec.build()


def solve_to_send(solver: BranchSolver, job: Job, warm: Warm, keep: bool) -> tuple[Solve, Any]:
    """Solve ``job`` for another process: the record's numbers, and (``keep``) its policies as the bundle encodes them."""
    solve = solver.solve(job, warm)
    return solve.numbers(), solver.solvers.encode(solve.policy, solve.best_responses) if keep else None


def received(solver: BranchSolver, solve: Solve, kept: Any) -> Solve:
    """A record from another process with its policies decoded here (when they were kept)."""
    if kept is not None:
        solve.policy, solve.best_responses = solver.solvers.decode(kept)
    return solve


def _solve_in_worker(job: Job, state: Any, keep: bool) -> tuple[Solve, Any]:
    return solve_to_send(_SOLVER, job, _SOLVER.solvers.decode(state), keep)


class ProcessExecutor(Executor):
    """``n_workers`` processes (started at the first solve of more than one job; a single job is solved here)."""

    def __init__(self, n_workers: int):
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ConfigError(f"n_workers must be >= 1 (got {n_workers})")
        self.n_workers = n_workers
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, job: Job, state: Any, keep: bool) -> Future:
        """Solve ``job`` in a worker from the encoded warm start ``state``: a future of ``(record, encoded policies)``."""
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and open envs
            spec = self.solver.spec()
            self._pool = ProcessPoolExecutor(self.n_workers, mp_context=context, initializer=_init_worker, initargs=(spec,))
        return self._pool.submit(_solve_in_worker, job, state, keep)

    def solve(self, jobs: list[Job], warm: Warm, keep: bool, on_solve: OnSolve | None = None) -> list[Solve]:
        if len(jobs) == 1:
            return InProcessExecutor.solve(self, jobs, warm, keep, on_solve)
        state = self.solver.solvers.encode(*warm)
        futures = [self.submit(job, state, keep) for job in jobs]
        solves = [received(self.solver, *future.result()) for future in futures]
        for solve in solves if on_solve is not None else ():
            on_solve(solve)
        return solves

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def make_executor(n_workers: int = 1) -> Executor:
    """The executor for ``n_workers`` processes (1: this one)."""
    return InProcessExecutor() if n_workers == 1 else ProcessExecutor(n_workers)
