"""Throughput: env-steps/s of NePPO training vs plain SB3 PPO on the same env vs raw env stepping.

    python -m sb3_neppo.benchmarks.throughput --envs mpe2.simple_world_comm_v3 mpe2.simple_tag_v3 --repeats 3

Every row is measured side by side in one process, the modes interleaved within each repeat (this machine is shared
and noisy), and reported as the median over repeats. The modes, all on the env's default settings:

* ``raw``: the PettingZoo parallel env stepped with uniformly random actions (no learning at all);
* ``supersuit``: SB3 PPO on SuperSuit's vector env (pad wrappers, agent indicator, ``concat_vec_envs_v1``), the way
  PettingZoo's own tutorial trains one shared policy;
* ``ppo``: the same SB3 PPO on our :class:`~sb3_neppo.envs.vec.ParallelVecEnv` (true rewards);
* ``neppo``: NePPO training with the sb3 solvers and the env's ``hyperparams/neppo.yml`` settings, counting every
  env step it takes (cooperative solves, best responses, evaluation rollouts).

PPO in the last three uses the same settings (``solver_kwargs.ppo`` of the env's entry, ``n_envs`` copies).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from sb3_neppo.config import NePPOConfig
from sb3_neppo.envs.registry import make_env
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.models import settings_for
from sb3_neppo.neppo import NePPO

MODES = ("raw", "supersuit", "ppo", "neppo")


def raw_steps_per_s(env_id: str, steps: int, seed: int) -> float:
    env = make_env(env_id)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for agent in env.possible_agents:
        env.action_space(agent).seed(int(rng.integers(2**31)))
    start, done = time.perf_counter(), 0
    while done < steps:
        if not env.agents:
            env.reset()
        env.step({a: env.action_space(a).sample() for a in env.agents})
        done += 1
    return done / (time.perf_counter() - start)


def _ppo(venv, config: NePPOConfig, seed: int | None):
    from stable_baselines3 import PPO

    kwargs = {"gamma": config.solver_kwargs.get("gamma", 0.99), **config.solver_kwargs.get("ppo", {})}
    return PPO("MlpPolicy", venv, seed=seed, **kwargs)


def ppo_steps_per_s(env_id: str, config: NePPOConfig, steps: int, seed: int) -> float:
    venv = ParallelVecEnv(lambda: make_env(env_id), config.solver_kwargs.get("n_envs", 8))
    model = _ppo(venv, config, seed)
    start = time.perf_counter()
    model.learn(steps * venv.n_agents)  # SB3 counts agent-steps
    return venv.env_steps / (time.perf_counter() - start)


def supersuit_steps_per_s(env_id: str, config: NePPOConfig, steps: int) -> float:
    import supersuit as ss

    env = make_env(env_id)
    n = len(env.possible_agents)
    env = ss.agent_indicator_v0(ss.pad_action_space_v0(ss.pad_observations_v0(env)))
    venv = ss.pettingzoo_env_to_vec_env_v1(env)
    venv = ss.concat_vec_envs_v1(venv, config.solver_kwargs.get("n_envs", 8), num_cpus=0, base_class="stable_baselines3")
    model = _ppo(venv, config, None)  # SuperSuit's vector env cannot be seeded on this stack
    start = time.perf_counter()
    model.learn(steps * n)
    elapsed = time.perf_counter() - start
    venv.close()
    return model.num_timesteps / n / elapsed


def neppo_steps_per_s(env_id: str, config: NePPOConfig, steps: int, seed: int) -> float:
    model = NePPO(env_id, seed=seed, **config.model_kwargs())
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return model.num_timesteps / (time.perf_counter() - start)


def measure(env_id: str, mode: str, steps: int, seed: int) -> float:
    config = NePPOConfig.from_dict(settings_for(env_id))
    if mode == "raw":
        return raw_steps_per_s(env_id, steps, seed)
    if mode == "supersuit":
        return supersuit_steps_per_s(env_id, config, steps)
    if mode == "ppo":
        return ppo_steps_per_s(env_id, config, steps, seed)
    return neppo_steps_per_s(env_id, config, steps, seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=["mpe2.simple_world_comm_v3", "mpe2.simple_tag_v3"])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--steps", type=int, default=20000, help="env steps per measurement")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    results: dict[tuple[str, str], list[float]] = {}
    for repeat in range(args.repeats):
        for env_id in args.envs:
            for mode in args.modes:
                value = measure(env_id, mode, args.steps, seed=repeat)
                results.setdefault((env_id, mode), []).append(value)
                print(f"repeat {repeat} {env_id:28s} {mode:10s} {value:9.0f} env-steps/s", flush=True)
    print(f"\nmedian env-steps/s over {args.repeats} repeats, {args.steps} env steps each")
    print(f"| env | {' | '.join(args.modes)} | neppo / ppo | neppo / supersuit |")
    print(f"|---|{'---|' * len(args.modes)}---|---|")
    for env_id in args.envs:
        med = {m: statistics.median(results[(env_id, m)]) for m in args.modes}
        ratios = [f"{med['neppo'] / med[b]:.2f}" if {"neppo", b} <= set(med) else "-" for b in ("ppo", "supersuit")]
        cells = " | ".join(f"{med[m]:.0f}" for m in args.modes)
        print(f"| {env_id} | {cells} | {' | '.join(ratios)} |")


if __name__ == "__main__":
    main()
