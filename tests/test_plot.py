"""python -m sb3_neppo.plot: the curves it reads from run folders, the PNG it writes, bad input in one line."""

import csv
import json

import matplotlib.image
import numpy as np

from sb3_neppo.evaluate import main as evaluate_main
from sb3_neppo.plot import main, read_run
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
