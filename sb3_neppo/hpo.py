"""Hyperparameter studies: tune NePPO's outer and inner settings with Optuna (``python -m sb3_neppo.train -optimize``).

Each Optuna trial samples settings (:func:`sample_hyperparams`), trains NePPO with them on ``n_seeds`` seeds in turn
and scores them by the mean over seeds of the final max regret — exact on normal-form games — or, where regret would
need the (costly) regret evaluator, of the final max F (the certificate estimate). After each seed the running mean is
reported as an intermediate value, so a pruner can stop a poor trial early. The study is stored like any run's
(``--storage``, ``--study-name``; default a journal file in the run folder) and so is resumable and dashboard-ready.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from sb3_neppo.atomic import atomic_open, write_yaml_atomic
from sb3_neppo.config import OUTER_STEPS, NePPOConfig
from sb3_neppo.errors import ConfigError
from sb3_neppo.hyperparams_files import merge_hyperparams

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")


@dataclass(frozen=True)
class SearchSpace:
    """What a study samples besides the zeroth-order step: with ``sampled_solver`` (the sb3 solvers) K1, K2, PPO's
    learning rate, ``br_every`` and ``shrink_z``; with ``regret_weights`` (a potential that has
    :meth:`~sb3_neppo.potentials.ConvexCombinationPotential.regret_direction`) the outer step too."""

    sampled_solver: bool
    regret_weights: bool = False

    @classmethod
    def of(cls, model: Any) -> SearchSpace:
        """The space for a built :class:`~sb3_neppo.neppo.NePPO` (its solvers and potential)."""
        return cls(not model.solvers.exact, hasattr(model.potential, "regret_direction"))


def sample_hyperparams(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """The search space: the zeroth-order step for every run; the outer step where the potential has another; K1, K2,
    PPO's learning rate, the best responses' period and the step's shrinkage for the sb3 solvers."""
    params: dict[str, Any] = {
        "delta": trial.suggest_float("delta", 1e-3, 0.1, log=True),
        "lr": trial.suggest_float("lr", 1e-3, 0.5, log=True),
        "lr_schedule": trial.suggest_categorical("lr_schedule", ["constant", "inv_sqrt"]),
        "n_directions": trial.suggest_int("n_directions", 1, 16, log=True),
        "beta": trial.suggest_float("beta", 1.0, 1e4, log=True),
        "max_grad_norm": trial.suggest_categorical("max_grad_norm", [None, 1.0, 10.0]),
    }
    if space.regret_weights:
        params["outer_step"] = trial.suggest_categorical("outer_step", list(OUTER_STEPS))
    if space.sampled_solver:
        params["shrink_z"] = trial.suggest_categorical("shrink_z", [0.0, 1.0])
        params["solver_kwargs"] = {
            "coop_updates": trial.suggest_int("coop_updates", 1, 8),
            "br_updates": trial.suggest_int("br_updates", 1, 8),
            "br_every": trial.suggest_int("br_every", 1, 4),
            "ppo": {"learning_rate": trial.suggest_float("ppo_learning_rate", 1e-4, 1e-2, log=True)},
        }
    return params


def final_score(model) -> tuple[float, str]:
    """(value, what it is): the exact max regret where there is one, else the max F estimate."""
    regret = model.regret()
    if regret is not None:
        return float(np.max(regret)), "max regret"
    return float(np.max(model.result.F.mean)), "max F"


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ConfigError(f"unknown sampler '{name}': use {' or '.join(SAMPLERS)}")


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown pruner '{name}': use {' or '.join(PRUNERS)}")


def objective_fn(
    base: dict[str, Any],
    build: Callable[[NePPOConfig, int], Any],
    train: Callable[[Any, NePPOConfig], None],
    n_seeds: int,
    space: SearchSpace,
) -> Callable[[optuna.Trial], float]:
    """The trial objective: mean final score over seeds ``0..n_seeds-1``, reported after each seed for pruning."""

    def objective(trial: optuna.Trial) -> float:
        config = NePPOConfig.from_dict(merge_hyperparams(base, sample_hyperparams(trial, space)))
        scores = []
        for seed in range(n_seeds):
            model = build(config, seed)
            train(model, config)
            score, what = final_score(model)
            scores.append(score)
            trial.set_user_attr("score", what)
            trial.report(float(np.mean(scores)), step=seed)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("scores", scores)
        return float(np.mean(scores))

    return objective


def write_report(study: optuna.Study, base: dict[str, Any], folder: Path, space: SearchSpace) -> dict[str, Any]:
    """``best_hyperparams.yml`` (a ``-params``-ready, complete NePPO config), ``trials.csv`` and Optuna's plots."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise ConfigError("no trial completed; raise --n-trials or use --pruner none")
    best = study.best_trial
    fixed = optuna.trial.FixedTrial(best.params)
    config = NePPOConfig.from_dict(merge_hyperparams(base, sample_hyperparams(fixed, space)))
    write_yaml_atomic(folder / "best_hyperparams.yml", config.to_dict())
    names = sorted({k for t in study.trials for k in t.params})
    with atomic_open(folder / "trials.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["number", "state", "value", *names])
        for t in study.trials:
            value = "" if t.value is None else t.value
            writer.writerow([t.number, t.state.name, value, *(t.params.get(n, "") for n in names)])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name, plot in (("optimization_history", vis.plot_optimization_history), ("slice", vis.plot_slice)):
        axes = plot(study)
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return {"best_value": best.value, "best_trial": best.number, "complete": len(complete), "pruned": pruned}
