"""Any game runs on default settings: one source of defaults for the CLI and the API, budgets that hold, env objects
that save, and honest words about F."""

import json

import numpy as np
import pytest
from gymnasium import spaces
from mpe2 import simple_tag_v3
from pettingzoo import ParallelEnv

from sb3_neppo import IPPO, NePPO
from sb3_neppo.config import PAPER_PPO, NePPOConfig
from sb3_neppo.defaults import episode_length
from sb3_neppo.errors import ConfigError
from sb3_neppo.models import settings_for
from sb3_neppo.train import main


def _summary(tmp_path, env: str) -> dict:
    folder = next((tmp_path / "neppo").glob(f"{env}_*"))
    return json.loads((folder / "summary.json").read_text())


def test_a_game_without_an_entry_gets_the_papers_markov_settings_sized_from_it():
    s = settings_for("mpe2.simple_crypto_v3")
    assert (s["n_iterations"], s["delta"], s["lr"], s["n_directions"], s["beta"], s["iterate_solve"]) == (
        10,
        5e-4,
        0.01,
        1,
        1.0,
        "final",
    )
    assert s["solver_kwargs"]["ppo"] == PAPER_PPO  # 25-step episodes: the paper's 25 steps, minibatch 16 x 25
    assert (s["solver_kwargs"]["n_envs"], s["solver_kwargs"]["eval_episodes"]) == (16, 16)
    long = settings_for("mpe2.simple_crypto_v3", env_kwargs={"max_cycles": 200})
    assert long["solver_kwargs"]["ppo"]["n_steps"] == 128 and long["solver_kwargs"]["ppo"]["batch_size"] == 16 * 128
    assert long["solver_kwargs"]["eval_episodes"] == 2
    given = settings_for("mpe2.simple_crypto_v3", given={"solver_kwargs": {"n_envs": 4, "ppo": {"n_epochs": 3}}})
    ppo = given["solver_kwargs"]["ppo"]
    assert (ppo["n_epochs"], ppo["batch_size"], ppo["ent_coef"]) == (3, 4 * 25, 0.02)  # merged, sized to the given n_envs
    normal_form = settings_for("stag-hunt")
    assert (normal_form["potential"], normal_form["n_iterations"], normal_form["beta"], normal_form["solver_kwargs"]) == (
        "quadratic",
        500,
        1e4,
        {},
    )


def test_the_python_api_uses_the_same_defaults_as_the_command_line():
    for env_id in ("mpe2.simple_tag_v3", "matrix-alpha", "vmas:simple_tag"):
        assert NePPO(env_id, seed=0).config.to_dict() == NePPOConfig.from_dict(settings_for(env_id)).to_dict()
    ippo = IPPO("mpe2.simple_tag_v3", seed=0)
    assert ippo.config.ppo["n_steps"] == 25 and ippo.config.ppo["batch_size"] == 400  # not SB3's 2048
    assert IPPO("matrix-alpha", seed=0).config.ppo["n_steps"] == 8  # the file's normal-form entry


@pytest.mark.slow
def test_api_and_cli_with_one_seed_give_the_same_numbers_within_the_budget(tmp_path):
    model = NePPO("mpe2.simple_reference_v3", seed=0).learn(total_timesteps=10_000)
    assert model.num_timesteps <= 12_500
    assert main(["--env", "mpe2.simple_reference_v3", "-n", "10000", "--seed", "0", "-f", str(tmp_path)]) == 0
    summary = _summary(tmp_path, "mpe2.simple_reference_v3")
    assert summary["env_steps"] == model.num_timesteps
    assert summary["potential"]["params"] == model.summary()["potential"]["params"]
    assert summary["F"] == model.summary()["F"]


