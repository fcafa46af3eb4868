"""Hyperparameter studies on the command line: trials, pruning, the report, and a best value that reproduces."""

import csv
import json

import numpy as np
import optuna
import pytest
import yaml
from optuna.trial import TrialState

from sb3_neppo import NePPO
from sb3_neppo.config import NePPOConfig
from sb3_neppo.hpo import SearchSpace, sample_hyperparams
from sb3_neppo.hyperparams_files import merge_hyperparams
from sb3_neppo.storage import open_storage
from sb3_neppo.train import main


@pytest.mark.slow
def test_optimize_finds_settings_whose_value_reproduces(tmp_path, capsys):
    args = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.4", "-optimize", "--n-trials", "8", "--n-seeds", "2"]
    args += ["--sampler", "random", "--pruner", "median", "--seed", "0", "-params", "n_iterations:30", "-f", str(tmp_path)]
    assert main(args) == 0
    folder = tmp_path / "neppo" / "matrix-alpha_1"
    summary = json.loads((folder / "summary.json").read_text())
    study = optuna.load_study(study_name=folder.name, storage=open_storage(None, folder))
    states = [t.state for t in study.trials]
    assert len(states) == 8 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert summary["complete"] + summary["pruned"] == 8 and summary["score"] == "max regret"
    values = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    assert summary["best_value"] == min(values) and len(set(np.round(values, 9))) > 1  # the settings do matter
    # the written best settings are a complete config; training with them on the same seeds gives the best value
    config = NePPOConfig.from_dict(yaml.safe_load((folder / "best_hyperparams.yml").read_text()))
    regrets = []
    for seed in range(2):
        model = NePPO("matrix-alpha", env_kwargs={"alpha": 0.4}, seed=seed, **config.model_kwargs())
        regrets.append(model.learn(n_iterations=config.n_iterations).regret().max())
    assert np.mean(regrets) == summary["best_value"]
    with (folder / "trials.csv").open() as fh:
        assert len(list(csv.reader(fh))) == 1 + 8
    assert (folder / "optimization_history.png").stat().st_size > 0 and (folder / "slice.png").stat().st_size > 0
    assert "best trial" in capsys.readouterr().out


def test_optimize_bad_input(tmp_path, capsys):
    assert main(["-optimize", "--n-trials", "0", "-f", str(tmp_path)]) == 2
    assert "--n-trials and --n-seeds must be >= 1" in capsys.readouterr().err
    assert main(["-optimize", "--sampler", "cmaes", "-f", str(tmp_path)]) == 2
    assert "invalid choice: 'cmaes'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_study_resumes_to_exactly_n_trials(tmp_path):
    """SIGKILL mid-study, run the same command again: the trial in flight is failed and redone, the completed ones
    are kept, and the study ends with exactly --n-trials finished trials."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["--env", "matrix-alpha", "-optimize", "--n-trials", "10", "--n-seeds", "2", "--sampler", "random"]
    args += ["--pruner", "none", "--seed", "1", "-params", "n_iterations:150", "-f", str(tmp_path)]
    cmd = [sys.executable, "-m", "sb3_neppo.train", *args]
    folder = tmp_path / "neppo" / "matrix-alpha_1"

    def finished() -> list:
        if not (folder / "study.journal").exists():
            return []
        study = optuna.load_study(study_name=folder.name, storage=open_storage(None, folder))
        return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while len(finished()) < 3:
        assert time.time() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "slow"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: t.value for t in finished()}
    assert 3 <= len(before) < 10 and not (folder / "summary.json").exists()
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 0  # the same command again
    study = optuna.load_study(study_name=folder.name, storage=open_storage(None, folder))
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 10 and set(states) <= {TrialState.COMPLETE, TrialState.FAIL}
    assert {t.number: t.value for t in study.trials if t.number in before} == before  # nothing completed was lost
    assert json.loads((folder / "summary.json").read_text())["complete"] == 10


@pytest.mark.parametrize(
    "space, extra",
    [
        (SearchSpace(sampled_solver=False), set()),
        (SearchSpace(sampled_solver=False, regret_weights=True), {"outer_step"}),
        (SearchSpace(sampled_solver=True), {"shrink_z", "coop_updates", "br_updates", "br_every", "ppo_learning_rate"}),
    ],
)
def test_search_space_samples_what_the_run_can_use(space, extra):
    """The outer step is searched only where the potential has another, the solver settings only for the sb3 solvers;
    every sampled setting is a valid config."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        config = NePPOConfig.from_dict(merge_hyperparams({}, sample_hyperparams(trial, space)))
        assert set(trial.params) == {"delta", "lr", "lr_schedule", "n_directions", "beta", "max_grad_norm"} | extra
        if space.sampled_solver:
            assert 1 <= config.solver_kwargs["br_every"] <= 4 and config.shrink_z in (0.0, 1.0)
    if space.regret_weights:
        steps = {t.params["outer_step"] for t in study.trials}
        assert steps <= {"zeroth_order", "regret_weights"}


@pytest.mark.slow
def test_a_study_on_the_convex_potential_searches_the_outer_step(tmp_path):
    """On the α game with the convex potential the study tries both outer steps, and the written best settings
    reproduce the best value."""
    args = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.4", "-optimize", "--n-trials", "6", "--n-seeds", "1"]
    args += ["--sampler", "random", "--pruner", "none", "--seed", "3", "-params", "n_iterations:20", "potential:convex"]
    assert main(args + ["-f", str(tmp_path)]) == 0
    folder = tmp_path / "neppo" / "matrix-alpha_1"
    study = optuna.load_study(study_name=folder.name, storage=open_storage(None, folder))
    assert {t.params["outer_step"] for t in study.trials} == {"zeroth_order", "regret_weights"}
    config = NePPOConfig.from_dict(yaml.safe_load((folder / "best_hyperparams.yml").read_text()))
    assert config.outer_step == study.best_trial.params["outer_step"]
    model = NePPO("matrix-alpha", env_kwargs={"alpha": 0.4}, seed=0, **config.model_kwargs())
    assert model.learn(n_iterations=config.n_iterations).regret().max() == study.best_value
