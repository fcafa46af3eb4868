"""The zoo-style command line: run folders, user games given on the command line, and one-line errors."""

import csv
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from sb3_neppo.neppo import NePPO
from sb3_neppo.train import main, run

GAME_3X3 = [[[4, 0, 1], [2, 3, 0], [1, 1, 2]], [[1, 3, 0], [0, 2, 4], [2, 1, 3]]]


def _train(tmp_path, *args):
    assert main([*args, "-f", str(tmp_path)]) == 0
    folder = max((tmp_path / "neppo").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    return folder, json.loads((folder / "summary.json").read_text())


def _regret_by_hand(payoffs, strategies):
    """Regret from first principles: loops over pure profiles, no library code."""
    payoffs = np.asarray(payoffs, dtype=float)
    n, ks = payoffs.shape[0], payoffs.shape[1:]

    def value(i, own):
        total = 0.0
        for profile in itertools.product(*[range(k) for k in ks]):
            prob = own[profile[i]]
            for j in range(n):
                if j != i:
                    prob *= strategies[j][profile[j]]
            total += prob * payoffs[(i, *profile)]
        return total

    regrets = []
    for i in range(n):
        best = max(value(i, np.eye(ks[i])[a]) for a in range(ks[i]))
        regrets.append(best - value(i, np.asarray(strategies[i])))
    return regrets


@pytest.mark.slow
def test_users_3x3_game_reports_strategies_and_regrets_that_recompute(tmp_path):
    folder, summary = _train(
        tmp_path,
        "--env",
        "matrix",
        "--env-kwargs",
        f"payoffs:{json.dumps(GAME_3X3)}",
        "--seed",
        "0",
        "-params",
        "n_iterations:150",
    )
    strategies = [summary["strategies"][a] for a in summary["agents"]]
    assert all(len(x) == 3 and sum(x) == pytest.approx(1.0) and min(x) >= 0 for x in strategies)
    by_hand = _regret_by_hand(GAME_3X3, strategies)
    assert [summary["regret"][a] for a in summary["agents"]] == pytest.approx(by_hand, abs=1e-9)
    assert summary["max_regret"] == pytest.approx(max(by_hand), abs=1e-9)
    assert all(summary["F"][a] >= summary["regret"][a] - 1e-9 for a in summary["agents"])  # certificate
    for key in (
        "algo",
        "env",
        "seed",
        "agents",
        "iterations",
        "env_steps",
        "wall_time_s",
        "objective",
        "F",
        "regret",
        "max_regret",
        "potential",
        "strategies",
    ):
        assert key in summary
    assert (summary["algo"], summary["env"], summary["seed"], summary["iterations"]) == ("neppo", "matrix", 0, 150)
    assert summary["potential"]["class"] == "QuadraticPotential" and len(summary["potential"]["params"]) == 4
    assert folder.name == "matrix_1"
    rows = list(csv.DictReader((folder / "progress.csv").open()))
    assert len(rows) == 150 and {"iteration", "w_0", "L_beta", "F_player_0", "regret_player_1"} <= set(rows[0])
    assert yaml.safe_load((folder / "config.yml").read_text())["n_iterations"] == 150
    assert "--env matrix" in (folder / "command.txt").read_text()
    assert NePPO.load(folder / "model.zip").num_iterations == 150


@pytest.mark.slow
def test_three_player_game_on_the_command_line(tmp_path):
    payoffs = np.round(np.random.default_rng(1).uniform(-1, 1, (3, 2, 2, 2)), 1).tolist()
    _, summary = _train(
        tmp_path,
        "--env",
        "matrix",
        "--env-kwargs",
        f"payoffs:{json.dumps(payoffs)}",
        "--seed",
        "1",
        "-params",
        "n_iterations:200",
    )
    strategies = [summary["strategies"][a] for a in summary["agents"]]
    assert summary["agents"] == ["player_0", "player_1", "player_2"]
    assert [summary["regret"][a] for a in summary["agents"]] == pytest.approx(_regret_by_hand(payoffs, strategies), abs=1e-9)
    assert summary["max_regret"] < 0.1  # an approximate NE (a pure NE exists: the quadratic potential gets close)


def test_alpha_game_run_folder_numbering_and_overrides(tmp_path):
    _train(tmp_path, "--env-kwargs", "alpha:0.0", "--seed", "0", "-params", "n_iterations:5")
    folder, summary = _train(
        tmp_path,
        "--env-kwargs",
        "alpha:0.0",
        "mixed:false",
        "--seed",
        "0",
        "-params",
        "n_iterations:5",
        "potential:convex",
        "keep_best:false",
    )
    assert folder.name == "matrix-alpha_2"
    assert summary["env_kwargs"] == {"alpha": 0.0, "mixed": False}
    assert summary["potential"]["class"] == "ConvexCombinationPotential" and summary["iterations"] == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--env", "chess"], "unknown env id 'chess'"),
        (["--env", "matrix", "--env-kwargs", "payoffs:[[1, 2], [3"], "cannot parse value"),
        (["--env", "matrix", "--env-kwargs", "payoffs:[[[1,2],[3]],[[1,2],[3,4]]]"], "rectangular nested list"),
        (["--env-kwargs", "alpha:1.5"], "alpha must lie in [0, 1]"),
        (["-params", "learning_rate:0.1"], "unknown hyperparameter learning_rate; valid keys:"),
        (["-params", "delta:-0.1"], "delta must be a finite number > 0"),
        (["-params", "n_iterations:ten"], "n_iterations must be int"),
        (["--env-kwargs", "alpha"], "entries are key:value"),
        (["--algo", "ppo"], "invalid choice: 'ppo'"),
    ],
)
def test_bad_input_gets_one_clear_line(tmp_path, capsys, args, message):
    assert main([*args, "-f", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "neppo").exists()  # nothing half-written


def test_module_entry_point_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sb3_neppo.train", "--env-kwargs", "alpha:2", "-f", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: alpha must lie in [0, 1], got 2.0; e.g. --env-kwargs alpha:0.4"


def test_continue_a_saved_run_with_i_and_save_freq(tmp_path):
    base = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.4", "--seed", "2", "-f", str(tmp_path)]
    assert main([*base, "-params", "n_iterations:10"]) == 0
    first = tmp_path / "neppo" / "matrix-alpha_1"
    assert main([*base, "-params", "n_iterations:5", "-i", str(first / "model.zip"), "--save-freq", "5"]) == 0
    second = tmp_path / "neppo" / "matrix-alpha_2"
    assert main([*base, "-params", "n_iterations:15", "-f", str(tmp_path / "long")]) == 0
    continued = json.loads((second / "summary.json").read_text())
    straight = json.loads((tmp_path / "long" / "neppo" / "matrix-alpha_1" / "summary.json").read_text())
    assert continued["iterations"] == 15 and (second / "model_15.zip").exists()
    assert continued["potential"]["params"] == straight["potential"]["params"]  # 10 + 5 iterations = 15 in one go
    assert main([*base, "-i", str(tmp_path / "missing.zip")]) == 2


def test_tensorboard_and_evaluations(tmp_path):
    """``-tb`` writes TensorBoard scalars; ``--eval-freq`` keeps π^Φ's true returns in evaluations.npz (here exact: the
    expected payoffs of the learned strategies) and changes no training number."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sb3_neppo.envs.games import alpha_game

    # one start: TensorBoard logs the given start's descent, which is then the returned one
    args = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.2", "--seed", "1", "-params", "n_iterations:4", "n_starts:1"]
    plain = run([*args, "-f", str(tmp_path / "plain")])
    folder = run([*args, "-f", str(tmp_path / "logs"), "-tb", str(tmp_path / "tb"), "--eval-freq", "2"])
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["potential"] == json.loads((plain / "summary.json").read_text())["potential"]
    with np.load(folder / "evaluations.npz") as evaluations:
        assert evaluations["iterations"].tolist() == [2, 4] and list(evaluations["agents"]) == summary["agents"]
        assert evaluations["results"].shape == (2, 1, 2)
        strategies = [np.array(summary["strategies"][a]) for a in summary["agents"]]
        np.testing.assert_allclose(evaluations["results"][-1, 0], alpha_game(0.2).expected_payoffs(strategies), atol=1e-9)
    events = EventAccumulator(str(tmp_path / "tb" / folder.name))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"neppo/L_beta", "neppo/max_regret", "F/player_0", "eval/return_player_1"} <= set(scalars)
    assert [e.step for e in events.Scalars("neppo/L_beta")] == [1, 2, 3, 4]
    assert events.Scalars("neppo/L_beta")[-1].value == pytest.approx(summary["objective"], rel=1e-5)
