"""Monitors of :meth:`NePPO.learn <sb3_neppo.neppo.NePPO.learn>`: callbacks of the model's protocol
(:mod:`sb3_neppo.model`), called as ``monitor(log, model)`` after every outer iteration, that watch and write but never
change a training number (SB3's own ``BaseCallback`` subclasses are in :mod:`sb3_neppo.callbacks`).

* :class:`CsvLogger`: one row per iteration in ``progress.csv``; on resume it keeps the rows the run already has.
* :class:`TensorBoardLogger`: the per-iteration numbers as TensorBoard scalars (through SB3's logger).
* :class:`EvalMonitor`: every N iterations, π^Φ's true per-agent episode returns on held-out seeds, kept in
  ``evaluations.npz`` (the rl-baselines3-zoo file, with one column per agent) and logged.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import Logger, configure

from sb3_neppo.atomic import atomic_open, read_lines
from sb3_neppo.config import HELD_OUT_SEED
from sb3_neppo.neppo import IterationLog, NePPO
from sb3_neppo.solvers.sb3 import PPOCooperativeSolver, RolloutEvaluator


class CsvLogger:
    """``progress.csv``: one row per outer iteration (NePPO) or training round (baselines), flushed, so a killed run
    keeps its rows. Resuming, it keeps the rows up to the checkpoint's iteration (``keep_until``: a row torn by the kill
    and the rows of iterations redone after it are dropped) and appends from there.

    :param row: the row of one callback log.
    """

    def __init__(self, path: Path, columns: list[str], row: Callable[[Any], list], keep_until: int | None = None):
        rows = list(csv.reader(read_lines(path)))[1:] if keep_until is not None else []  # a torn last row is dropped
        kept = [r for r in rows if r and r[0].isdigit() and int(r[0]) <= keep_until]
        with atomic_open(path, "w", newline="") as fh:
            csv.writer(fh).writerows([columns, *kept])
        self.row = row
        self.file = path.open("a", newline="")
        self.writer = csv.writer(self.file)

    @classmethod
    def for_neppo(cls, path: Path, agents: list[str], dim: int, keep_until: int | None = None) -> CsvLogger:
        """NePPO's columns: w, L_β, F_i and their standard errors, exact regrets, the step, env steps, and what the
        step was made of: ‖g‖ before clipping, the branches' mean loss gap |L_β(w + δu) - L_β(w - δu)| and its standard
        error, unpaired (an upper bound) and from the branches' paired episodes."""
        columns = ["iteration", *[f"w_{j}" for j in range(dim)], "L_beta", *[f"F_{a}" for a in agents]]
        columns += [*[f"F_se_{a}" for a in agents], *[f"regret_{a}" for a in agents], "max_regret"]
        columns += ["grad_norm", "step_size", "env_steps", "grad_norm_raw", "loss_gap", "loss_gap_se", "loss_gap_se_paired"]

        def row(log: IterationLog) -> list:
            regret = [""] * len(log.F) + [""] if log.regret is None else [*log.regret.tolist(), float(log.regret.max())]
            return [log.iteration, *log.w.tolist(), log.objective, *log.F.tolist(), *log.F_se.tolist(), *regret] + [
                log.grad_norm,
                log.step_size,
                log.env_steps,
                log.grad_norm_raw,
                log.loss_gap,
                log.loss_gap_se,
                log.loss_gap_se_paired,
            ]

        return cls(path, columns, row, keep_until)

    @classmethod
    def for_rounds(cls, path: Path, agents: list[str], keep_until: int | None = None) -> CsvLogger:
        """A baseline's columns: the round, env steps so far, each agent's mean true return of the round's episodes."""

        def row(log: dict) -> list:
            return [log["round"], log["total_env_steps"], *[log["returns"].get(a, "") for a in agents]]

        return cls(path, ["iteration", "env_steps", *[f"return_{a}" for a in agents]], row, keep_until)

    def __call__(self, log: Any, model: Any) -> None:
        self.writer.writerow(self.row(log))
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class TensorBoardLogger:
    """Writes each iteration's L_β, F_i (± SE), regret (where known), gradient norm, step size and |w| to ``folder``,
    at x = env steps (iterations with the exact solvers, which take none). View with ``tensorboard --logdir``."""

    def __init__(self, folder: str | Path):
        self.logger: Logger = configure(str(folder), ["tensorboard"])

    def __call__(self, log: IterationLog, model: NePPO) -> None:
        record = self.logger.record
        record("neppo/L_beta", log.objective)
        record("neppo/max_F", float(log.F.max()))
        for agent, f, se in zip(model.agents, log.F, log.F_se):
            record(f"F/{agent}", float(f))
            record(f"F_se/{agent}", float(se))
        if log.regret is not None:
            record("neppo/max_regret", float(log.regret.max()))
            for agent, regret in zip(model.agents, log.regret):
                record(f"regret/{agent}", float(regret))
        record("neppo/grad_norm", log.grad_norm)
        record("neppo/grad_norm_raw", log.grad_norm_raw)
        record("neppo/loss_gap", log.loss_gap)
        record("neppo/loss_gap_se", log.loss_gap_se)
        record("neppo/loss_gap_se_paired", log.loss_gap_se_paired)
        record("neppo/step_size", log.step_size)
        record("neppo/w_norm", float(np.linalg.norm(log.w)))
        record("time/iterations", log.iteration)
        record("time/env_steps", log.env_steps)
        self.logger.dump(step=log.env_steps or log.iteration)

    def close(self) -> None:
        self.logger.close()


