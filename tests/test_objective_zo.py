"""The objective F_i / L_beta and the zeroth-order optimiser, independent of RL."""

import numpy as np
import pytest

from sb3_neppo.errors import ConfigError
from sb3_neppo.objective import f_values, log_sum_exp, log_sum_exp_se, paired_gap_se, softmax_weights
from sb3_neppo.solvers.base import FEstimate
from sb3_neppo.zeroth_order import ZerothOrderOptimizer, clip_norm, sample_directions, shrink_factors, two_point_gradient


def test_f_is_potential_gap_minus_utility_gap():
    # [Φ(π) - Φ(dev)] - [J(π) - J(dev)]
    assert f_values(1.0, 0.25, 0.5, 1.0) == pytest.approx(0.75 + 0.5)
    assert f_values(np.array([1.0, 2.0]), np.array([1.0, 1.0]), np.array([0.0, 0.0]), np.array([0.0, 3.0])).tolist() == [0, 4]


def test_log_sum_exp_bounds_and_stability():
    f = np.array([0.1, 0.3, 0.25])
    for beta in (1.0, 10.0, 1e4):
        value = log_sum_exp(f, beta)
        assert f.max() <= value <= f.max() + np.log(3) / beta + 1e-15
    assert log_sum_exp(np.array([1e3, 1e3 - 1]), 1e4) == pytest.approx(1e3)  # no overflow
    assert log_sum_exp(np.array([0.2, 0.2]), 1.0) == pytest.approx(0.2 + np.log(2))


def test_the_standard_error_of_l_beta_is_the_spread_of_l_beta_over_resampled_f():
    f, se = np.array([0.5, 0.45, 0.1]), np.array([0.02, 0.03, 0.05])
    samples = f + se * np.random.default_rng(0).standard_normal((20_000, 3))
    for beta in (1.0, 30.0, 1e4):
        spread = np.std([log_sum_exp(x, beta) for x in samples])
        assert log_sum_exp_se(f, se, beta) == pytest.approx(spread, rel=0.1 if beta < 1e3 else 0.25)
    assert log_sum_exp_se(np.array([1.0, 0.0]), np.array([0.1, 5.0]), 1e4) == pytest.approx(0.1)  # the max's own se


def test_directions_are_uniform_on_the_sphere():
    u = sample_directions(np.random.default_rng(0), 100_000, 5)
    assert np.linalg.norm(u, axis=1) == pytest.approx(np.ones(len(u)))
    assert np.abs(u.mean(0)).max() < 0.01
    assert np.abs(np.cov(u.T) - np.eye(5) / 5).max() < 0.005


def _mean_estimate(f, w, delta, n=400_000, seed=0):
    u = sample_directions(np.random.default_rng(seed), n, w.size)
    samples = w.size / (2 * delta) * (f(w + delta * u) - f(w - delta * u))[:, None] * u
    return samples.mean(0), samples.std(0) / np.sqrt(n)


def test_estimator_mean_is_the_gradient_of_a_quadratic():
    A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 3.0]])
    b = np.array([1.0, -2.0, 0.5])
    w = np.array([0.3, -0.7, 1.1])

    def f(x):
        return 0.5 * np.einsum("ni,ij,nj->n", x, A, x) + x @ b

    mean, se = _mean_estimate(f, w, delta=0.05)
    assert np.all(np.abs(mean - (A @ w + b)) < 4 * se + 1e-12)


def test_estimator_mean_is_the_gradient_of_the_ball_smoothed_quartic():
    # f(w) = Σ w_j^4; the ball-smoothed f_δ has gradient 4w³ + 12 w δ² / (d + 2), not the plain 4w³
    w, delta = np.array([0.8, -0.5, 0.3]), 0.5
    mean, se = _mean_estimate(lambda x: (x**4).sum(1), w, delta)
    smoothed = 4 * w**3 + 12 * w * delta**2 / (w.size + 2)
    assert np.all(np.abs(mean - smoothed) < 4 * se)
    assert np.abs(mean - 4 * w**3).max() > 10 * se.max()  # the test can tell the two apart


def test_two_point_gradient_formula():
    u = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = two_point_gradient(np.array([1.0, 0.0]), np.array([0.0, 0.5]), u, delta=0.1)
    assert g.tolist() == pytest.approx([2 / 0.2 * 1.0 / 2, 2 / 0.2 * -0.5 / 2])


