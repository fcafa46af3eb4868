"""Your own game and your own potential: a 3-player game, and a potential module that is not one of the built-ins.

Any torch module that subclasses ``sb3_neppo.potentials.Potential`` and implements ``forward(state, actions, rewards)``
plugs in. This one mixes rewards, so it subclasses ``RewardMixturePotential`` and only gives ``weights(state)``: the exact
cooperative solver then knows the optimum is a pure profile. A potential of any other shape is maximised numerically
over mixed profiles (projected gradient ascent), which is slower.

    python examples/custom_game.py
"""

import numpy as np
import torch

from sb3_neppo import NePPO, NormalFormGame, RewardMixturePotential
from sb3_neppo.envs import MatrixGameEnv


class SigmoidWeights(RewardMixturePotential):
    """φ = Σ_i sigmoid(θ_i) r_i: each player's reward counts with its own weight in (0, 1)."""

    def __init__(self, n_agents: int):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.zeros(n_agents))

    def weights(self, state):
        return torch.sigmoid(self.theta).expand(state.shape[0], -1)


# A 3-player, 2x2x2 game: payoffs[i][a0, a1, a2] is player i's payoff.
payoffs = np.round(np.random.default_rng(1).uniform(-1, 1, (3, 2, 2, 2)), 1)
env = MatrixGameEnv(NormalFormGame(payoffs, agents=("alice", "bob", "carol")))

for potential in ("quadratic", SigmoidWeights(3)):
    model = NePPO(env, potential=potential, seed=0, keep_best=True).learn(n_iterations=200)
    s = model.summary()
    print(f"{s['potential']['class']:>20}: max regret {s['max_regret']:.4f}, certificate L_beta {s['objective']:.4f}")
    for agent in s["agents"]:
        print(f"{'':>22}{agent}: strategy {np.round(s['strategies'][agent], 3)}, regret {s['regret'][agent]:.4f}")
