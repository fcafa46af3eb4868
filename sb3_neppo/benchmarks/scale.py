"""Scale: NePPO outer iterations per second with 1 and with K worker processes.

    python -m sb3_neppo.benchmarks.scale [--env mpe2.simple_tag_v3] [--workers 1 2] [--iterations 3] [--repeats 3]

The env's ``hyperparams/neppo.yml`` settings with ``--directions`` directions per step (2m branches are solved side by
side; the solve at the new iterate is not, it needs all of them). Worker start-up is excluded (one warm-up iteration);
the worker counts are interleaved within each repeat and the medians reported, with the ratio to one worker.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from sb3_neppo.config import NePPOConfig, load_hyperparams
from sb3_neppo.neppo import NePPO


def iterations_per_s(env_id: str, workers: int, iterations: int, directions: int, seed: int) -> float:
    config = NePPOConfig.from_dict({**load_hyperparams(env_id), "n_directions": directions})
    model = NePPO(env_id, seed=seed, n_workers=workers, **config.model_kwargs())
    model.learn(1)  # starts the workers and solves the starting point
    start = time.perf_counter()
    model.learn(iterations)
    elapsed = time.perf_counter() - start
    model.close()
    return iterations / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="mpe2.simple_tag_v3")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--directions", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    results: dict[int, list[float]] = {k: [] for k in args.workers}
    for repeat in range(args.repeats):
        for k in args.workers:
            results[k].append(iterations_per_s(args.env, k, args.iterations, args.directions, seed=repeat))
            print(f"repeat {repeat} workers {k}: {results[k][-1]:.4f} iterations/s", flush=True)
    base = statistics.median(results[args.workers[0]])
    print(f"\n{args.env}, {args.directions} directions, median of {args.repeats} repeats x {args.iterations} iterations")
    print("| workers | iterations/s | ratio |")
    print("|---|---|---|")
    for k in args.workers:
        med = statistics.median(results[k])
        print(f"| {k} | {med:.4f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
