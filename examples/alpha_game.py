"""NePPO on the paper's alpha = 0 toy game with the convex-combination potential (the paper's Fig. 1).

Maximising the sum of payoffs (what MAPPO does) picks (A2, B1), which is not a Nash equilibrium: player 0 gains 0.5 by
switching. NePPO moves the mixing weight w from 0.5 into [0.6, 1], where the cooperative optimum is the NE (A1, B1).

    python examples/alpha_game.py
"""

from sb3_neppo import NePPO

model = NePPO("matrix-alpha", potential="convex", env_kwargs={"alpha": 0.0}, seed=0)
start = model.solve_at(model.potential.get_flat_params())
print("start:  profile", [x.tolist() for x in start.policy], "F", start.F.mean.round(3), "regret", start.regret)

model.learn(n_iterations=300, progress_bar=True)
summary = model.summary()
print("after:  w =", round(summary["potential"]["weights"][0], 3), "profile", summary["strategies"], "F", summary["F"])
print("max regret", summary["max_regret"])
model.save("logs/alpha_game_convex.zip")