@pytest.mark.slow
@pytest.mark.parametrize("env", ["mpe2.simple_crypto_v3", "mpe2.simple_speaker_listener_v4"])
def test_default_settings_on_unlisted_games_keep_the_budget_and_give_finite_F(tmp_path, capsys, env):
    assert main(["--env", env, "-n", "20000", "--seed", "0", "-f", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Cost: one outer iteration takes about" in out.splitlines()[0]
    summary = _summary(tmp_path, env)
    assert summary["env_steps"] <= 20_000 and summary["iterations"] >= 1
    assert all(np.isfinite(v) for v in summary["F"].values())
    assert summary["certificate"] == "estimate" and summary["best_response_budget"]["ppo_updates"] == 1


@pytest.mark.slow
def test_speaker_listener_says_its_F_bounds_nothing(tmp_path, capsys):
    """A shared-reward game: Φ (the mean reward) is every agent's own return, so F_i = 0 whatever π^Φ is; the run
    must say that F is no certificate here, not print 0 ± 0 as if it were one."""
    env = "mpe2.simple_speaker_listener_v4"
    assert main(["--env", env, "-n", "20000", "--seed", "0", "-f", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = _summary(tmp_path, env)
    assert max(abs(f) for f in summary["F"].values()) < 1e-6
    assert summary["warnings"] and all(w in out for w in summary["warnings"])
    assert "F is an estimate" in out and "python -m sb3_neppo.evaluate" in out


def test_a_budget_smaller_than_one_iteration_is_one_line(tmp_path, capsys):
    assert main(["--env", "mpe2.simple_tag_v3", "-n", "5000", "--seed", "0", "-f", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: a budget of 5,000 env steps is less than one outer iteration of this run (12,000")
    assert err.count("\n") == 1 and not out and not (tmp_path / "neppo").exists()  # refused before anything ran
    with pytest.raises(ConfigError, match="less than one outer iteration"):
        NePPO("mpe2.simple_tag_v3", seed=0).learn(total_timesteps=5000)


@pytest.mark.slow
def test_a_model_built_from_an_env_object_saves_loads_with_env_and_predicts_the_same(tmp_path):
    model = NePPO(simple_tag_v3.parallel_env(max_cycles=25), seed=0).learn(total_timesteps=12_000)
    model.save(tmp_path / "tag.zip")
    with pytest.raises(ConfigError, match="built from an env object, which is not saved: pass env="):
        NePPO.load(tmp_path / "tag.zip")
    loaded = NePPO.load(tmp_path / "tag.zip", env=simple_tag_v3.parallel_env(max_cycles=25))
    assert loaded.summary()["F"] == model.summary()["F"] and loaded.num_timesteps == model.num_timesteps
    for seed in range(3):
        observations, _ = loaded.env.reset(seed=seed)
        ours, theirs = loaded.predict(observations)[0], model.predict(observations)[0]
        assert all(np.array_equal(ours[a], theirs[a]) for a in ours)


class FiveSteps(ParallelEnv):
    """Two agents, episodes of five steps, no attribute that says so."""

    metadata = {"name": "five_steps"}

    def __init__(self):
        self.possible_agents = ["a", "b"]

    def observation_space(self, agent):
        return spaces.Box(0.0, 1.0, (1,), np.float32)

    def action_space(self, agent):
        return spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.zeros(1, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        done = self.t >= 5
        obs = {a: np.full(1, self.t / 5, np.float32) for a in self.agents}
        out = obs, {a: float(actions[a]) for a in self.agents}, {a: False for a in self.agents}, {a: done for a in self.agents}
        if done:
            self.agents = []
        return (*out, {a: {} for a in self.possible_agents})


def test_episode_length_comes_from_the_env_or_one_probe_episode():
    assert episode_length(simple_tag_v3.parallel_env(max_cycles=13)) == 13
    env = FiveSteps()
    assert episode_length(env) == 5 and not env.__dict__.get("agents")  # probed on a copy
    s = NePPO(env, seed=0).config.solver_kwargs
    assert (s["ppo"]["n_steps"], s["eval_episodes"]) == (8, 16)  # clipped to 8 steps; 16 episodes cost 80 steps


COORDINATION = [[[2, 0], [0, 1]], [[2, 0], [0, 1]]]  # two pure equilibria and a mixed one


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, kwargs",
    [
        ("stag-hunt", {}),
        ("prisoners-dilemma", {}),
        ("matrix", {"payoffs": COORDINATION}),
        ("matrix", {"payoffs": [[[3, 0, 0], [0, 2, 0], [0, 0, 1]], [[3, 0, 0], [0, 2, 0], [0, 0, 1]]]}),
    ],
)
def test_normal_form_games_with_a_pure_equilibrium_end_there_on_default_settings(env, kwargs):
    model = NePPO(env, env_kwargs=kwargs, seed=0).learn(n_iterations=100)
    payoffs = np.asarray(model.game.payoffs)
    assert model.regret().max() <= 0.01 * (payoffs.max() - payoffs.min())
    one_start = NePPO(env, env_kwargs=kwargs, seed=0, n_starts=1).learn(n_iterations=100)
    assert model.summary()["objective"] <= one_start.summary()["objective"]  # the best certificate over both descents


@pytest.mark.slow
def test_one_start_stalls_where_several_do_not_and_the_given_start_runs_unchanged():
    one = NePPO("matrix", env_kwargs={"payoffs": COORDINATION}, seed=0, n_starts=1).learn(n_iterations=200)
    several = NePPO("matrix", env_kwargs={"payoffs": COORDINATION}, seed=0).learn(n_iterations=200)
    assert one.regret().max() > 0.05  # from uniform targets the descent stops near the mixed profile
    assert several.regret().max() < 1e-9 and several.summary()["selected_start"] == 1
    np.testing.assert_array_equal(one.potential.get_flat_params(), several.potential.get_flat_params())


def test_several_starts_survive_save_and_load(tmp_path):
    model = NePPO("matrix", env_kwargs={"payoffs": COORDINATION}, seed=0).learn(n_iterations=30)
    model.save(tmp_path / "m.zip")
    loaded = NePPO.load(tmp_path / "m.zip")
    model.learn(n_iterations=20), loaded.learn(n_iterations=20)
    assert loaded.summary()["objective"] == model.summary()["objective"]
    np.testing.assert_array_equal(loaded._starts[0], model._starts[0])


def test_exact_runs_record_one_trial_per_iteration(tmp_path):
    assert main(["--env", "stag-hunt", "--seed", "0", "-params", "n_iterations:40", "-f", str(tmp_path)]) == 0
    import optuna

    from sb3_neppo.storage import open_storage

    folder = tmp_path / "neppo" / "stag-hunt_1"
    trials = optuna.load_study(study_name=folder.name, storage=open_storage(None, folder)).get_trials()
    assert sorted(t.user_attrs["iteration"] for t in trials) == list(range(41)) and {t.user_attrs["sign"] for t in trials} == {
        0
    }
