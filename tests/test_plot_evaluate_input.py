"""Bad input to ``python -m sb3_neppo.plot`` and ``python -m sb3_neppo.evaluate`` is one line (exit 2) and writes
nothing; a regret.json of another model is never plotted as the final model's; no interval from one episode."""

import csv
import io
import json
import pathlib
import shutil
import zipfile

import matplotlib.image
import numpy as np
import pytest
import torch

from sb3_neppo.errors import ConfigError
from sb3_neppo.evaluate import main as evaluate_main
from sb3_neppo.plot import main as plot_main
from sb3_neppo.plot import read_run
from sb3_neppo.regret import RegretConfig, bootstrap_ci
from sb3_neppo.train import main as train_main

TRAIN = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.4", "--seed", "0", "-params", "n_iterations:5", "--save-freq", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    assert train_main([*TRAIN, "-f", str(root)]) == 0
    return root / "neppo" / "matrix-alpha_1"


@pytest.fixture
def run(trained, tmp_path, capsys):
    """A finished run of 5 exact iterations (model.zip, model_2.zip, model_4.zip, summary.json), a copy per test."""
    folder = tmp_path / "run"
    shutil.copytree(trained, folder)
    capsys.readouterr()
    return folder


def files(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def rewrite_progress(run: pathlib.Path, edit) -> None:
    rows = list(csv.reader((run / "progress.csv").read_text().splitlines()))
    edit(rows)
    with (run / "progress.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


# --- plot -------------------------------------------------------------------------------------------------------------


def test_plot_drops_a_torn_last_line_of_progress_csv_with_a_warning(run, tmp_path, capsys):
    """A run killed while writing its sixth row: the five complete rows are plotted, the half row is not."""
    with (run / "progress.csv").open("a") as fh:
        fh.write("6,0.61")
    out = tmp_path / "torn.png"
    assert plot_main([str(run), "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("warning: ") and "last line is incomplete" in err and "\n" not in err, err
    assert out.exists()
    np.testing.assert_array_equal(read_run(run)["iteration"], [1, 2, 3, 4, 5])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda rows: rows[3].__setitem__(3, "oops"), "line 4: L_beta = 'oops' is not a number"),
        (lambda rows: [row.pop(i) for i in [rows[0].index("env_steps")] for row in rows], "no 'env_steps' column"),
        (lambda rows: rows[2].pop(), "line 3: 17 cells, but its header has 18"),
        (lambda rows: rows[1].__setitem__(0, ""), "line 2: iteration = '' is not a number"),
    ],
    ids=["non-numeric cell", "missing column", "short row", "empty iteration"],
)
def test_plot_refuses_a_malformed_progress_csv(run, tmp_path, capsys, edit, message):
    rewrite_progress(run, edit)
    out = tmp_path / "curves.png"
    assert plot_main([str(run), "-o", str(out)]) == 2
    one_line_error(capsys, "progress.csv", message)
    assert not out.exists()


def test_plot_refuses_a_progress_csv_that_is_not_text(run, tmp_path, capsys):
    (run / "progress.csv").write_bytes(b"iteration,env_steps\n1,\xff\xfe\n")
    assert plot_main([str(run), "-o", str(tmp_path / "curves.png")]) == 2
    one_line_error(capsys, "cannot read", "progress.csv")
    assert not (tmp_path / "curves.png").exists()


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("summary.json", '{"algo": "neppo", "iterations": 5', "summary.json is not valid JSON"),
        ("summary.json", "[5, 0]", "summary.json holds a JSON list, not an object"),
        ("summary.json", '{"algo": "neppo"}', "has no integer 'iterations' and 'env_steps'"),
        ("regret.json", '{"method": "exact", "max_re', "regret.json is not valid JSON"),
        ("regret.json", '{"max_regret": "high", "max_regret_ci": [0, 1]}', "no numeric max_regret with a max_regret_ci"),
        ("regret.json", '{"max_regret": 0.2, "max_regret_ci": [0.3, 0.1]}', "no numeric max_regret with a max_regret_ci"),
        ("regret.json", '{"max_regret": 0.2, "max_regret_ci": [0.1, 0.3], "model": "model.zip"}', "its 'model' is not"),
    ],
)
def test_plot_refuses_malformed_json(run, tmp_path, capsys, name, text, message):
    (run / name).write_text(text)
    out = tmp_path / "curves.png"
    assert plot_main([str(run), "-o", str(out)]) == 2
    one_line_error(capsys, message)
    assert not out.exists()


