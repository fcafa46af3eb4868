"""NePPO with exact solvers: Table 1, the paper's Fig. 1 run, reproducibility, save/load."""

import json
import zipfile

import numpy as np
import pytest

from sb3_neppo import ConvexCombinationPotential, NePPO
from sb3_neppo.benchmarks.table1 import PAPER, TOLERANCE, run_one
from sb3_neppo.config import NePPOConfig
from sb3_neppo.envs import make_env
from sb3_neppo.errors import ConfigError
from sb3_neppo.models import settings_for


def paper_settings() -> dict:
    return NePPOConfig.from_dict(settings_for("matrix-alpha")).model_kwargs()


def test_hyperparams_are_the_papers_table1_settings():
    s = settings_for("matrix-alpha")
    assert (s["potential"], s["potential_kwargs"], s["n_iterations"]) == ("quadratic", {"init": 0.75}, 500)
    assert (s["lr"], s["lr_schedule"], s["delta"], s["n_directions"], s["beta"]) == (0.05, "inv_sqrt", 0.01, 10, 1e4)


@pytest.mark.slow
@pytest.mark.parametrize("alpha", sorted(PAPER))
def test_table1_max_regret_within_paper_value(alpha):
    run = run_one(alpha, seed=0)
    assert run["last"] <= PAPER[alpha]["neppo"] + TOLERANCE  # the paper's protocol: the last iterate
    assert run["best"] <= PAPER[alpha]["neppo"] + TOLERANCE  # the best exact certificate
    assert run["best"] <= run["certificate"] + 1e-12  # Theorem 3.1 on the returned profile
    if alpha in (0.0, 0.2):  # pure NE: exact
        assert run["best"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_convex_combination_on_the_toy_game_reaches_the_nash_equilibrium():
    settings = {k: v for k, v in paper_settings().items() if k not in ("potential", "potential_kwargs", "keep_best")}
    model = NePPO("matrix-alpha", potential="convex", env_kwargs={"alpha": 0.0}, seed=0, **settings)
    model.learn(n_iterations=300)
    summary = model.summary()
    w = summary["potential"]["weights"][0]
    assert 0.6 <= w <= 1.0  # any w in [0.6, 1] makes (A1, B1) the cooperative optimum
    assert max(summary["F"].values()) == pytest.approx(0.0, abs=1e-12)
    assert summary["strategies"] == {"player_0": [1.0, 0.0], "player_1": [1.0, 0.0]}  # (A1, B1)
    assert summary["max_regret"] == 0.0


def test_convex_combination_starts_at_the_sum_maximiser_with_positive_f():
    model = NePPO("matrix-alpha", potential="convex", env_kwargs={"alpha": 0.0}, seed=0)
    branch = model.solve_at(model.potential.get_flat_params())
    assert [x.tolist() for x in branch.policy] == [[0.0, 1.0], [1.0, 0.0]]  # (A2, B1), MAPPO's answer
    assert branch.F.mean.tolist() == pytest.approx([0.625, 0.375])  # by hand, see the method page's numbers
    assert branch.regret.tolist() == pytest.approx([0.5, 0.25])


def _trajectory(seed, n=40):
    rows = []
    model = NePPO("matrix-alpha", env_kwargs={"alpha": 0.6}, seed=seed, **paper_settings())
    model.learn(n_iterations=n, callback=lambda log, m: rows.append(np.concatenate([log.w, [log.objective]])))
    return np.array(rows), model


def test_same_seed_same_numbers():
    a, _ = _trajectory(3)
    b, _ = _trajectory(3)
    c, _ = _trajectory(4)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.slow
def test_save_load_continues_exactly(tmp_path):
    full, reference = _trajectory(7, n=60)
    _, first = _trajectory(7, n=25)
    first.save(tmp_path / "model")
    assert zipfile.ZipFile(tmp_path / "model.zip").namelist() == ["data.json", "potential.pt"]
    loaded = NePPO.load(tmp_path / "model.zip")  # env rebuilt from the stored id and kwargs
    assert loaded.num_iterations == 25 and loaded.env_kwargs == {"alpha": 0.6}
    rest = []
    loaded.learn(n_iterations=35, callback=lambda log, m: rest.append(np.concatenate([log.w, [log.objective]])))
    assert np.array_equal(np.array(rest), full[25:])
    assert loaded.summary()["strategies"] == reference.summary()["strategies"]
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left no temporary file


def test_save_load_with_an_env_instance_and_predict(tmp_path):
    env = make_env("matrix", {"payoffs": [[[3, 0], [5, 1]], [[3, 5], [0, 1]]], "mixed": False})
    model = NePPO(env, seed=0, n_directions=4).learn(n_iterations=30)
    actions, _ = model.predict()
    assert actions == {"player_0": 1, "player_1": 1}  # prisoner's dilemma: (D, D)
    model.save(tmp_path / "pd.zip")
    data = json.loads(zipfile.ZipFile(tmp_path / "pd.zip").read("data.json"))
    assert data["env_id"] == "matrix" and data["env_kwargs"]["mixed"] is False
    assert NePPO.load(tmp_path / "pd.zip").predict()[0] == actions


def test_load_bad_file_is_a_clear_error(tmp_path):
    (tmp_path / "junk.zip").write_text("not a zip")
    with pytest.raises(ConfigError, match="cannot load NePPO model"):
        NePPO.load(tmp_path / "junk.zip")


def test_load_never_imports_a_module_named_by_the_file(tmp_path):
    NePPO("matrix-alpha", potential="convex", seed=0, n_directions=2).learn(n_iterations=2).save(tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        data, weights = json.loads(archive.read("data.json")), archive.read("potential.pt")
    data["potential"]["name"] = "os:system"
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as archive:
        archive.writestr("data.json", json.dumps(data))
        archive.writestr("potential.pt", weights)
    with pytest.raises(ConfigError, match="custom potential os:system; pass potential="):
        NePPO.load(tmp_path / "evil.zip")
    loaded = NePPO.load(tmp_path / "evil.zip", potential=ConvexCombinationPotential(2))
    assert loaded.num_iterations == 2


def test_bad_constructor_input():
    with pytest.raises(ConfigError, match="delta must be a finite number > 0"):
        NePPO("matrix-alpha", delta=-0.1)
    with pytest.raises(ConfigError, match="unknown solver"):
        NePPO("matrix-alpha", solver="magic")
    with pytest.raises(ConfigError, match="n_iterations must be an integer >= 1"):
        NePPO("matrix-alpha").learn(n_iterations=0)


def test_prisoners_dilemma_quadratic_finds_dd_and_convex_certifies_its_own_failure():
    quadratic = NePPO("prisoners-dilemma", seed=0, keep_best=True).learn(n_iterations=100).summary()
    assert quadratic["strategies"] == {"player_0": [0.0, 1.0], "player_1": [0.0, 1.0]}  # (D, D)
    assert max(quadratic["F"].values()) == pytest.approx(0.0, abs=1e-12)
    # no convex combination of the rewards makes (D, D) optimal: NePPO stays at (C, C) and F says so
    convex = NePPO("prisoners-dilemma", potential="convex", seed=0, n_starts=1).learn(n_iterations=50).summary()
    assert convex["strategies"] == {"player_0": [1.0, 0.0], "player_1": [1.0, 0.0]}
    assert convex["regret"] == {"player_0": 2.0, "player_1": 2.0}
    assert convex["F"] == pytest.approx({"player_0": 2.5, "player_1": 2.5}, abs=0.05)
    # with the default starts (one agent's own reward weighted 0.9) the lowest regret it reaches is (C, D), still no
    # equilibrium, and F still bounds the regret
    several = NePPO("prisoners-dilemma", potential="convex", seed=0).learn(n_iterations=50).summary()
    assert several["strategies"] == {"player_0": [1.0, 0.0], "player_1": [0.0, 1.0]} and several["selected_start"] == 1
    assert several["regret"] == {"player_0": 1.0, "player_1": 0.0}
    assert all(several["F"][a] >= several["regret"][a] for a in several["agents"])
