"""The sampled pipeline against the exact one on the alpha family (mixed-strategy mode).

    python -m sb3_neppo.benchmarks.alpha_sampled [--alphas 0 0.2 0.6] [--seeds 3] [--iterations 30]

Both pipelines run Algorithm 1 with the same outer settings (:data:`OUTER`) and seeds; the exact one with closed-form
solvers, the sampled one with SB3 PPO for the cooperative solve and the best responses and rollout estimates of F
(:data:`SAMPLED`). Each reports the exact max regret of the strategies it returns; the sampled one should land within
2δ + 0.02 of the exact one, and at alpha = 0 reach the NE (A1, B1).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from sb3_neppo.neppo import NePPO

# Outer loop for both pipelines: from w0 = (0.75, 0.75); steps clipped to norm 1 so PPO can follow w.
OUTER = dict(
    potential="quadratic",
    potential_kwargs={"init": 0.75},
    delta=0.05,
    lr=0.3,
    lr_schedule="inv_sqrt",
    max_grad_norm=1.0,
    n_directions=2,
)
# One-step game: a linear policy (net_arch []) on the constant observation, deterministic play (the strategy is the
# policy's action). The cooperative PPO keeps exploring (entropy bonus) so it can track a moving potential; best
# responses start from the agent's cooperative policy with fresh, wide exploration noise and take large steps (a
# one-step best response is a pure action, possibly far from where the cooperative policy sits).
SAMPLED = dict(
    n_envs=8,
    coop_updates=6,
    br_updates=2,
    br_warm_start="cooperative",
    eval_episodes=2,
    deterministic=True,
    gamma=1.0,
    ppo=dict(
        n_steps=8,
        batch_size=64,
        n_epochs=5,
        learning_rate=0.03,
        ent_coef=0.05,
        gamma=1.0,
        clip_range=0.2,
        policy_kwargs=dict(net_arch=[], log_std_init=-0.5),
    ),
    br_ppo=dict(learning_rate=0.3, clip_range=1.0, n_epochs=10, ent_coef=0.0),
    br_log_std=1.0,
)


def run_pair(alpha: float, seed: int, iterations: int) -> dict:
    """Exact and sampled NePPO on one alpha game: exact max regret of each one's returned strategies."""
    torch.set_num_threads(1)
    exact = NePPO("matrix-alpha", env_kwargs={"alpha": alpha}, seed=seed, **OUTER).learn(n_iterations=iterations)
    sampled = NePPO("matrix-alpha", env_kwargs={"alpha": alpha}, seed=seed, solver="sb3", solver_kwargs=SAMPLED, **OUTER)
    start = time.perf_counter()
    sampled.learn(n_iterations=iterations)
    return {
        "alpha": alpha,
        "seed": seed,
        "exact": float(exact.regret().max()),
        "sampled": float(sampled.regret().max()),
        "sampled_strategies": [round(float(x[1]), 3) for x in sampled.strategies()],
        "env_steps": sampled.num_timesteps,
        "wall_time_s": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.alpha_sampled", description=__doc__.split("\n")[0])
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.0, 0.2, 0.6])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    jobs = [(alpha, seed, args.iterations) for alpha in args.alphas for seed in range(args.seeds)]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_pair, *zip(*jobs)))
    tolerance = 2 * OUTER["delta"] + 0.02
    print(f"{args.iterations} iterations, {args.seeds} seeds; tolerance 2*delta + 0.02 = {tolerance:.2f}")
    print("| alpha | seed | exact max regret | sampled max regret | gap | sampled (P(A2), P(B2)) | env steps | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        gap = abs(r["sampled"] - r["exact"])
        mark = "" if gap <= tolerance else " (over)"
        print(
            f"| {r['alpha']} | {r['seed']} | {r['exact']:.3f} | {r['sampled']:.3f} | {gap:.3f}{mark} | "
            f"{tuple(r['sampled_strategies'])} | {r['env_steps']} | {r['wall_time_s']:.0f} |"
        )
    for alpha in args.alphas:
        gaps = [abs(r["sampled"] - r["exact"]) for r in rows if r["alpha"] == alpha]
        print(f"alpha {alpha}: median gap {statistics.median(gaps):.3f}, max gap {max(gaps):.3f}")


if __name__ == "__main__":
    main()
