"""How the VMAS and mpe2 versions of each MPE scenario differ: spaces, agents, episode length and random-play returns.

    python -m sb3_neppo.benchmarks.env_differences [--episodes 20] [--scenarios simple_tag ...]

Prints a markdown table (the one in ``docs/vmas-vs-mpe2.md``): per scenario and version, the agents in order, each
agent's observation size and action space, the episode length, the state size the potential reads, and each agent's
mean undiscounted return under uniformly random actions (Discrete actions on both; env seeds 0..episodes-1).
"""

from __future__ import annotations

import argparse

import numpy as np

from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.registry import make_env

SCENARIOS = ("simple_spread", "simple_tag", "simple_adversary", "simple_world_comm")


def describe(env_id: str, kwargs: dict, episodes: int) -> dict:
    env = make_env(env_id, kwargs)
    agents = list(env.possible_agents)
    returns, lengths = np.zeros((episodes, len(agents))), []
    for e in range(episodes):
        env.reset(seed=e)
        for agent in agents:
            env.action_space(agent).seed(e * 100 + agents.index(agent))
        steps = 0
        while env.agents:
            _, rewards, _, _, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
            returns[e] += [rewards.get(a, 0.0) for a in agents]
            steps += 1
        lengths.append(steps)
    return {
        "agents": agents,
        "obs": [int(np.prod(env.observation_space(a).shape)) for a in agents],
        "actions": [int(env.action_space(a).n) for a in agents],
        "length": int(np.median(lengths)),
        "state": StepEncoder(env).state_dim,
        "returns": returns.mean(axis=0),
    }


def _compact(values: list) -> str:
    """``[16, 16, 16, 14]`` -> ``16 ×3, 14``."""
    out, i = [], 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i]:
            j += 1
        out.append(f"{values[i]} ×{j - i}" if j - i > 1 else f"{values[i]}")
        i = j
    return ", ".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.env_differences", description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args(argv)
    print(
        "| scenario | version | agents (in order) | observation sizes | Discrete actions | episode length | state size | "
        "mean return, random play |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for scenario in args.scenarios:
        versions = {
            f"mpe2 (`mpe2.{scenario}_v3`)": (f"mpe2.{scenario}_v3", {"max_cycles": 25}),
            f"VMAS (`vmas:{scenario}`)": (f"vmas:{scenario}", {"max_steps": 25}),
        }
        for name, (env_id, kwargs) in versions.items():
            d = describe(env_id, kwargs, args.episodes)
            returns = ", ".join(f"{r:.1f}" for r in d["returns"])
            print(
                f"| {scenario} | {name} | {', '.join(d['agents'])} | {_compact(d['obs'])} | {_compact(d['actions'])} | "
                f"{d['length']} | {d['state']} | {returns} |"
            )


if __name__ == "__main__":
    main()
