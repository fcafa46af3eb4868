"""Branch solves in worker processes: the 2m branches w ± δu_j of an iteration are independent, so K processes solve them
side by side (processes, not threads: the work is PyTorch and Python).

Every worker builds its own :class:`~sb3_neppo.neppo.NePPO` from the same settings once, then solves one branch per
task from the warm start the main process sends (the current π^Φ and best responses) and the branch's seed. A branch
solved in a worker gives the same numbers as one solved in the main process.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

_MODEL: Any = None  # the worker's own NePPO


@dataclass
class BranchResult:
    """What the main process needs of a branch solved elsewhere."""

    objective: float
    F: np.ndarray
    F_se: np.ndarray
    regret: np.ndarray | None
    env_steps: int
    state: Any = None  # the branch's π^Φ and best responses (NePPO.branch_state), when asked for
    gain: np.ndarray | None = None  # what each best response gained over π^Φ (FEstimate.gain), with its SE
    gain_se: np.ndarray | None = None


def _init_worker(spec: dict[str, Any]) -> None:
    global _MODEL
    from sb3_neppo.neppo import NePPO  # imported here: the worker is a fresh interpreter

    torch.set_num_threads(1)
    _MODEL = NePPO(**spec)


def solve_branch(model: Any, w: np.ndarray, seed: int, keep_state: bool = False) -> BranchResult:
    """Solve one branch with ``model`` (a NePPO holding the warm start) and ``seed``; ``keep_state``: return its policies."""
    before = model.num_timesteps
    model.solvers.reseed(seed)
    branch = model.solve_at(w)
    state = model.branch_state(branch.policy, branch.best_responses) if keep_state else None
    regret = model.exact_regret(branch)
    steps = model.num_timesteps - before
    return BranchResult(branch.objective, branch.F.mean, branch.F.se, regret, steps, state, branch.F.gain, branch.F.gain_se)


def _solve(w: np.ndarray, seed: int, warm: tuple, keep_state: bool) -> BranchResult:
    _MODEL.set_warm_state(warm)
    return solve_branch(_MODEL, w, seed, keep_state)


class BranchPool:
    """``n_workers`` processes, each with a NePPO built from ``spec`` (the keyword arguments of ``NePPO``)."""

    def __init__(self, spec: dict[str, Any], n_workers: int):
        context = multiprocessing.get_context("spawn")  # fork would copy torch's thread pools and open envs
        self.n_workers = n_workers
        self.executor = ProcessPoolExecutor(n_workers, mp_context=context, initializer=_init_worker, initargs=(spec,))

    def submit(self, w: np.ndarray, seed: int, warm: tuple, keep_state: bool = False) -> Future:
        """Solve the branch at ``w`` with ``seed`` from the warm start ``warm`` (a future of its :class:`BranchResult`)."""
        return self.executor.submit(_solve, w, seed, warm, keep_state)

    def solve(self, jobs: list[tuple[np.ndarray, int]], warm: tuple, keep_state: bool = False) -> list[BranchResult]:
        """Solve ``(w, seed)`` jobs from the warm start ``warm``; results in job order."""
        return [f.result() for f in [self.submit(w, seed, warm, keep_state) for w, seed in jobs]]

    def close(self) -> None:
        self.executor.shutdown(cancel_futures=True)