@pytest.mark.parametrize("kind", ["torn archive", "not an archive", "results of the wrong shape"])
def test_plot_refuses_a_corrupt_evaluations_npz(run, tmp_path, capsys, kind):
    path = run / "evaluations.npz"
    buffer = io.BytesIO()
    results = np.zeros((3, 4)) if kind == "results of the wrong shape" else np.zeros((3, 4, 2))
    np.savez(buffer, iterations=np.array([2, 4, 6]), timesteps=np.zeros(3), results=results, agents=np.array(["a", "b"]))
    path.write_bytes({"torn archive": buffer.getvalue()[:300], "not an archive": b"\x00" * 64}.get(kind, buffer.getvalue()))
    out = tmp_path / "curves.png"
    assert plot_main([str(run), "-o", str(out)]) == 2
    one_line_error(capsys, "evaluations.npz")
    assert not out.exists()


def test_plot_output_that_cannot_be_written_is_one_line_and_creates_nothing(run, tmp_path, capsys):
    for out, message in (
        (tmp_path / "missing" / "curves.png", "the folder"),
        (tmp_path, "is a folder"),
        (tmp_path / "curves.txt", "unknown image format '.txt'"),
    ):
        assert plot_main([str(run), "-o", str(out)]) == 2
        one_line_error(capsys, message)
    assert not (tmp_path / "missing").exists() and not (tmp_path / "curves.txt").exists()
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_plot_prints_the_path_it_wrote(run, tmp_path, capsys):
    assert plot_main([str(run), "-o", str(tmp_path / "curves")]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'curves.png'}"
    assert matplotlib.image.imread(tmp_path / "curves.png").shape[0] > 500 and not (tmp_path / "curves").exists()


def test_plot_names_a_path_that_is_not_a_run_folder(run, tmp_path, capsys):
    assert plot_main([str(tmp_path / "nowhere")]) == 2
    one_line_error(capsys, "no such run folder")
    assert plot_main([str(run / "summary.json")]) == 2
    one_line_error(capsys, "is not a folder")


def test_plot_draws_an_evaluator_interval_that_does_not_contain_its_max(run, tmp_path, capsys):
    """A bootstrap interval of a max over many agents can lie above the observed max: drawn as reported, no crash."""
    assert evaluate_main([str(run)]) == 0
    report = json.loads((run / "regret.json").read_text())
    top = report["max_regret"]
    report["max_regret_ci"] = [top + 0.01, top + 0.05]
    (run / "regret.json").write_text(json.dumps(report))
    assert read_run(run)["regret"]["max_regret_ci"] == [top + 0.01, top + 0.05]
    assert plot_main([str(run), "-o", str(tmp_path / "curves.png")]) == 0
    assert matplotlib.image.imread(tmp_path / "curves.png")[..., :3].std() > 0.05


def test_a_stale_regret_json_is_not_plotted_as_the_final_models(tmp_path, capsys):
    """evaluate scores an unfinished run's checkpoint (iteration 2), the run resumes and finishes (iteration 5): plot
    leaves the old regret out with a warning; evaluated again, the final model's regret is plotted."""
    argv = [*TRAIN, "-f", str(tmp_path)]
    assert train_main(argv) == 0
    run = tmp_path / "neppo" / "matrix-alpha_1"
    shutil.copy(run / "model_2.zip", run / "checkpoint.zip")  # what a kill after iteration 2 leaves
    (run / "summary.json").unlink()
    (run / "model.zip").unlink()
    rewrite_progress(run, lambda rows: rows.__delitem__(slice(3, None)))
    assert evaluate_main([str(run)]) == 0
    early = json.loads((run / "regret.json").read_text())
    assert early["model"] == {"file": "checkpoint.zip", "iterations": 2, "env_steps": 0, "agents": ["player_0", "player_1"]}
    assert read_run(run)["regret"]["max_regret"] == early["max_regret"]  # the unfinished run's current model

    assert train_main(argv) == 0  # resumes at iteration 2 and finishes
    summary = json.loads((run / "summary.json").read_text())
    assert summary["iterations"] == 5 and summary["max_regret"] != pytest.approx(early["max_regret"])
    capsys.readouterr()
    assert "regret" not in read_run(run)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("warning: ") and "stale" in err, err
    assert "checkpoint.zip at iteration 2" in err and "model.zip at iteration 5" in err
    assert f"rerun python -m sb3_neppo.evaluate {run}" in err

    assert evaluate_main([str(run)]) == 0
    final = read_run(run)["regret"]
    assert final["model"]["file"] == "model.zip" and final["model"]["iterations"] == 5
    assert final["max_regret"] == pytest.approx(summary["max_regret"])  # the exact regret the run itself reported


def test_evaluate_records_the_baseline_model_it_scored(tmp_path):
    argv = ["--algo", "ippo", "--env", "prisoners-dilemma", "--env-kwargs", "mixed:false", "-f", str(tmp_path)]
    assert train_main(argv) == 0
    run = tmp_path / "ippo" / "prisoners-dilemma_1"
    summary = json.loads((run / "summary.json").read_text())
    assert evaluate_main([str(run)]) == 0
    scored = json.loads((run / "regret.json").read_text())["model"]
    assert scored["file"] == "model.zip" and scored["iterations"] == summary["iterations"] > 0
    assert scored["env_steps"] == summary["env_steps"] > 0
    assert read_run(run)["regret"]["max_regret"] == pytest.approx(summary["max_regret"])