def test_clipping_step_sizes_and_projection():
    assert np.linalg.norm(clip_norm(np.array([3.0, 4.0]), 1.0)) == pytest.approx(1.0)
    assert clip_norm(np.array([0.3, 0.4]), 1.0).tolist() == [0.3, 0.4]
    assert clip_norm(np.array([30.0, 40.0]), None).tolist() == [30.0, 40.0]
    opt = ZerothOrderOptimizer(delta=0.01, lr=0.05, lr_schedule="inv_sqrt", project=lambda w: np.clip(w, 0, 1))
    assert [opt.step_size(t) for t in (0, 3)] == pytest.approx([0.05, 0.025])
    assert ZerothOrderOptimizer(delta=0.01, lr=0.05, lr_schedule="constant").step_size(99) == 0.05
    u = np.array([[1.0, 0.0]])
    w_plus, w_minus = opt.branches(np.array([0.5, 0.5]), u)
    assert w_plus.tolist() == [[0.51, 0.5]] and w_minus.tolist() == [[0.49, 0.5]]
    w, g = opt.step(np.array([0.99, 0.5]), 0, [0.0], [1.0], u)  # descent pushes w_0 up, projection caps it
    assert g.tolist() == pytest.approx([-100.0, 0.0]) and w.tolist() == [1.0, 0.5]
    clipped = ZerothOrderOptimizer(delta=0.01, lr=0.05, max_grad_norm=10.0)
    assert clipped.step(np.zeros(2), 0, [0.0], [1.0], u)[1].tolist() == pytest.approx([-10.0, 0.0])


def test_shrinkage_stops_steps_within_the_noise_and_keeps_clear_ones():
    """shrink_z: a gap within z paired standard errors moves w not at all, one of 3 se moves it 8/9 of the clipped
    step, and an unknown (NaN) or zero se, or z = 0, is the paper's step."""
    assert shrink_factors(np.array([0.5, -3.0, 2.0, 2.0]), np.array([1.0, 1.0, np.nan, 0.0]), 1.0).tolist() == pytest.approx(
        [0.0, 8 / 9, 1.0, 1.0]
    )
    assert shrink_factors(np.array([3.0]), np.array([1.0]), 2.0).tolist() == pytest.approx([5 / 9])
    u = np.array([[1.0, 0.0]])
    opt = ZerothOrderOptimizer(delta=0.01, lr=0.05, max_grad_norm=10.0, shrink_z=1.0)
    assert opt.step(np.zeros(2), 0, [0.0], [3.0], u, gap_se=[1.0])[1].tolist() == pytest.approx([-10.0 * 8 / 9, 0.0])
    w, g = opt.step(np.zeros(2), 0, [0.0], [0.5], u, gap_se=[1.0])
    assert w.tolist() == [0.0, 0.0] and g.tolist() == [0.0, 0.0]
    assert opt.step(np.zeros(2), 0, [0.0], [3.0], u)[1].tolist() == pytest.approx([-10.0, 0.0])  # no se: no shrinkage
    plain = ZerothOrderOptimizer(delta=0.01, lr=0.05, max_grad_norm=10.0)
    assert plain.step(np.zeros(2), 0, [0.0], [0.5], u, gap_se=[1.0])[1].tolist() == pytest.approx([-10.0, 0.0])
    # two directions: each direction's part shrinks by its own factor, the clip is the unshrunk estimate's
    two = ZerothOrderOptimizer(delta=0.5, lr=1.0, shrink_z=1.0)
    g = two.step(np.zeros(2), 0, [0.0, 0.0], [3.0, 0.5], np.eye(2), gap_se=[1.0, 1.0])[1]
    assert g.tolist() == pytest.approx([-3.0 * 8 / 9, 0.0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"delta": -0.1, "lr": 0.05}, "delta must be a finite number > 0"),
        ({"delta": 0.0, "lr": 0.05}, "delta must be a finite number > 0"),
        ({"delta": float("inf"), "lr": 0.05}, "delta must be a finite number > 0"),
        ({"delta": 0.01, "lr": -0.1}, "lr must be a finite number >= 0"),
        ({"delta": 0.01, "lr": float("inf")}, "lr must be a finite number >= 0"),
        ({"delta": 0.01, "lr": float("nan")}, "lr must be a finite number >= 0"),
        ({"delta": 0.01, "lr": 0.1, "lr_schedule": "cosine"}, "lr_schedule must be one of"),
        ({"delta": 0.01, "lr": 0.1, "n_directions": 0}, "n_directions must be an integer >= 1"),
        ({"delta": 0.01, "lr": 0.1, "max_grad_norm": -1}, "max_grad_norm must be a finite number > 0"),
        ({"delta": 0.01, "lr": 0.1, "max_grad_norm": float("inf")}, "max_grad_norm must be a finite number > 0"),
        ({"delta": 0.01, "lr": 0.1, "shrink_z": -1.0}, "shrink_z must be a finite number >= 0"),
    ],
)
def test_bad_optimizer_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ZerothOrderOptimizer(**kwargs)


