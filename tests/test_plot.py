"""python -m sb3_neppo.plot: the curves it reads from run folders, the PNG it writes, bad input in one line."""

import csv
import json
import shutil

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from sb3_neppo.evaluate import main as evaluate_main
from sb3_neppo.plot import draw, main, read_run, read_runs, x_axis
from sb3_neppo.train import main as train_main


def test_plot_overlays_runs_from_their_files(tmp_path, capsys):
    for seed in ("0", "1"):
        argv = ["--env", "matrix-alpha", "-params", "n_iterations:6", "--eval-freq", "2", "--seed", seed, "-f", str(tmp_path)]
        assert train_main(argv) == 0
    runs = sorted((tmp_path / "neppo").iterdir())
    assert evaluate_main([str(runs[0])]) == 0  # exact regret.json for the first run
    run = read_run(runs[0])
    rows = list(csv.DictReader((runs[0] / "progress.csv").read_text().splitlines()))
    np.testing.assert_allclose(run["F"]["player_0"], [float(r["F_player_0"]) for r in rows])
    np.testing.assert_allclose(run["max_regret"], [float(r["max_regret"]) for r in rows])
    assert run["w"].shape == (6, 2) and list(run["evaluations"]["iterations"]) == [2, 4, 6]
    assert run["regret"]["max_regret"] == json.loads((runs[0] / "summary.json").read_text())["max_regret"]
    out = tmp_path / "curves.png"
    assert main([*map(str, runs), "-o", str(out)]) == 0
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 500 and image.shape[1] > 800 and image[..., :3].std() > 0.05  # drawn, not blank
    assert "wrote" in capsys.readouterr().out


@pytest.mark.slow
def test_plot_reads_a_baseline_run_beside_a_neppo_run(tmp_path):
    """A baseline's folder has no potential and no F: its true returns per round (progress.csv) are what it plots."""
    assert (
        train_main(["--algo", "ippo", "--env", "prisoners-dilemma", "--env-kwargs", "mixed:false", "-f", str(tmp_path)]) == 0
    )
    assert train_main(["--env", "prisoners-dilemma", "-params", "n_iterations:3", "-f", str(tmp_path)]) == 0
    baseline, neppo = tmp_path / "ippo" / "prisoners-dilemma_1", tmp_path / "neppo" / "prisoners-dilemma_1"
    run = read_run(baseline)
    rows = list(csv.DictReader((baseline / "progress.csv").read_text().splitlines()))
    assert set(run["returns"]) == {"player_0", "player_1"} and np.isnan(run["w"]).all() and not run["F"]
    np.testing.assert_allclose(run["returns"]["player_1"], [float(r["return_player_1"]) for r in rows])
    assert run["env_steps"][-1] == json.loads((baseline / "summary.json").read_text())["env_steps"]
    out = tmp_path / "both.png"
    assert main([str(baseline), str(neppo), "-o", str(out), "--x", "iteration"]) == 0
    assert matplotlib.image.imread(out)[..., :3].std() > 0.05


