"""The Table 2 benchmark in slices: --max-runs and --time-limit bound one invocation, the same command goes on."""

import json

import pytest

from sb3_neppo.benchmarks import table2


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
