"""Closed-form solvers for normal-form games.

The game is played in mixed strategies: a joint policy is a list of probability vectors, one per player, and
Φ_w(x) = φ_w(s, x, u(x)) with u(x) the expected payoffs (for reward-mixing potentials this equals the expected
potential reward; for the quadratic potential it is the paper's definition).

* cooperative solve: the maximiser of Φ_w over mixed profiles. Closed forms: the quadratic potential's projected
  targets; for reward mixtures the best pure profile of Σ_i λ_i u_i (a multilinear function attains its maximum at a
  pure profile). Any other potential is maximised numerically (all pure profiles, then projected gradient ascent from
  the best of them, the warm start and random starts).
* best response: the best pure action (lowest index on ties).
* evaluation: exact expected payoffs and potential values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sb3_neppo.envs.games import NormalFormGame, one_hot
from sb3_neppo.potentials import Potential, QuadraticPotential, RewardMixturePotential, project_simplex
from sb3_neppo.solvers.base import BestResponseSolver, CooperativeSolver, Estimate, PolicyEvaluator, Solvers

Profile = list[np.ndarray]


class NormalFormPotential:
    """Evaluates a potential on batches of mixed profiles of a normal-form game (differentiably, in torch)."""

    def __init__(self, game: NormalFormGame, state: np.ndarray):
        self.game = game
        self.state = torch.as_tensor(np.asarray(state, dtype=np.float64).reshape(1, -1))
        self.payoffs = torch.tensor(game.payoffs)
        self.kmax = max(game.n_actions)

    def values(self, potential: Potential, strategies: Sequence) -> torch.Tensor:
        """Φ_w at P profiles: ``strategies[i]`` (array or tensor) has shape ``(P, k_i)``; returns ``[P]``."""
        dtype = next(potential.parameters()).dtype
        xs = [torch.as_tensor(x, dtype=torch.float64) for x in strategies]
        rewards = torch.einsum(self.game.einsum_spec, self.payoffs, *xs)
        actions = torch.stack([torch.nn.functional.pad(x, (0, self.kmax - x.shape[1])) for x in xs], 1)
        state = self.state.expand(actions.shape[0], -1)
        return potential(state.to(dtype), actions.to(dtype), rewards.to(dtype))


class ExactCooperativeSolver(CooperativeSolver):
    """π^Φ = argmax over mixed profiles of Φ_w (see the module docstring)."""

    def __init__(self, game: NormalFormGame, state: np.ndarray, n_restarts: int = 8, ascent_steps: int = 300, seed: int = 0):
        self.game = game
        self.phi = NormalFormPotential(game, state)
        self.n_restarts, self.ascent_steps = n_restarts, ascent_steps
        self.rng = np.random.default_rng(seed)
        self._pure = game.pure_profiles()

    def solve(self, potential: Potential, warm_start: Profile | None = None) -> Profile:
        if isinstance(potential, QuadraticPotential):
            return [project_simplex(p) for p in potential.target_strategies()]
        if isinstance(potential, RewardMixturePotential):
            dtype = next(potential.parameters()).dtype
            with torch.no_grad():
                weights = potential.weights(self.phi.state.to(dtype))[0].double().numpy()
            scores = np.tensordot(weights, self.game.payoffs, axes=1)
            best = np.unravel_index(int(np.argmax(scores)), scores.shape)
            return [one_hot(a, k) for a, k in zip(best, self.game.n_actions)]
        return self._numerical_maximiser(potential, warm_start)

    def _numerical_maximiser(self, potential: Potential, warm_start: Profile | None) -> Profile:
        ks = self.game.n_actions
        pure = [np.eye(k)[self._pure[:, i]] for i, k in enumerate(ks)]
        with torch.no_grad():
            values = self.phi.values(potential, pure).double().numpy()
        best_pure = [x[int(np.argmax(values))] for x in pure]
        starts = [best_pure] + ([list(warm_start)] if warm_start is not None else [])
        starts += [[self.rng.dirichlet(np.ones(k)) for k in ks] for _ in range(self.n_restarts)]
        batch = [np.stack([s[i] for s in starts]) for i in range(len(ks))]
        step = 0.1
        for _ in range(self.ascent_steps):  # projected gradient ascent on all starts at once, until it settles
            xs = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in batch]
            grads = torch.autograd.grad(self.phi.values(potential, xs).sum(), xs)
            moved = [project_simplex(x + step * g.numpy()) for x, g in zip(batch, grads)]
            settled = max(np.abs(m - x).max() for m, x in zip(moved, batch)) < 1e-10
            batch = moved
            if settled:
                break
        with torch.no_grad():
            final = self.phi.values(potential, batch).double().numpy()
        j = int(np.argmax(final))
        return [x[j] for x in batch] if final[j] > values.max() else best_pure


class ExactBestResponseSolver(BestResponseSolver):
    """Player i's best pure action against the others' mixed strategies, as a one-hot strategy."""

    def __init__(self, game: NormalFormGame):
        self.game = game
        self.index = {a: i for i, a in enumerate(game.agents)}

    def solve(self, agent: str, joint: Profile, warm_start=None) -> np.ndarray:
        i = self.index[agent]
        return one_hot(self.game.best_response(i, joint), self.game.n_actions[i])


class ExactEvaluator(PolicyEvaluator):
    """Exact J_i and Φ_w at a profile and at each unilateral deviation (one batched potential call)."""

    def __init__(self, game: NormalFormGame, state: np.ndarray):
        self.game = game
        self.phi = NormalFormPotential(game, state)
        self.index = {a: i for i, a in enumerate(game.agents)}

    def evaluate(self, potential: Potential, joint: Profile, deviations: Mapping[str, np.ndarray]):
        agents = list(deviations)
        profiles = [list(joint)]
        for agent in agents:
            profile = list(joint)
            profile[self.index[agent]] = deviations[agent]
            profiles.append(profile)
        batch = [np.stack([p[i] for p in profiles]) for i in range(self.game.n_agents)]
        returns = self.game.expected_payoffs_batch(batch)
        with torch.no_grad():
            phi = self.phi.values(potential, batch).double().numpy()
        coop = Estimate(returns[:1], phi[:1])
        return coop, {a: Estimate(returns[j + 1 : j + 2], phi[j + 1 : j + 2]) for j, a in enumerate(agents)}


@dataclass
class ExactSolvers(Solvers):
    """The exact bundle: π^Φ is a list of mixed strategies, so they are the strategies, and the regret is exact."""

    game: NormalFormGame | None = None

    def strategies(self, policy: Profile) -> list[np.ndarray]:
        return [np.asarray(x) for x in policy]

    def regret(self, policy: Profile) -> np.ndarray:
        return self.game.regret(self.strategies(policy))


def exact_solvers(game: NormalFormGame, state: np.ndarray, seed: int = 0) -> ExactSolvers:
    """The exact solver set for a normal-form game."""
    return ExactSolvers(
        cooperative=ExactCooperativeSolver(game, state, seed=seed),
        best_response=ExactBestResponseSolver(game),
        evaluator=ExactEvaluator(game, state),
        exact=True,
        game=game,
    )