def test_plot_bad_input_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no progress.csv" in err and err.strip().count("\n") == 0
    assert main([]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


# --- legends, the evaluator's point, the x axis ----------------------------------------------------------------------

BASELINE = ["--env", "prisoners-dilemma", "--env-kwargs", "mixed:false"]
SB3_FINAL = [  # NePPO with the sampled solvers and the paper's iterate_solve: final, CI-sized
    "--env",
    "prisoners-dilemma",
    "--seed",
    "0",
    "-params",
    "solver:sb3",
    "keep_best:false",
    "iterate_solve:final",
    "n_iterations:2",
    "n_directions:1",
    "solver_kwargs:{n_envs: 2, eval_episodes: 3, ppo: {n_steps: 8, batch_size: 16, n_epochs: 1}}",
]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """Two log folders: a/ holds an IPPO, a MAPPO and an exact NePPO run on the same game, b/ another IPPO run; each
    algorithm numbers its own folders, so all four are <algo>/prisoners-dilemma_1."""
    root = tmp_path_factory.mktemp("logs")
    for algo, folder, seed in (("ippo", "a", "0"), ("mappo", "a", "0"), ("ippo", "b", "1")):
        assert train_main(["--algo", algo, *BASELINE, "--seed", seed, "-f", str(root / folder)]) == 0
    assert train_main(["--env", "prisoners-dilemma", "-params", "n_iterations:3", "-f", str(root / "a")]) == 0
    return root


def column(folder, name):
    return [float(r[name]) for r in csv.DictReader((folder / "progress.csv").read_text().splitlines())]


def lines_by_label(ax):
    return {line.get_label(): line for line in ax.get_lines()}


@pytest.mark.slow
def test_legends_tell_algorithms_and_log_folders_apart(logs, tmp_path, capsys):
    ippo, mappo = logs / "a" / "ippo" / "prisoners-dilemma_1", logs / "a" / "mappo" / "prisoners-dilemma_1"
    other = logs / "b" / "ippo" / "prisoners-dilemma_1"
    runs = read_runs([ippo, mappo])
    assert [run["label"] for run in runs] == ["ippo/prisoners-dilemma_1", "mappo/prisoners-dilemma_1"]
    runs = read_runs([ippo, mappo, other])  # two IPPO runs of one name: the log folder tells them apart
    labels = ["a/ippo/prisoners-dilemma_1", "mappo/prisoners-dilemma_1", "b/ippo/prisoners-dilemma_1"]
    assert [run["label"] for run in runs] == labels
    fig = draw(runs, x_axis(runs))
    try:
        ax_return = fig.axes[2]
        legend = [t.get_text() for t in ax_return.get_legend().get_texts()]
        assert legend == [f"{label}: {agent}" for label in labels for agent in ("player_0", "player_1")]
        drawn = lines_by_label(ax_return)
        assert column(ippo, "return_player_1") != column(other, "return_player_1")  # two seeds: two curves
        for label, folder in zip(labels, (ippo, mappo, other)):  # each legend entry is that run's own curve
            np.testing.assert_allclose(drawn[f"{label}: player_1"].get_ydata(), column(folder, "return_player_1"))
            np.testing.assert_allclose(drawn[f"{label}: player_1"].get_xdata(), column(folder, "env_steps"))
        assert ax_return.get_xlabel() == "env steps"
    finally:
        plt.close(fig)
    assert main([str(ippo), str(mappo), str(other), "-o", str(tmp_path / "three.png")]) == 0
    assert capsys.readouterr().err == ""


def test_a_run_named_twice_is_one_line(logs, tmp_path, capsys):
    ippo = logs / "a" / "ippo" / "prisoners-dilemma_1"
    out = tmp_path / "twice.png"
    assert main([str(ippo), str(ippo.parent / ".." / "ippo" / ippo.name), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "give each run folder once" in err, err
    assert not out.exists()


def test_a_run_outside_its_algorithms_folder_is_named_with_its_algorithm(logs, tmp_path):
    moved = tmp_path / "best"
    shutil.copytree(logs / "a" / "mappo" / "prisoners-dilemma_1", moved)
    runs = read_runs([moved, logs / "a" / "ippo" / "prisoners-dilemma_1"])
    assert [run["label"] for run in runs] == ["mappo: best", "ippo/prisoners-dilemma_1"]
    (moved / "summary.json").unlink()  # an unfinished run: args.yml names the algorithm
    assert read_run(moved)["label"] == "mappo: best"


def test_plot_an_args_yml_that_is_not_yaml_is_one_line(logs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(logs / "a" / "ippo" / "prisoners-dilemma_1", run)
    (run / "summary.json").unlink()  # unfinished: args.yml names the algorithm
    (run / "args.yml").write_text("algo: [ippo\n")
    assert main([str(run), "-o", str(tmp_path / "curves.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "args.yml is not valid YAML" in err, err
    assert not (tmp_path / "curves.png").exists()


def evaluator_point(fig, x_label):
    """The evaluator's point (a Line2D with one marker) and its interval (the errorbar's segment) in the regret panel."""
    ax = fig.axes[0]
    point = lines_by_label(ax)[x_label]
    (segment,) = ax.containers[0].lines[2][0].get_segments()
    return point.get_xdata().tolist(), point.get_ydata().tolist(), segment[:, 0].tolist(), segment[:, 1].tolist()


def test_the_evaluator_point_sits_at_the_final_model_of_an_iterate_solve_final_run(tmp_path):
    """iterate_solve: final solves once more at the final w after the last row of progress.csv: the final model, and
    the regret evaluate scored on it, are at summary.json's env steps, not at the last row's."""
    assert train_main([*SB3_FINAL, "-f", str(tmp_path)]) == 0
    folder = tmp_path / "neppo" / "prisoners-dilemma_1"
    summary = json.loads((folder / "summary.json").read_text())
    assert column(folder, "env_steps")[-1] < summary["env_steps"]  # the final solve came after the last row
    assert column(folder, "iteration")[-1] == summary["iterations"] == 2
    assert evaluate_main([str(folder)]) == 0
    report = json.loads((folder / "regret.json").read_text())
    assert report["model"]["env_steps"] == summary["env_steps"]
    runs = read_runs([folder])
    label = "neppo/prisoners-dilemma_1 (evaluator)"
    for x, at in (("env_steps", summary["env_steps"]), ("iteration", summary["iterations"])):
        fig = draw(runs, x)
        try:
            xs, ys, bar_x, bar_y = evaluator_point(fig, label)
            assert xs == [at] and ys == [report["max_regret"]] and bar_x == [at, at]
            np.testing.assert_allclose(bar_y, report["max_regret_ci"])
            assert lines_by_label(fig.axes[0])["neppo/prisoners-dilemma_1"].get_xdata()[-1] == column(folder, x)[-1]
        finally:
            plt.close(fig)


@pytest.mark.slow
def test_the_evaluator_point_of_a_baseline_sits_at_the_model_it_scored(logs, tmp_path, capsys):
    """A finished baseline: at summary.json's env steps and rounds. An unfinished one (killed between checkpoints, which
    come every checkpoint_freq env steps): at its checkpoint's, rounds before the last row, and plotted, not stale."""
    finished = tmp_path / "ippo" / "prisoners-dilemma_1"
    shutil.copytree(logs / "a" / "ippo" / "prisoners-dilemma_1", finished)
    assert evaluate_main([str(finished)]) == 0
    summary = json.loads((finished / "summary.json").read_text())
    report = json.loads((finished / "regret.json").read_text())
    for x, at in (("env_steps", summary["env_steps"]), ("iteration", summary["iterations"])):
        fig = draw(read_runs([finished]), x)
        try:
            assert evaluator_point(fig, "ippo/prisoners-dilemma_1 (evaluator)")[:2] == ([at], [report["max_regret"]])
            assert fig.axes[0].get_xlabel() == {"env_steps": "env steps", "iteration": "training round"}[x]
        finally:
            plt.close(fig)

    argv = ["--algo", "ippo", *BASELINE, "--seed", "0", "--save-freq", "10", "-f", str(tmp_path / "killed")]
    assert train_main(argv) == 0
    run = tmp_path / "killed" / "ippo" / "prisoners-dilemma_1"
    shutil.copy(run / "model_10.zip", run / "checkpoint.zip")  # a kill after round 13 leaves the round-10 checkpoint
    (run / "summary.json").unlink()
    (run / "model.zip").unlink()
    rows = (run / "progress.csv").read_text().splitlines(keepends=True)
    (run / "progress.csv").write_text("".join(rows[:14]))
    assert evaluate_main([str(run)]) == 0
    report = json.loads((run / "regret.json").read_text())
    steps = column(run, "env_steps")
    assert report["model"]["file"] == "checkpoint.zip" and report["model"]["iterations"] == 10
    assert report["model"]["env_steps"] == steps[9] < steps[-1]
    capsys.readouterr()
    runs = read_runs([run])
    assert capsys.readouterr().err == ""  # the checkpoint it scored is the current one: not stale
    for x, at in (("env_steps", steps[9]), ("iteration", 10)):
        fig = draw(runs, x)
        try:
            assert evaluator_point(fig, "ippo/prisoners-dilemma_1 (evaluator)")[:2] == ([at], [report["max_regret"]])
        finally:
            plt.close(fig)
    (run / "checkpoint.zip").write_bytes(b"PK\x03\x04 torn")
    assert main([str(run), "-o", str(tmp_path / "curves.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "checkpoint.zip is not a readable model archive" in err, err
    (run / "checkpoint.zip").unlink()  # no model left to have scored: the curves without the point, and a warning
    assert "regret" not in read_run(run)
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: ") and "\n" not in err and "the unfinished run has no checkpoint.zip" in err, err


def test_the_evaluator_point_of_a_keep_best_run_says_which_iterate_it_scored(tmp_path):
    """keep_best (the default on normal-form games): the model is the iterate with the lowest L_β, here the start."""
    assert train_main(["--env", "matching-pennies", "-params", "n_iterations:6", "--seed", "0", "-f", str(tmp_path)]) == 0
    folder = tmp_path / "neppo" / "matching-pennies_1"
    summary = json.loads((folder / "summary.json").read_text())
    kept = summary["selected_iteration"]
    assert kept != summary["iterations"] == 6
    assert evaluate_main([str(folder)]) == 0
    fig = draw(read_runs([folder]), "iteration")
    try:
        label = f"neppo/matching-pennies_1 (evaluator, iterate {kept} kept)"
        assert evaluator_point(fig, label)[:2] == ([6], [pytest.approx(summary["max_regret"])])
        assert fig.axes[0].get_xlabel() == "outer iteration"
    finally:
        plt.close(fig)


def test_against_env_steps_a_run_without_env_steps_is_named_in_a_warning(logs, tmp_path, capsys):
    """An exact NePPO run beside a baseline: --x auto plots env steps, where the NePPO run sits at x = 0; a warning
    says so. Against iterations the axis says that a baseline's row is a training round."""
    neppo, ippo = logs / "a" / "neppo" / "prisoners-dilemma_1", logs / "a" / "ippo" / "prisoners-dilemma_1"
    runs = read_runs([neppo, ippo])
    capsys.readouterr()
    assert x_axis(runs, "auto") == "env_steps"
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: neppo/prisoners-dilemma_1 took no env steps") and "\n" not in err, err
    assert "--x iteration" in err
    assert x_axis(runs, "iteration") == "iteration" and capsys.readouterr().err == ""
    fig = draw(runs, "iteration")
    try:
        assert {ax.get_xlabel() for ax in fig.axes} == {"outer iteration (NePPO) / training round (baselines)"}
        np.testing.assert_array_equal(lines_by_label(fig.axes[0])["neppo/prisoners-dilemma_1"].get_xdata(), [1, 2, 3])
    finally:
        plt.close(fig)
    assert main([str(neppo), str(ippo), "-o", str(tmp_path / "auto.png")]) == 0
    assert "took no env steps" in capsys.readouterr().err
