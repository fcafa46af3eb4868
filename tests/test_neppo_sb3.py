"""NePPO with the SB3 solvers: the α-family against the exact pipeline, mpe2 end to end, budgets, save/load."""

import json

import numpy as np
import pytest
import torch
from mpe2 import simple_tag_v3
from pettingzoo.utils.wrappers import BaseParallelWrapper

from sb3_neppo import NePPO, StateMixerPotential
from sb3_neppo.benchmarks.alpha_sampled import OUTER, run_pair
from sb3_neppo.errors import ConfigError
from sb3_neppo.monitors import EvalMonitor
from sb3_neppo.storage import StudyRecorder, open_storage, open_study
from sb3_neppo.train import main

# The CI-sized α-family run (the full one: python -m sb3_neppo.benchmarks.alpha_sampled)
ITERATIONS = 20


@pytest.mark.slow
@pytest.mark.parametrize("alpha", [0.0])  # the unique pure NE (mixed ones: python -m sb3_neppo.benchmarks.alpha_sampled)
def test_sampled_pipeline_lands_near_the_exact_one_on_the_alpha_family(alpha):
    result = run_pair(alpha, seed=0, iterations=ITERATIONS)  # exact max regrets of both returned profiles
    assert abs(result["sampled"] - result["exact"]) <= 2 * OUTER["delta"] + 0.02, result
    assert result["env_steps"] > 0
    if alpha == 0.0:  # the unique NE (A1, B1): both players put (almost) all mass on their first action
        # (P(A2), P(B2)) is (0.015, 0.015) on one machine and (0.054, 0.061) on another with the same seed: float
        # rounding in torch's kernels differs between CPUs, and 20 iterations of PPO amplify it
        assert max(result["sampled_strategies"]) < 0.1, result


