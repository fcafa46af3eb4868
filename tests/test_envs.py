"""Normal-form games and their PettingZoo envs."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from sb3_neppo.envs import MatrixGameEnv, NormalFormGame, alpha_game, make_env, strategy_from_action
from sb3_neppo.errors import ConfigError

PAYOFFS_3X3 = [[[1, 0, 0], [0, 2, 0], [3, 3, 4]], [[1, 0, 3], [0, 2, 3], [0, 0, 4]]]
PD = [[[3, 0], [5, 1]], [[3, 5], [0, 1]]]
PAYOFFS_3P = np.arange(3 * 2 * 2 * 3, dtype=float).reshape(3, 2, 2, 3).tolist()


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("matrix-alpha", {"alpha": 0.4, "mixed": True}),
        ("matrix-alpha", {"alpha": 0.4, "mixed": False}),
        ("matrix", {"payoffs": PAYOFFS_3X3, "mixed": True}),
        ("matrix", {"payoffs": PAYOFFS_3P, "mixed": False}),
        ("matrix", {"payoffs": PAYOFFS_3P, "mixed": True}),
        ("prisoners-dilemma", {}),
        ("stag-hunt", {"mixed": False}),
        ("matching-pennies", {}),
    ],
)
def test_parallel_api(env_id, kwargs):
    parallel_api_test(make_env(env_id, kwargs), num_cycles=20)


def test_alpha_game_payoffs_match_eq7():
    for a in (0.0, 0.4, 1.0):
        g = alpha_game(a)
        assert g.payoffs[:, 0, 0].tolist() == pytest.approx([1, 1 - 2 * a])
        assert g.payoffs[:, 0, 1].tolist() == pytest.approx([1 - 2 * a, (a + 1) / 2])
        assert g.payoffs[:, 1, 0].tolist() == pytest.approx([(1 - 3 * a) / 2, (7 - 3 * a) / 4])
        assert g.payoffs[:, 1, 1].tolist() == pytest.approx([a, 2 - 3 * a])


def test_pure_step_pays_the_profile():
    env = make_env("matrix-alpha", {"alpha": 0.0, "mixed": False})
    env.reset(seed=0)
    _, rewards, terms, truncs, infos = env.step({"player_0": 1, "player_1": 0})  # (A2, B1)
    assert rewards == {"player_0": 0.5, "player_1": 1.75}
    assert all(terms.values()) and not any(truncs.values()) and env.agents == []
    assert infos["player_0"]["rewards"].tolist() == [0.5, 1.75]


def test_mixed_step_pays_the_expected_payoff():
    env = make_env("matrix-alpha", {"alpha": 0.0})
    env.reset()
    # x = P(A2) = 0.25, y = P(B2) = 0.5, by hand from eq. 7 at alpha = 0
    _, rewards, *_ = env.step({"player_0": np.array([0.25]), "player_1": np.array([0.5])})
    p0 = 0.75 * 0.5 * 1 + 0.75 * 0.5 * 1 + 0.25 * 0.5 * 0.5 + 0.25 * 0.5 * 0
    p1 = 0.75 * 0.5 * 1 + 0.75 * 0.5 * 0.5 + 0.25 * 0.5 * 1.75 + 0.25 * 0.5 * 2
    assert rewards["player_0"] == pytest.approx(p0)
    assert rewards["player_1"] == pytest.approx(p1)


def test_three_player_expected_payoffs_by_hand():
    g = NormalFormGame(PAYOFFS_3P)
    xs = [np.array([0.3, 0.7]), np.array([0.6, 0.4]), np.array([0.2, 0.3, 0.5])]
    P = np.array(PAYOFFS_3P)
    expect = [
        sum(P[i, a, b, c] * xs[0][a] * xs[1][b] * xs[2][c] for a in range(2) for b in range(2) for c in range(3))
        for i in range(3)
    ]
    assert g.expected_payoffs(xs) == pytest.approx(expect)
    dev = [sum(P[2, a, b, c] * xs[0][a] * xs[1][b] for a in range(2) for b in range(2)) for c in range(3)]
    assert g.deviation_payoffs(2, xs) == pytest.approx(dev)
    assert g.regret(xs)[2] == pytest.approx(max(dev) - expect[2])


def test_strategy_from_action():
    assert strategy_from_action([0.25], 2).tolist() == [0.75, 0.25]
    assert strategy_from_action([1.5], 2).tolist() == [0.0, 1.0]
    assert strategy_from_action([1, 1, 2], 3).tolist() == [0.25, 0.25, 0.5]
    assert strategy_from_action([0, 0, 0], 3).tolist() == pytest.approx([1 / 3] * 3)


def test_regret_of_known_profiles():
    g = alpha_game(0.0)
    a2b1 = [np.array([0.0, 1.0]), np.array([1.0, 0.0])]
    assert g.regret(a2b1).tolist() == pytest.approx([0.5, 0.25])
    a1b1 = [np.array([1.0, 0.0]), np.array([1.0, 0.0])]
    assert g.regret(a1b1).tolist() == pytest.approx([0.0, 0.0])


@pytest.mark.parametrize(
    "env_id, kwargs, message",
    [
        ("nope", {}, "unknown env id 'nope'"),
        ("matrix", {"payoffs": [[[1, 2], [3]], [[1, 2], [3, 4]]]}, "rectangular"),
        ("matrix", {"payoffs": [[1, 2], [3, 4]]}, "shape (n, k_1, ..., k_n)"),
        ("matrix", {"payoffs": [[[1, float("nan")], [3, 4]], [[1, 2], [3, 4]]]}, "NaN"),
        ("matrix", {}, "needs its payoffs"),
        ("matrix-alpha", {"alpha": 1.5}, "alpha must lie in [0, 1]"),
        ("matrix-alpha", {"alpha": "x"}, "alpha must be a number"),
        ("matrix-alpha", {"alpah": 0.2}, "takes no argument alpah"),
        ("no_such_package.env_v0", {}, "cannot import env module"),
        ("json.decoder", {}, "has no parallel_env()"),
        (".foo", {}, "env id '.foo' is not a module path: give an absolute dotted path"),
        ("mpe2..simple_tag_v3", {}, "is not a module path"),
        ("mpe2.simple_tag_v3", {"foo": 1}, "env 'mpe2.simple_tag_v3' takes no argument foo; it accepts: num_good, "),
        (
            "mpe2.simple_tag_v3",
            {"max_cycles": -1},
            "max_cycles (PettingZoo's episode length in steps) must be an integer >= 1",
        ),
        ("mpe2.simple_tag_v3", {"max_cycles": 0}, "max_cycles (PettingZoo's episode length in steps) must be an integer >= 1"),
        ("mpe2.simple_tag_v3", {"max_cycles": True}, "must be an integer >= 1, got True"),
        ("mpe2.simple_tag_v3", {"max_cycles": "25"}, "must be an integer >= 1, got '25'"),
        ("mpe2.simple_tag_v3", {"continuous_actions": "maybe"}, "continuous_actions must be true or false, got 'maybe'"),
        (
            "mpe2.simple_tag_v3",
            {"num_agent_neighbors": -2},
            "env 'mpe2.simple_tag_v3' rejected its arguments (num_agent_neighbors=-2): AssertionError: num_agent_neighbors",
        ),
        ("vmas:simple_tag", {"max_steps": 0}, "max_steps (VMAS's episode length in steps) must be an integer >= 1, got 0"),
        ("vmas:simple_tag", {"max_steps": "x"}, "max_steps (VMAS's episode length in steps) must be an integer >= 1"),
        ("matrix", {"payoffs": PD, "action_names": 5}, "action_names must be a list, e.g. [[C, D], [C, D]]; got 5"),
        ("matrix", {"payoffs": PD, "action_names": ["CD", "CD"]}, "each player's action_names must be a list"),
        ("matrix", {"payoffs": PD, "action_names": [[True, False], ["C", "D"]]}, "must be strings (quote them"),
        ("matrix", {"payoffs": PD, "agents": "ab"}, "agents must be a list, e.g. [row, column]; got 'ab'"),
        ("matrix", {"payoffs": PD, "agents": [1, 2]}, "agents must be strings"),
        ("matrix", {"payoffs": PD, "mixed": "maybe"}, "mixed must be true or false, got 'maybe'"),
        ("stag-hunt", {"mixed": "maybe"}, "mixed must be true or false, got 'maybe'"),
        ("matrix-alpha", {"alpha": True}, "alpha must be a number, got True"),
        (
            "matrix",
            {"payoffs": [[[1e308, 0], [0, 0]], [[-1e308, 0], [0, 0]]]},
            "|u| = 1e+308, but NePPO needs |payoff| <= 1e+100",
        ),
    ],
)
def test_bad_env_input_is_one_clear_line(env_id, kwargs, message):
    with pytest.raises(ConfigError) as info:
        make_env(env_id, kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_the_python_api_refuses_what_the_command_line_does():
    """NormalFormGame and MatrixGameEnv check their own arguments (not only the registry's signature check)."""
    with pytest.raises(ConfigError, match="mixed must be true .* or false .*, got 'maybe'"):
        MatrixGameEnv(NormalFormGame(PD), mixed="maybe")
    with pytest.raises(ConfigError, match="agents must be a list, e.g. \\[row, column\\]; got 'ab'"):
        NormalFormGame(PD, agents="ab")
    with pytest.raises(ConfigError, match="alpha must be a number in \\[0, 1\\], got True"):
        alpha_game(True)
    with pytest.raises(ConfigError, match="NePPO needs \\|payoff\\| <= 1e\\+100"):
        NormalFormGame(np.full((2, 2, 2), -1e200))
    assert NormalFormGame(np.full((2, 2, 2), 1e100)).payoffs.max() == 1e100  # the bound itself is fine


def test_a_large_game_is_announced_before_work_starts_and_one_too_big_for_memory_refused():
    with pytest.warns(UserWarning, match="a large game: payoffs of shape \\(2, 1000, 1000\\) have 2,000,000 entries"):
        game = NormalFormGame(np.zeros((2, 1000, 1000)))
    assert game.n_actions == (1000, 1000)
    huge = np.broadcast_to(np.float32(0), (2, 10**9, 10**9))  # no memory of its own; float64 would need 14.9 EiB
    with pytest.raises(ConfigError, match="have 2,000,000,000,000,000,000 entries: .* GiB as float64, more than this"):
        NormalFormGame(huge)


def _module(tmp_path, monkeypatch, package: str, source: str) -> str:
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "env_v0.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{package}.env_v0"


@pytest.mark.parametrize(
    "package, source, message",
    [
        ("syntax_pkg", "def parallel_env(:\n", "cannot import env module 'syntax_pkg.env_v0': SyntaxError: "),
        (
            "raising_pkg",
            "x = 1 / 0\n",
            "cannot import env module 'raising_pkg.env_v0': ZeroDivisionError: division by zero (at ",
        ),
        ("key_pkg", "import os\nos.environ['NO_SUCH_VARIABLE_HERE']\n", "KeyError: 'NO_SUCH_VARIABLE_HERE' (at "),
        (
            "factory_pkg",
            "def parallel_env(**kwargs):\n    raise ValueError('size must be even')\n",
            "env 'factory_pkg.env_v0' rejected its arguments (size=3): ValueError: size must be even (at ",
        ),
    ],
)
def test_errors_in_a_users_env_module_are_one_clear_line(tmp_path, monkeypatch, package, source, message):
    env_id = _module(tmp_path, monkeypatch, package, source)
    with pytest.raises(ConfigError) as info:
        make_env(env_id, {"size": 3} if package == "factory_pkg" else {})
    assert message in str(info.value) and "\n" not in str(info.value)
