"""NePPO with SB3 PPO on mpe2's Simple Tag (3 adversaries chase 1 good agent): a state-mixer potential, PPO solvers.

Prints each agent's F_i (the estimated certificate, with its standard error) after an env-step budget, then saves the
model and plays one step with it. About two minutes on a laptop core.

    python examples/mpe_tag.py
"""

import torch
from mpe2 import simple_tag_v3

from sb3_neppo import NePPO

torch.set_num_threads(1)
model = NePPO(
    simple_tag_v3.parallel_env(max_cycles=25),
    potential="state_mixer",
    solver="sb3",
    solver_kwargs={"n_envs": 8, "coop_updates": 1, "br_updates": 2, "eval_episodes": 16, "ppo": {"n_steps": 32}},
    delta=0.01,
    lr=0.05,
    n_directions=1,
    seed=0,
)
model.learn(total_timesteps=50_000, progress_bar=True)
summary = model.summary()
for agent in model.agents:
    print(f"{agent:>12}: F = {summary['F'][agent]:+.4f} ± {summary['F_se'][agent]:.4f}")
print(f"{summary['iterations']} iterations, {summary['env_steps']} env steps, {summary['wall_time_s']:.0f} s")
model.save("logs/mpe_tag.zip")
observations, _ = model.env.reset(seed=1)
print("actions:", model.predict(observations)[0])
