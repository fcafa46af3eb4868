"""NePPO on the mpe2 and the VMAS version of a scenario with the same settings: does the method behave alike on each?

    python -m sb3_neppo.benchmarks.backends [--scenarios simple_tag simple_adversary] [--iterations 10] [--seeds 3]
        [--plot backends.png]

Both runs use the scenario's mpe2 entry of ``hyperparams/neppo.yml`` unchanged (16 env copies or 16 VMAS worlds per
solver, PPO minibatch 400, one direction, iterate_solve final, ...), 25-step episodes and one torch thread; only the
backend differs. Per backend, the medians over seeds of: L_β and max_i F_i at the first and the last iteration, the
mean of max_i F_i over the iterations, |w| at the end, env steps and env-steps/s. F_i is in the scenario's own reward
units, and those differ between the versions (``python -m sb3_neppo.benchmarks.env_differences``), so the random-play
return scale is printed beside them. ``--plot`` draws max_i F_i against env steps for every run, both backends overlaid.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

from sb3_neppo.benchmarks.env_differences import describe
from sb3_neppo.config import NePPOConfig
from sb3_neppo.models import settings_for
from sb3_neppo.neppo import IterationLog, NePPO

BACKENDS = {"mpe2": "mpe2.{}_v3", "vmas": "vmas:{}"}


def run(scenario: str, backend: str, iterations: int, seed: int) -> dict:
    """One NePPO run; its per-iteration log and timing."""
    settings = settings_for(BACKENDS["mpe2"].format(scenario))  # the same settings on both backends
    env_id = BACKENDS[backend].format(scenario)
    model = NePPO(env_id, seed=seed, **NePPOConfig.from_dict(settings).model_kwargs())
    logs: list[IterationLog] = []
    start = time.perf_counter()
    model.learn(n_iterations=iterations, callback=lambda log, m: logs.append(log))
    elapsed = time.perf_counter() - start
    model.close()
    return {
        "L": [log.objective for log in logs],
        "max_F": [float(log.F.max()) for log in logs],
        "steps": [log.env_steps for log in logs],
        "w_norm": float(np.linalg.norm(logs[-1].w)),
        "env_steps": model.num_timesteps,
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.backends", description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=["simple_tag", "simple_adversary"])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--plot", default=None, help="PNG of max_i F_i against env steps, both backends overlaid")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    results: dict[tuple[str, str], list[dict]] = {}
    for scenario in args.scenarios:
        for seed in range(args.seeds):
            for backend in BACKENDS:  # interleaved: a noisy machine hurts both alike
                out = run(scenario, backend, args.iterations, seed)
                results.setdefault((scenario, backend), []).append(out)
                print(
                    f"{scenario} {backend} seed {seed}: L {out['L'][0]:.3g} -> {out['L'][-1]:.3g}, "
                    f"{out['env_steps']} env steps, {out['seconds']:.0f} s",
                    flush=True,
                )
    print(f"\nmedians over {args.seeds} seeds, {args.iterations} iterations, hyperparams/neppo.yml mpe2 settings on both")
    columns = [
        "scenario",
        "backend",
        "random-play |return| per agent",
        "L_β first → last",
        "max F first → last",
        "mean max F",
        "|w| end",
        "env steps",
        "env-steps/s",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for (scenario, backend), runs in results.items():
        scale = float(np.abs(describe(BACKENDS[backend].format(scenario), {}, 20)["returns"]).mean())

        def med(f, runs=runs) -> float:
            return statistics.median(f(r) for r in runs)

        cells = [
            scenario,
            backend,
            f"{scale:.3g}",
            f"{med(lambda r: r['L'][0]):.3g} → {med(lambda r: r['L'][-1]):.3g}",
            f"{med(lambda r: r['max_F'][0]):.3g} → {med(lambda r: r['max_F'][-1]):.3g}",
            f"{med(lambda r: float(np.mean(r['max_F']))):.3g}",
            f"{med(lambda r: r['w_norm']):.3g}",
            f"{med(lambda r: r['env_steps']):.0f}",
            f"{med(lambda r: r['env_steps'] / r['seconds']):.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(args.scenarios), figsize=(5 * len(args.scenarios), 3.6), squeeze=False)
        for ax, scenario in zip(axes[0], args.scenarios):
            for backend, color in zip(BACKENDS, ("tab:blue", "tab:orange")):
                for k, r in enumerate(results[(scenario, backend)]):
                    ax.plot(r["steps"], r["max_F"], color=color, alpha=0.7, label=backend if k == 0 else None)
            ax.set(title=scenario, xlabel="env steps", ylabel="max_i F_i")
            ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
