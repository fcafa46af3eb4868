"""Scale: NePPO outer iterations per second with 1 and with K worker processes.

    python -m sb3_neppo.benchmarks.scale [--env mpe2.simple_tag_v3] [--workers 1 2] [--directions 1]
        [--iterate-solve final|every] [--iterations 4] [--repeats 3]

The env's ``hyperparams/neppo.yml`` settings with ``--directions`` directions per step and ``--iterate-solve`` (the
2m branches are solved side by side; with ``every`` the solve at each new iterate is not, it needs all of them). The
rate is timed between the ends of the first and the last iteration, so worker start-up and the solves before the first
and after the last iteration are excluded; the worker counts are interleaved within each repeat and the medians
reported, with the ratio to one worker.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from sb3_neppo.config import NePPOConfig
from sb3_neppo.models import settings_for
from sb3_neppo.neppo import NePPO


def iterations_per_s(env_id: str, workers: int, iterations: int, directions: int, iterate_solve: str, seed: int) -> float:
    settings = {**settings_for(env_id), "n_directions": directions, "iterate_solve": iterate_solve}
    model = NePPO(env_id, seed=seed, n_workers=workers, **NePPOConfig.from_dict(settings).model_kwargs())
    ends: list[float] = []
    model.learn(n_iterations=iterations + 1, callback=lambda log, m: ends.append(time.perf_counter()))
    model.close()
    return iterations / (ends[-1] - ends[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="mpe2.simple_tag_v3")
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--directions", type=int, default=1)
    parser.add_argument("--iterate-solve", default="final", choices=("final", "every"))
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    results: dict[int, list[float]] = {k: [] for k in args.workers}
    for repeat in range(args.repeats):
        for k in args.workers:
            rate = iterations_per_s(args.env, k, args.iterations, args.directions, args.iterate_solve, seed=repeat)
            results[k].append(rate)
            print(f"repeat {repeat} workers {k}: {results[k][-1]:.4f} iterations/s", flush=True)
    base = statistics.median(results[args.workers[0]])
    settings = f"{args.directions} directions, iterate_solve {args.iterate_solve}"
    print(f"\n{args.env}, {settings}, median of {args.repeats} repeats x {args.iterations} iterations")
    print("| workers | iterations/s | ratio |")
    print("|---|---|---|")
    for k in args.workers:
        med = statistics.median(results[k])
        print(f"| {k} | {med:.4f} | {med / base:.2f} |")


if __name__ == "__main__":
    main()
