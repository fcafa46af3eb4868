"""Exact solvers for normal-form games, and Theorem 3.1 as a property test."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sb3_neppo.envs import NormalFormGame
from sb3_neppo.potentials import ConvexCombinationPotential, Potential, QuadraticPotential, StateMixerPotential
from sb3_neppo.solvers import estimate_f, exact_solvers
from sb3_neppo.solvers.exact import NormalFormPotential

STATE = np.ones(1)


@st.composite
def games_and_potentials(draw):
    n = draw(st.integers(2, 3))
    ks = tuple(draw(st.integers(2, 3)) for _ in range(n))
    payoffs = draw(arrays(np.float64, (n, *ks), elements=st.floats(-2, 2, allow_nan=False)))
    kind = draw(st.sampled_from(["quadratic", "convex", "state_mixer"]))
    if kind == "quadratic":
        phi = QuadraticPotential(ks)
        raw = draw(arrays(np.float64, phi.dim, elements=st.floats(-0.5, 1.5, allow_nan=False)))
    elif kind == "convex":
        phi = ConvexCombinationPotential(n)
        raw = draw(arrays(np.float64, n, elements=st.floats(-3, 3, allow_nan=False)))
    else:
        phi = StateMixerPotential(n, 1)
        raw = draw(arrays(np.float64, phi.dim, elements=st.floats(-3, 3, allow_nan=False)))
    phi.double().set_flat_params(raw)  # unprojected: the branches w ± δu can leave the feasible set
    return NormalFormGame(payoffs), phi


@settings(max_examples=150, deadline=None)
@given(games_and_potentials())
def test_theorem_3_1_certificate_bounds_regret(case):
    game, phi = case
    solvers = exact_solvers(game, STATE)
    profile = solvers.cooperative.solve(phi, None)
    deviations = {a: solvers.best_response.solve(a, profile, None) for a in game.agents}
    F = estimate_f(list(game.agents), *solvers.evaluator.evaluate(phi, profile, deviations))
    regret = game.regret(profile)
    assert np.all(regret >= -1e-12)
    assert np.all(F.mean >= regret - 1e-9), (F.mean, regret)
    assert np.all(F.se == 0)


def _phi_at(game, phi, profiles):
    values = NormalFormPotential(game, STATE).values(phi, [np.stack([p[i] for p in profiles]) for i in range(game.n_agents)])
    return values.detach().numpy()


def test_cooperative_solve_is_the_global_maximiser():
    rng = np.random.default_rng(0)
    game = NormalFormGame(rng.uniform(-1, 1, (3, 2, 3, 2)))
    for phi in (ConvexCombinationPotential(3), StateMixerPotential(3, 1), QuadraticPotential([2, 3, 2])):
        phi.double().set_flat_params(rng.uniform(-1, 1, phi.dim))
        best = exact_solvers(game, STATE).cooperative.solve(phi, None)
        randoms = [[rng.dirichlet(np.ones(k)) for k in game.n_actions] for _ in range(2000)]
        assert _phi_at(game, phi, [best])[0] >= _phi_at(game, phi, randoms).max() - 1e-12


def test_quadratic_solution_is_the_projected_target_and_br_is_the_best_pure_action():
    game = NormalFormGame(np.random.default_rng(1).uniform(-1, 1, (2, 2, 2)))
    phi = QuadraticPotential([2, 2]).double()
    phi.set_flat_params(np.array([1.3, 0.25]))
    solvers = exact_solvers(game, STATE)
    profile = solvers.cooperative.solve(phi, None)
    assert profile[0].tolist() == [0.0, 1.0] and profile[1].tolist() == [0.75, 0.25]
    br = solvers.best_response.solve("player_1", profile, None)
    pure = [game.expected_payoffs([profile[0], np.eye(2)[a]])[1] for a in range(2)]
    assert br.tolist() == np.eye(2)[int(np.argmax(pure))].tolist()


class SigmoidWeights(Potential):
    """A user's own potential that follows the interface but is not one of ours: φ = Σ_i sigmoid(θ_i) r_i."""

    def __init__(self, n_agents: int):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(n_agents))

    def forward(self, state, actions, rewards):
        return (torch.sigmoid(self.theta) * rewards).sum(-1)


def test_any_potential_module_is_maximised_numerically():
    rng = np.random.default_rng(2)
    game = NormalFormGame(rng.uniform(-1, 1, (2, 3, 3)))
    phi = SigmoidWeights(2).double()
    phi.set_flat_params(np.array([0.5, -1.0]))
    profile = exact_solvers(game, STATE).cooperative.solve(phi, None)
    weights = 1 / (1 + np.exp(-np.array([0.5, -1.0])))
    scores = np.tensordot(weights, game.payoffs, axes=1)
    a, b = np.unravel_index(np.argmax(scores), scores.shape)
    assert _phi_at(game, phi, [profile])[0] == pytest.approx(scores[a, b], abs=1e-9)
