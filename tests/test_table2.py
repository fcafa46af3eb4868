"""The Table 2 and Fig. 3 benchmarks in slices: --max-runs and --time-limit bound one invocation, the same command goes on."""

import json

import pytest

from sb3_neppo.benchmarks import certificate, fig3, table2


@pytest.mark.slow
def test_one_invocation_can_be_bounded_and_the_same_command_goes_on(tmp_path, capsys):
    out = tmp_path / "t2.json"
    argv = ["--backend", "mpe2", "--scenarios", "simple_adversary", "--algos", "ippo", "--seeds", "2", "--budget", "100"]
    argv += ["--br-timesteps", "25", "--eval-episodes", "2", "--jobs", "1", "-f", str(tmp_path / "logs"), "--out", str(out)]
    table2.main([*argv, "--max-runs", "1"])
    assert [r["seed"] for r in json.loads(out.read_text())["runs"]] == [0]
    assert "1 runs left (--max-runs / --time-limit): the same command goes on with them" in capsys.readouterr().out
    table2.main([*argv, "--time-limit", "0"])  # past its limit at once: starts nothing, loses nothing
    assert len(json.loads(out.read_text())["runs"]) == 1 and "1 runs left" in capsys.readouterr().out
    table2.main(argv)
    runs = json.loads(out.read_text())["runs"]
    assert sorted(r["seed"] for r in runs) == [0, 1] and "runs left" not in capsys.readouterr().out
    assert all(r["env_steps"] >= 100 and r["max_regret"] == max(r["regret"].values()) for r in runs)
    # each run keeps what it ran; runs made with other defaults (another commit's hyperparams) get no new seeds added
    assert runs[0]["settings"]["share"] == "agent" and runs[0]["settings"]["ppo"]["n_epochs"] == 10
    saved = json.loads(out.read_text())
    saved["runs"][0]["settings"]["ppo"]["n_epochs"] = 4
    out.write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match=r"holds ippo runs on mpe2.simple_adversary_v3 with other settings: ppo.n_epochs \(4"):
        table2.main([*argv[:7], "3", *argv[8:]])


@pytest.mark.slow
def test_fig3_scores_the_last_snapshot_before_each_mark_and_resumes(tmp_path, capsys):
    out = tmp_path / "fig3.json"
    argv = ["--env", "mpe2.simple_adversary_v3", "--algos", "ippo", "--seeds", "1", "--budget", "1000", "--marks", "2"]
    argv += ["--br-timesteps", "25", "--eval-episodes", "2", "--jobs", "1", "-f", str(tmp_path / "logs"), "--out", str(out)]
    fig3.main([*argv, "--time-limit", "0"])  # past its limit at once: trains and scores nothing
    assert json.loads(out.read_text())["runs"] == [] and "1 jobs left" in capsys.readouterr().out
    fig3.main([*argv, "--plot", str(tmp_path / "fig3.png")])
    data = json.loads(out.read_text())
    (run,) = data["runs"]
    assert [s["env_steps"] for s in run["snapshots"]] == [400, 800, 1200]  # a 400-step round, one snapshot per round
    assert [(s["mark"], s["env_steps"]) for s in data["scores"]] == [(500, 400), (1000, 800)]
    assert all(s["max_regret"] == max(s["regret"].values()) for s in data["scores"])
    assert (tmp_path / "fig3.png").stat().st_size > 0 and "jobs left" not in capsys.readouterr().out
    fig3.main(argv)  # everything is in --out: nothing runs again
    assert json.loads(out.read_text()) == data and "0 runs to train, 0 snapshots to score" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="holds other settings"):  # NePPO's -params are part of what --out holds
        fig3.main([*argv, "-params", "lr:0"])
    # --compare shows another file's scores beside, relabelled; a file of another protocol is refused before any run
    fig3.main([*argv, "--compare", f"{out}=again"])
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip().startswith("ippo")]
    mine, again = [w[1:] for w in lines if w[1] != "(again)"], [w[2:] for w in lines if w[1] == "(again)"]
    assert len(mine) == 2 and again == mine and float(mine[0][2]) == pytest.approx(data["scores"][0]["max_regret"], abs=1e-3)
    assert {w[-1] for w in mine} == {"-"}  # IPPO has no certificate: its max F column is empty, not nan
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**data, "settings": {**data["settings"], "marks": 4}}))
    with pytest.raises(SystemExit, match=r"--compare .*other.json: measured .*'marks': 4.*compare runs of one protocol"):
        fig3.main([*argv, "--compare", str(other)])