def test_the_log_keeps_the_gradient_before_clipping_and_the_branches_loss_gap(tmp_path):
    """progress.csv's grad_norm_raw and loss_gap: with one direction, ‖g_raw‖ = dim/(2δ)·|L⁺ - L⁻|, and the clipped
    norm is min(raw, max_grad_norm); a raw norm far above the clip says the step is set by the noise's sign."""
    import csv

    from sb3_neppo.train import main

    argv = ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.4", "-f", str(tmp_path), "--seed", "0"]
    argv += ["-params", "n_iterations:5", "n_directions:1", "max_grad_norm:0.05", "n_starts:1"]
    assert main(argv) == 0
    (progress,) = tmp_path.rglob("progress.csv")
    rows = list(csv.DictReader(progress.open()))
    dim, delta = 2, 0.01  # Table 1's quadratic potential on the 2x2 game, its delta
    for row in rows:
        raw, gap = float(row["grad_norm_raw"]), float(row["loss_gap"])
        assert raw == pytest.approx(dim / (2 * delta) * gap, rel=1e-9)
        assert float(row["grad_norm"]) == pytest.approx(min(raw, 0.05), rel=1e-9)
    assert any(float(r["grad_norm_raw"]) > 0.05 for r in rows)  # clipped at least once: the raw norm is what shows it


@pytest.mark.slow
def test_a_sampled_run_logs_the_loss_gaps_standard_error_and_lr_0_holds_w(tmp_path):
    """On a Markov game nobody listed, default settings but lr 0: w never moves (the control run of
    benchmarks.potential_moves) while the solvers go on training, so L_β still changes; loss_gap_se is the scale of
    se(L⁺ - L⁻) that the iterate's own F standard errors give, and loss_gap_se_paired the far smaller one of the paired
    episodes."""
    import csv

    import yaml

    from sb3_neppo.train import main

    argv = ["--env", "mpe2.simple_crypto_v3", "-n", "19200", "--seed", "0", "-f", str(tmp_path), "-params", "lr:0"]
    assert main(argv) == 0
    (progress,) = tmp_path.rglob("progress.csv")
    rows = list(csv.DictReader(progress.open()))
    config = yaml.safe_load((progress.parent / "config.yml").read_text())
    agents = [k[len("F_se_") :] for k in rows[0] if k.startswith("F_se_")]
    assert len(rows) == 2
    w = np.array([[float(r[k]) for k in r if k.startswith("w_")] for r in rows])
    delta, beta = config["delta"], config["beta"]
    # iterate_solve final: a row is the branch w ± δu that the next iteration starts from; w itself stays at 0
    assert np.linalg.norm(w, axis=1) == pytest.approx([delta, delta], rel=1e-5) and (w[0] != w[1]).any()
    assert float(rows[0]["L_beta"]) != float(rows[1]["L_beta"])
    for row in rows:
        f = np.array([float(row[f"F_{a}"]) for a in agents])
        se = np.array([float(row[f"F_se_{a}"]) for a in agents])
        gap_se, iterate_se = float(row["loss_gap_se"]), log_sum_exp_se(f, se, beta)
        assert iterate_se > 0 and 0.3 * np.sqrt(2) * iterate_se < gap_se < 3 * np.sqrt(2) * iterate_se
        # δ = 5e-4: the two branches are almost one policy on the same episodes, so pairing removes nearly all the noise
        assert 0 < float(row["loss_gap_se_paired"]) < 0.01 * gap_se
        assert float(row["grad_norm"]) > 0 and float(row["step_size"]) == 0.0


def test_paired_gap_se_credits_common_episodes_and_needs_the_same_ones():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 5, size=(64, 2))  # what both branches' episodes share (the same seeds)
    plus, minus = noise + [1.0, 0.0], noise
    estimate = lambda s: FEstimate(s.mean(0), s.std(0, ddof=1) / 8, samples=s)  # noqa: E731
    a, b = estimate(plus), estimate(minus)
    # the gap's per-episode terms are the constant p · (1, 0): no noise is left once the episodes are paired
    assert paired_gap_se(a, b, beta=1.0) == pytest.approx(0.0, abs=1e-12)
    unpaired = np.hypot(log_sum_exp_se(a.mean, a.se, 1.0), log_sum_exp_se(b.mean, b.se, 1.0))
    assert unpaired > 0.5  # what the unpaired bound would say
    other = estimate(rng.normal(0, 5, size=(64, 2)))  # independent episodes: the paired SE is the unpaired one's size
    p = (softmax_weights(a.mean, 1.0) + softmax_weights(other.mean, 1.0)) / 2
    assert paired_gap_se(a, other, beta=1.0) == pytest.approx(np.std((plus - other.samples) @ p, ddof=1) / 8)
    assert 0.5 * unpaired < paired_gap_se(a, other, beta=1.0) < 2 * unpaired
    assert np.isnan(paired_gap_se(a, FEstimate(b.mean, b.se), beta=1.0))  # no samples (an older study's record)
    assert np.isnan(paired_gap_se(a, estimate(minus[:32]), beta=1.0))  # not the same episodes