# --- evaluate ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [('{"algo": "neppo", "iterations": ', "summary.json is not valid JSON"), ("[1, 2]", "holds a JSON list")],
)
def test_evaluate_with_a_corrupt_summary_writes_nothing(run, capsys, text, message):
    (run / "summary.json").write_text(text)
    before = files(run)
    assert evaluate_main([str(run)]) == 2
    one_line_error(capsys, message)
    assert files(run) == before  # no regret.json, the summary as it was


def tampered(member: str, payload: bytes):
    def edit(run: pathlib.Path) -> None:
        original = (run / "model.zip").read_bytes()
        with zipfile.ZipFile(io.BytesIO(original)) as old, zipfile.ZipFile(run / "model.zip", "w") as new:
            for name in old.namelist():
                new.writestr(name, payload if name == member else old.read(name))

    return edit


def pickled_path() -> bytes:
    buffer = io.BytesIO()
    torch.save({"weight": pathlib.PurePosixPath("/etc/passwd")}, buffer)  # not a tensor: weights_only refuses it
    return buffer.getvalue()


@pytest.mark.parametrize(
    "edit, message",
    [
        (tampered("potential.pt", pickled_path()), "holds something other than tensors"),
        (tampered("potential.pt", b"\x80\x02garbage"), "cannot load NePPO model"),
        (tampered("data.json", b'{"env_id": "matrix-alpha"}'), "cannot load NePPO model"),
        (tampered("data.json", b'{"env_id": "matrix-alpha", "config": 3, "potential": {}}'), "cannot load NePPO model"),
    ],
    ids=["tensor member holds an object", "tensor member is garbage", "data.json without config", "config not a mapping"],
)
def test_evaluate_a_damaged_model_is_one_line(run, capsys, edit, message):
    edit(run)
    before = files(run)
    assert evaluate_main([str(run)]) == 2
    err = one_line_error(capsys, message, "model.zip")
    assert "weights_only" not in err  # never torch's advice to unpickle what the file holds
    assert files(run) == before


def test_evaluate_refuses_a_summary_of_another_model(run, capsys):
    shutil.copy(run / "model_2.zip", run / "model.zip")  # summary.json describes iteration 5
    before = files(run)
    assert evaluate_main([str(run)]) == 2
    one_line_error(capsys, "summary.json describes iteration 5", "model.zip holds iteration 2")
    assert files(run) == before


def test_evaluate_that_cannot_write_is_one_line_and_leaves_the_summary(run, capsys):
    (run / "regret.json").mkdir()  # cannot be replaced by a file
    before = files(run)
    assert evaluate_main([str(run)]) == 2
    one_line_error(capsys, "cannot write the results")
    assert files(run) == before and not list(run.glob(".*.tmp"))


def test_evaluate_some_agents_leaves_the_summary_as_it_was(run, capsys):
    """A max over some agents is not the run's max regret: regret.json holds it, summary.json is not touched."""
    before = (run / "summary.json").read_bytes()
    assert evaluate_main([str(run), "--agents", "player_1"]) == 0
    assert (run / "summary.json").read_bytes() == before
    report = json.loads((run / "regret.json").read_text())
    summary = json.loads(before)
    assert list(report["regret"]) == ["player_1"] and report["max_regret"] == pytest.approx(summary["regret"]["player_1"])
    assert "summary.json left as it was" in capsys.readouterr().out
    assert read_run(run)["regret"]["partial"] == "max over 1 of 2 agents"


def test_evaluate_refuses_an_agent_named_twice(run, capsys):
    before = files(run)
    assert evaluate_main([str(run), "--agents", "player_0", "player_0"]) == 2
    one_line_error(capsys, "--agents names player_0 twice")
    assert files(run) == before


def test_no_confidence_interval_from_one_episode_or_one_resample(run, capsys):
    """One paired episode (or one bootstrap resample) gives an interval of zero width that reads as certainty:
    refused, never reported."""
    before = files(run)
    assert evaluate_main([str(run), "--eval-episodes", "1"]) == 2
    one_line_error(capsys, "eval_episodes must be >= 2")
    assert files(run) == before
    with pytest.raises(ConfigError, match="bootstrap must be >= 40 resamples for a 95 % interval"):
        RegretConfig(bootstrap=1)
    with pytest.raises(ConfigError, match="bootstrap must be >= 200 resamples"):
        RegretConfig(bootstrap=100, confidence=0.99)
    assert RegretConfig(eval_episodes=2, bootstrap=40).bootstrap == 40
    with pytest.raises(ConfigError, match="at least 2 paired episodes"):
        bootstrap_ci(np.array([[0.3, 0.1]]), 0.95, 2000, seed=0)