@pytest.mark.slow
def test_certificate_holds_w_at_each_lambda_and_reports_its_f_and_regret(tmp_path, capsys):
    out = tmp_path / "certificate.json"
    argv = ["--env", "mpe2.simple_adversary_v3", "--weights", "0.2", "0.6", "--budget", "9600", "--br-timesteps", "25"]
    argv += ["--eval-episodes", "2", "--jobs", "1", "-f", str(tmp_path / "logs"), "--out", str(out)]
    certificate.main([*argv, "--time-limit", "0"])
    assert json.loads(out.read_text())["runs"] == [] and "2 runs left" in capsys.readouterr().out
    certificate.main(argv)
    runs = {r["lambda"]: r for r in json.loads(out.read_text())["runs"]}
    # lambda is the adversary's weight (the first agent's role), the good agents share the rest; lr 0 keeps it there
    assert runs[0.2]["weights"] == pytest.approx([0.2, 0.4, 0.4]) and runs[0.6]["weights"] == pytest.approx([0.6, 0.2, 0.2])
    assert all(
        set(r["F"]) == {"adversary_0", "agent_0", "agent_1"} and r["max_regret"] == max(r["regret"].values())
        for r in runs.values()
    )
    best = min(runs, key=lambda lam: max(runs[lam]["F"].values()))
    assert f"lowest certificate: max F {max(runs[best]['F'].values()):.3f} at lambda {best:.2f}" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--role agent_0 must be the role of some agents"):
        certificate.main([*argv, "--role", "agent_0"])


def test_the_table_pairs_neppo_with_each_baseline_by_seed():
    """Per seed NePPO / baseline on the seeds both ran (seed 2 has no IPPO run: left out), the ratio of means with a
    bootstrap interval that holds it and prints the same twice, the mean ratio and the paired difference."""
    env = "vmas:simple_world_comm"
    regrets = {"neppo": [2.0, 3.0, 9.0, 1.0], "ippo": [4.0, 12.0, None, 2.0]}
    runs = [
        {"env": env, "algo": a, "seed": s, "max_regret": v} for a, values in regrets.items() for s, v in enumerate(values) if v
    ]
    line = table2.paired(runs, env, "ippo")
    assert line == table2.paired(runs, env, "ippo")
    assert "paired by seed with IPPO (3 seeds): ratio of means 0.33 [bootstrap " in line  # 6 / 18
    assert "mean of the seeds' ratios 0.42 [" in line and "NePPO - IPPO -4 [" in line  # (0.5 + 0.25 + 0.5) / 3; -12 / 3
    assert line.endswith("per seed 0: 0.50, 1: 0.25, 3: 0.50")
    low, high = (float(x) for x in line.split("[bootstrap ")[1].split("]")[0].split(", "))
    assert 0.25 <= low <= 1 / 3 <= high <= 0.5
    assert table2.paired(runs[:1] + runs[4:5], env, "ippo") is None  # one paired seed: no interval


def test_neppo_over_the_better_baseline_uses_the_seeds_every_algorithm_ran():
    """MAPPO has seeds 0-1 only: the ratio is over seeds 0-1 (NePPO 5 / IPPO's 8, IPPO the better there), not NePPO's
    four seeds over IPPO's three."""
    env = "vmas:simple_world_comm"
    regrets = {"neppo": [2.0, 3.0, 9.0, 1.0], "ippo": [4.0, 12.0, None, 2.0], "mappo": [50.0, 60.0, None, None]}
    runs = [
        {"env": env, "algo": a, "seed": s, "max_regret": v} for a, values in regrets.items() for s, v in enumerate(values) if v
    ]
    assert table2.better_of(runs, env) == [
        "  NePPO / better of IPPO, MAPPO = 0.31 on the 2 seeds all ran (target <= 0.5; paper 0.47)"
    ]
    assert table2.better_of(runs[:4], env) == []  # no baseline