class EvalMonitor:
    """Every ``eval_freq`` iterations, the undiscounted true return of each agent under π^Φ (the current solution),
    averaged over ``n_episodes`` episodes on env seeds ``HELD_OUT_SEED + e`` (the same episodes every time, so the curve
    moves only with the policy). The episodes are separate from training: they cost no training env steps and change
    no training numbers. With the exact solvers the returns are the exact expected payoffs.

    :param log_path: folder of ``evaluations.npz`` (arrays ``iterations``, ``timesteps``, ``results`` of shape
        (evaluations, episodes, agents), ``agents``), rewritten atomically after each evaluation.
    :param logger: also record ``eval/return_<agent>`` there (e.g. a :class:`TensorBoardLogger`).
    :param resume_from: keep the evaluations of an earlier attempt up to this iteration (a resumed run).
    """

    def __init__(
        self,
        eval_freq: int,
        n_episodes: int = 10,
        log_path: str | Path | None = None,
        logger: TensorBoardLogger | None = None,
        resume_from: int | None = None,
        verbose: int = 0,
    ):
        if eval_freq < 1 or n_episodes < 1:
            raise ValueError("eval_freq and n_episodes must be >= 1")
        self.eval_freq, self.n_episodes, self.verbose = eval_freq, n_episodes, verbose
        self.path = None if log_path is None else Path(log_path) / "evaluations.npz"
        self.logger = logger
        self.iterations: list[int] = []
        self.timesteps: list[int] = []
        self.results: list[np.ndarray] = []
        if resume_from is not None and self.path is not None and self.path.exists():
            with np.load(self.path) as saved:
                keep = saved["iterations"] <= resume_from
                self.iterations = saved["iterations"][keep].tolist()
                self.timesteps = saved["timesteps"][keep].tolist()
                self.results = list(saved["results"][keep])
        self._evaluator: RolloutEvaluator | None = None

    def evaluate(self, model: NePPO) -> np.ndarray:
        """Per-episode true returns of π^Φ, shape (episodes, agents)."""
        policy = model.result.policy
        if model.solvers.exact:
            return model.solvers.evaluator.evaluate(model.potential, policy, {})[0].returns
        if self._evaluator is None:
            solver = model.solvers.cooperative
            if not isinstance(solver, PPOCooperativeSolver):
                raise TypeError("EvalMonitor evaluates the sb3 solvers' policies")
            config = dataclasses.replace(solver.config, eval_episodes=self.n_episodes, gamma=1.0)
            self._evaluator = RolloutEvaluator(model.env_fn, config)
        return self._evaluator.rollouts(policy, HELD_OUT_SEED).returns()

    def __call__(self, log: IterationLog, model: NePPO) -> None:
        if log.iteration % self.eval_freq:
            return
        returns = self.evaluate(model)
        self.iterations.append(log.iteration)
        self.timesteps.append(log.env_steps)
        self.results.append(returns)
        mean = returns.mean(axis=0)
        if self.path is not None:
            with atomic_open(self.path, "wb") as fh:
                np.savez(
                    fh,
                    iterations=np.array(self.iterations),
                    timesteps=np.array(self.timesteps),
                    results=np.array(self.results),
                    agents=np.array(model.agents),
                )
        if self.logger is not None:
            for agent, value in zip(model.agents, mean):
                self.logger.logger.record(f"eval/return_{agent}", float(value))
        if self.verbose:
            values = ", ".join(f"{a} {v:.4g}" for a, v in zip(model.agents, mean))
            print(f"eval at iteration {log.iteration}: mean return {values}", flush=True)