def _tiny(tmp_path, env, *extra):
    """The default command line with a CI-sized budget (short episodes, few envs, small rollouts)."""
    args = ["--env", env, "--env-kwargs", "max_cycles:8", "-f", str(tmp_path), "--seed", "0"]
    params = ["-params", "solver_kwargs:{n_envs: 2, eval_episodes: 3, ppo: {n_steps: 8, batch_size: 64, n_epochs: 2}}"]
    assert main([*args, *params, *extra]) == 0
    folder = next((tmp_path / "neppo").glob(f"{env}_*"))
    return folder, json.loads((folder / "summary.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("env", ["mpe2.simple_world_comm_v3", "mpe2.simple_tag_v3", "mpe2.simple_adversary_v3"])
def test_mpe2_games_run_end_to_end_with_the_state_mixer(tmp_path, env):
    torch.set_num_threads(1)
    folder, summary = _tiny(tmp_path, env, "n_iterations:2")
    agents = summary["agents"]
    assert summary["solver"] == "sb3" and summary["potential"]["class"] == "StateMixerPotential"
    assert summary["iterations"] == 2 and summary["env_steps"] > 0
    assert set(summary["F"]) == set(summary["F_se"]) == set(agents)
    assert all(np.isfinite(summary["F"][a]) and summary["F_se"][a] >= 0 for a in agents)
    assert summary["regret"] is None  # needs the regret evaluator (a later issue); F and its SE are always there
    rows = (folder / "progress.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert len(rows) == 3 and all(f"F_{a}" in header and f"F_se_{a}" in header for a in agents)
    model = NePPO.load(folder / "model.zip")
    observations, _ = model.env.reset(seed=1)
    actions, _ = model.predict(observations)
    assert set(actions) == set(observations) and all(model.env.action_space(a).contains(x) for a, x in actions.items())


@pytest.mark.slow
def test_env_step_budget_is_kept_and_one_too_small_for_an_iteration_is_one_line(tmp_path, capsys):
    torch.set_num_threads(1)
    args = ["--env", "mpe2.simple_tag_v3", "--env-kwargs", "max_cycles:8", "-f", str(tmp_path / "a"), "--seed", "0"]
    params = ["-params", "solver_kwargs:{n_envs: 2, eval_episodes: 3, ppo: {n_steps: 8, batch_size: 64, n_epochs: 2}}"]
    assert main([*args, *params, "-n", "10"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: a budget of 10 env steps is less than one outer iteration of this run (600 env steps")
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").rglob("summary.json"))
    _, large = _tiny(tmp_path / "b", "mpe2.simple_tag_v3", "n_iterations:100", "-n", "6000")
    # 400 per iteration, 200 for the final solve: the run stops when the next iteration and the final solve would not fit
    assert large["env_steps"] <= 6000 and large["iterations"] == 14 and large["env_steps"] == 14 * 400 + 200


@pytest.mark.slow
def test_same_seed_same_numbers_and_save_load_restores_the_solution(tmp_path):
    torch.set_num_threads(1)
    config = dict(n_envs=2, br_updates=2, eval_episodes=3, ppo=dict(n_steps=8, batch_size=32, n_epochs=4, learning_rate=0.02))

    def run():
        env = simple_tag_v3.parallel_env(max_cycles=8)
        model = NePPO(env, solver="sb3", solver_kwargs=config, seed=4, delta=0.05, lr=0.5, n_directions=1)
        return model.learn(n_iterations=1)

    a, b = run(), run()
    np.testing.assert_array_equal(a.result.w, b.result.w)
    np.testing.assert_array_equal(a.result.F.mean, b.result.F.mean)
    assert np.linalg.norm(a.result.w) > 0 and np.abs(a.result.F.mean).max() > 0  # w moved; best responses deviated
    model = NePPO("mpe2.simple_tag_v3", env_kwargs={"max_cycles": 8}, solver="sb3", solver_kwargs=config, seed=4)
    model.learn(n_iterations=1)
    model.save(tmp_path / "m")
    loaded = NePPO.load(tmp_path / "m.zip")
    assert loaded.summary()["F"] == model.summary()["F"]
    np.testing.assert_array_equal(loaded.potential.get_flat_params(), model.potential.get_flat_params())
    observations, _ = model.env.reset(seed=0)
    assert loaded.predict(observations)[0].keys() == observations.keys()
    for agent, action in model.predict(observations, deterministic=True)[0].items():
        assert loaded.predict(observations, deterministic=True)[0][agent] == action


@pytest.mark.slow
def test_iterate_solve_final_costs_the_papers_two_solves_and_resumes_exactly(tmp_path):
    """``iterate_solve: final``: 2 solves per iteration (1 direction) plus one at the end, against 3 per iteration; a run
    resumed from a mid-run checkpoint, whose branches are all stored trials, solves the adopted branch again for its
    policy and ends with the same numbers and env-step count."""
    torch.set_num_threads(1)
    config = dict(n_envs=2, br_updates=1, eval_episodes=3, ppo=dict(n_steps=8, batch_size=16, n_epochs=2, learning_rate=0.02))
    kwargs = dict(env_kwargs={"max_cycles": 8}, solver="sb3", solver_kwargs=config, seed=2, delta=0.05, lr=0.5, n_directions=1)
    every = NePPO("mpe2.simple_tag_v3", iterate_solve="every", **kwargs).learn(n_iterations=3)
    study, _ = open_study(open_storage(None, tmp_path), "final", {})
    final = NePPO("mpe2.simple_tag_v3", iterate_solve="final", **kwargs)
    final.set_recorder(StudyRecorder(study))
    final.learn(n_iterations=3, callback=lambda log, m: m.save(tmp_path / "at1.zip") if log.iteration == 1 else None)
    per_solve = every.num_timesteps / (1 + 3 * 3)
    assert final.num_timesteps == pytest.approx(per_solve * (3 * 2 + 1), rel=0.01)  # 7 solves, not 10
    np.testing.assert_array_equal(final.result.w, final.potential.get_flat_params())  # π^Φ at the final w
    assert not np.array_equal(final.result.w, every.result.w)  # other warm starts, another path

    evaluations = []
    for _ in range(2):  # held-out evaluations: reproducible, and they change no training number
        evaluate = EvalMonitor(eval_freq=2, n_episodes=3)
        again = NePPO("mpe2.simple_tag_v3", iterate_solve="final", **kwargs).learn(n_iterations=3, callback=evaluate)
        np.testing.assert_array_equal(again.result.w, final.result.w)
        assert again.num_timesteps == final.num_timesteps and evaluate.iterations == [2]
        evaluations.append(np.array(evaluate.results))
    assert evaluations[0].shape == (1, 3, 4) and np.isfinite(evaluations[0]).all()
    np.testing.assert_array_equal(evaluations[0], evaluations[1])

    resumed = NePPO.load(tmp_path / "at1.zip")
    resumed.set_recorder(StudyRecorder(study))  # iterations 1 and 2 are stored: their branches are not solved again
    resumed.learn(n_iterations=2)
    np.testing.assert_array_equal(resumed.result.w, final.result.w)
    np.testing.assert_array_equal(resumed.result.F.mean, final.result.F.mean)
    assert resumed.num_timesteps == final.num_timesteps


@pytest.mark.slow
def test_br_every_trains_best_responses_at_every_kth_iteration_only():
    """solver_kwargs.br_every 2: iteration 1's branches play iteration 0's best responses again and take no
    best-response env steps; iterations 0 and 2 and the solve at the final iterate train them."""
    torch.set_num_threads(1)
    config = dict(n_envs=2, eval_episodes=3, br_every=2, ppo=dict(n_steps=8, batch_size=16, n_epochs=2, learning_rate=0.02))
    model = NePPO("mpe2.simple_tag_v3", env_kwargs={"max_cycles": 8}, solver_kwargs=config, seed=2, delta=0.05, lr=0.5)
    cost = model.solvers.solve_cost(len(model.agents))
    steps, best = [0], []
    model.learn(n_iterations=3, callback=lambda log, m: steps.append(m.num_timesteps) or best.append(dict(m.best_responses)))
    trained, reused = (
        cost["cooperative"] + cost["best_responses"] + cost["evaluation"],
        cost["cooperative"] + cost["evaluation"],
    )
    assert np.diff(steps).tolist() == [2 * trained, 2 * reused, 2 * trained]
    assert model.iteration_cost()["iteration_mean"] == trained + reused  # what a budget's plan counts on
    assert model.num_timesteps - steps[-1] == trained  # the final solve: fresh best responses for the certificate
    assert all(best[1][a] is best[0][a] and best[2][a] is not best[1][a] for a in model.agents)
    assert model.summary()["best_response_budget"]["every"] == 2


@pytest.mark.slow
def test_shrinkage_holds_w_where_every_gap_is_within_its_noise():
    """shrink_z: a gap within z paired standard errors moves w not at all; z huge makes every gap so, z = 0 (the
    paper's step) moves w from the same start, on the same seeds (Simple Adversary: rewards at every step, so the
    branches' L_β differ; Simple Tag's are 0 in episodes without a catch)."""
    torch.set_num_threads(1)
    config = dict(n_envs=2, eval_episodes=3, ppo=dict(n_steps=8, batch_size=16, n_epochs=2))
    kwargs = dict(env_kwargs={"max_cycles": 8}, solver_kwargs=config, seed=2, delta=0.05, lr=0.5)
    kwargs.update(potential="convex", potential_kwargs={"tie": "role"})
    held = NePPO("mpe2.simple_adversary_v3", shrink_z=1e6, **kwargs)
    w0 = held.potential.get_flat_params().copy()
    held.learn(n_iterations=2)
    np.testing.assert_array_equal(held.potential.get_flat_params(), w0)
    moved = NePPO("mpe2.simple_adversary_v3", **kwargs).learn(n_iterations=2)
    assert np.linalg.norm(moved.potential.get_flat_params() - w0) > 0


@pytest.mark.slow
def test_regret_weights_moves_weight_to_the_roles_with_the_largest_F_in_one_solve_per_iteration(tmp_path):
    """outer_step regret_weights: each iteration is one solve at w, and w then moves by lr x (each role's largest F_i less
    the roles' mean), clipped; a potential without group weights is one clear line."""
    torch.set_num_threads(1)
    config = dict(n_envs=2, eval_episodes=3, ppo=dict(n_steps=8, batch_size=16, n_epochs=2))
    kwargs = dict(env_kwargs={"max_cycles": 8}, solver_kwargs=config, seed=2, lr=0.5, max_grad_norm=10.0)
    # iterate_solve every does not apply to this step: each iteration solves at its w, and learn() at the final w
    tied = dict(potential="convex", potential_kwargs={"tie": "role"}, outer_step="regret_weights", iterate_solve="every")
    model = NePPO("mpe2.simple_adversary_v3", **tied, **kwargs)
    cost = model.iteration_cost()
    assert cost["solves"] == 1 and cost["iteration"] == cost["solve"]
    rows = []
    model.learn(n_iterations=4, callback=lambda log, m: rows.append((log, m.potential.get_flat_params(), m.num_timesteps)))
    moved = 0.0
    for k, (log, w_after, steps) in enumerate(rows):
        worst = np.array([log.F[0], max(log.F[1:])])  # adversary_0; agent_0 and agent_1 share the good agents' logit
        np.testing.assert_allclose(w_after, log.w + 0.5 * (worst - worst.mean()), rtol=1e-6, atol=1e-9)
        assert steps == (k + 1) * cost["solve"]
        moved += float(np.abs(w_after - log.w).sum())
    assert moved > 0  # F differed between the roles at least once
    # learn(2) then learn(2), recorded, is learn(4): the final solve of the first call is the next iteration's solve,
    # neither trained again nor counted twice (nor read back from the study as a second one)
    halves = NePPO("mpe2.simple_adversary_v3", **tied, **kwargs)
    halves.set_recorder(StudyRecorder(open_study(open_storage(None, tmp_path), "halves", {})[0]))
    halves.learn(n_iterations=2).learn(n_iterations=2)
    np.testing.assert_array_equal(halves.potential.get_flat_params(), model.potential.get_flat_params())
    np.testing.assert_array_equal(halves.result.F.mean, model.result.F.mean)
    assert halves.num_timesteps == model.num_timesteps  # 4 iterations (and a final solve where the last moved w)
    NePPO("mpe2.simple_adversary_v3", **tied, **kwargs).learn(n_iterations=2).save(tmp_path / "half.zip")
    reloaded = NePPO.load(tmp_path / "half.zip").learn(n_iterations=2)  # and with a save and load between them
    np.testing.assert_array_equal(reloaded.result.F.mean, model.result.F.mean)
    assert reloaded.num_timesteps == model.num_timesteps
    # so a warm model's next iteration is planned as the final solve after it, where there was one (w moved in the last
    # iteration; here it may sit at the logits' bound), else as its own solve and the final one: one env step less is
    # refused in one line; the plan pays for the iteration and, where w moved, the final solve
    need = (1 + np.array_equal(rows[-1][1], rows[-1][0].w)) * cost["solve"]
    with pytest.raises(ConfigError, match=f"less than one outer iteration of this run \\({need:,} env steps"):
        model.learn(total_timesteps=need - 1)
    before, w_before = model.num_timesteps, model.potential.get_flat_params().copy()
    model.learn(total_timesteps=need)
    final_solve = not np.array_equal(model.potential.get_flat_params(), w_before)
    assert model.num_timesteps - before == need - (not final_solve) * cost["solve"] and model.num_iterations == 5
    model.save(tmp_path / "warm.zip")  # a loaded model plans (and reuses its final solve) as the saved one
    assert NePPO.load(tmp_path / "warm.zip").next_need() == model.next_need() == (1 + (not final_solve)) * cost["solve"]
    with pytest.raises(ConfigError, match="outer_step: regret_weights moves the weights of a convex potential"):
        NePPO("mpe2.simple_adversary_v3", outer_step="regret_weights", **kwargs)


@pytest.mark.slow
def test_regret_weights_with_br_every_replays_the_best_responses_between_the_kth_iterations(tmp_path):
    """br_every 2 with the regret-weights step: iterations 1, 3, ... play the last best responses again, frozen (no
    best-response env steps: the planned cost says so), the even ones and the final solve train them; a run resumed
    from a checkpoint before a replaying iteration, whose solves are stored trials, ends with the same numbers."""
    torch.set_num_threads(1)
    config = dict(n_envs=2, eval_episodes=3, br_every=2, ppo=dict(n_steps=8, batch_size=16, n_epochs=2, learning_rate=0.02))
    model = NePPO(
        "mpe2.simple_adversary_v3",
        env_kwargs={"max_cycles": 8},
        solver_kwargs=config,
        seed=2,
        potential="convex",
        potential_kwargs={"tie": "role"},
        outer_step="regret_weights",
        lr=0.05,
    )
    cost = model.iteration_cost()
    assert cost["replaying"] == 1 and cost["iteration_mean"] == cost["solve"] - cost["best_responses"] // 2
    rows = []

    def record(log, m):
        states = {a: {k: v.clone() for k, v in p.state_dict().items()} for a, p in m.best_responses.items()}
        rows.append((m.num_timesteps, states))

    study, _ = open_study(open_storage(None, tmp_path), "regret-weights", {})
    model.set_recorder(StudyRecorder(study))

    def record_and_save(log, m):
        record(log, m)
        if log.iteration == 1:
            m.save(tmp_path / "at1.zip")

    model.learn(n_iterations=4, callback=record_and_save)
    spent = np.diff([0] + [steps for steps, _ in rows])
    assert spent.tolist() == [cost["solve"], cost["solve"] - cost["best_responses"]] * 2
    for k in (1, 3):  # the same best responses as the iteration before, parameter for parameter
        for agent, state in rows[k][1].items():
            assert all(torch.equal(state[name], rows[k - 1][1][agent][name]) for name in state)
    assert any(not torch.equal(v, rows[1][1]["agent_0"][n]) for n, v in rows[2][1]["agent_0"].items())  # trained again
    assert model.num_timesteps == rows[-1][0] + cost["solve"]  # the final solve trains them: a full solve
    resumed = NePPO.load(tmp_path / "at1.zip")
    resumed.set_recorder(StudyRecorder(study))  # iterations 1-3 and the final solve are stored: read back, replayed
    resumed.learn(n_iterations=3)
    np.testing.assert_array_equal(resumed.result.w, model.result.w)
    np.testing.assert_array_equal(resumed.result.F.mean, model.result.F.mean)
    assert resumed.num_timesteps == model.num_timesteps


class _NaNReward(BaseParallelWrapper):
    def step(self, actions):
        obs, rewards, terms, truncs, infos = self.env.step(actions)
        return obs, {**rewards, "agent_0": float("nan")}, terms, truncs, infos


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    config = dict(n_envs=1, eval_episodes=1, ppo=dict(n_steps=8, batch_size=8))
    with pytest.raises(ConfigError, match="not a PettingZoo ParallelEnv"):
        NePPO(simple_tag_v3.env(), solver="sb3")
    with pytest.raises(ConfigError, match="the state has 62 values but the state-mixer potential was built for 10"):
        NePPO("mpe2.simple_tag_v3", potential=StateMixerPotential(4, 10), solver_kwargs=config)
    model = NePPO(_NaNReward(simple_tag_v3.parallel_env()), solver="sb3", solver_kwargs=config)
    with pytest.raises(ConfigError, match="non-finite reward for agent_0: nan"):
        model.learn(n_iterations=1)
    with pytest.raises(ConfigError, match="keep_best needs exact solvers"):
        NePPO("matrix-alpha", solver="sb3", keep_best=True)
    with pytest.raises(ConfigError, match="an env-step budget needs the sampled"):
        NePPO("matrix-alpha").learn(total_timesteps=100)
    for args, message in [
        (["--env", "json.decoder"], "module 'json.decoder' has no parallel_env() factory"),
        (["--env", "mpe2.simple_tag_v3", "-params", "solver_kwargs:{n_env: 2}"], "unknown solver_kwargs key n_env;"),
        (["--env", "mpe2.simple_tag_v3", "-n", "0"], "-n must be an env-step budget >= 1"),
    ]:
        assert main([*args, "-f", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
