"""The paper's Table 2 protocol: NePPO and the baselines at equal env-step budgets, each scored by the regret evaluator.

    python -m sb3_neppo.benchmarks.table2 [--backend vmas|mpe2] [--scenarios simple_world_comm simple_tag
        simple_adversary] [--algos neppo ippo mappo maddpg] [--seeds 2] [--budget 200000] [--br-timesteps 20000]
        [--eval-episodes 64] [--jobs 2] [-f logs/table2] [--out table2.json] [--plot table2.png]
        [--max-runs N] [--time-limit SECONDS]

Every (scenario, algorithm, seed) is one ``python -m sb3_neppo.train --algo A --env E -n BUDGET --seed S`` run with
the algorithm's ``hyperparams/<algo>.yml`` entry, then ``python -m sb3_neppo.evaluate`` on its folder: per agent, PPO
best responses from scratch and from the agent's policy against the deterministic frozen others, ``--br-timesteps``
env steps each, measured on ``--eval-episodes`` paired episodes (γ = 0.99); raw gain, bootstrap 95 % CI, max over
agents. Runs go ``--jobs`` at a time (one torch thread each); ``--out`` keeps every finished run, so a killed benchmark
resumes where it stopped and a later call can add algorithms or seeds. One invocation can be bounded, so the table is
built in slices (each ending before the session that runs it): ``--max-runs N`` starts at most N runs, and
``--time-limit S`` starts none after S seconds (the runs in flight finish; give a limit that leaves time for one run);
the same command again goes on with the runs left. Printed per scenario and algorithm: the mean of
the seeds' max regret with a 95 % t-interval over seeds, each seed's value with its evaluator CI, the env steps
actually taken (NePPO starts an iteration only if it fits the budget) and wall time; NePPO's mean over the
better of IPPO's and MAPPO's (the paper: 0.47 on Simple World Comm); and, paired by seed with each baseline, the
per-seed ratios, the ratio of means with a bootstrap 95 % interval, the mean ratio and the paired difference.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np
from scipy import stats

from sb3_neppo.atomic import write_json_atomic
from sb3_neppo.benchmarks.provenance import check_same, ran

BACKENDS = {"mpe2": "mpe2.{}_v3", "vmas": "vmas:{}"}
SCENARIOS = ("simple_world_comm", "simple_tag", "simple_adversary")
ALGOS = ("neppo", "ippo", "mappo", "maddpg")
PAPER = {"simple_world_comm": {"neppo": 11.14, "ippo": 23.90, "mappo": 51.78, "maddpg": None}}


def run_one(
    env_id: str, algo: str, seed: int, budget: int, br_timesteps: int, eval_episodes: int, log_folder: str, params=()
) -> dict:
    """Train one run (with ``-params`` ``params`` when given) and evaluate it; returns what the table needs."""
    import torch

    from sb3_neppo import evaluate, train

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    extra = ["-params", *params] if params else []
    folder = train.run(["--algo", algo, "--env", env_id, "-n", str(budget), "--seed", str(seed), "-f", log_folder, *extra])
    trained = time.perf_counter()
    report = evaluate.run([str(folder), "--br-timesteps", str(br_timesteps), "--eval-episodes", str(eval_episodes)])
    summary = json.loads((folder / "summary.json").read_text())
    return {
        "env": env_id,
        "algo": algo,
        "seed": seed,
        "folder": str(folder),
        "env_steps": summary["env_steps"],
        "train_s": trained - start,
        "eval_s": time.perf_counter() - trained,
        "max_regret": report.max_regret,
        "max_regret_ci": list(report.max_ci),
        "regret": report.regret,
        "regret_ci": {r.agent: list(r.ci) for r in report.agents},
        "br_env_steps": {r.agent: r.br_env_steps for r in report.agents},
        "settings": ran(folder, env_id, algo),
    }


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval over seeds (the interval is the mean itself for one seed)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean()), float(x.mean())
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def table(runs: list[dict], scenarios: list[str], algos: list[str], backend: str) -> str:
    lines = []
    for scenario in scenarios:
        env_id = BACKENDS[backend].format(scenario)
        lines.append(f"\n{env_id}")
        header = f"  {'algo':<7} {'max regret (mean, 95% CI over seeds)':<38} {'env steps':>10} {'train s':>8} {'eval s':>7}"
        lines.append(header + "  each seed [evaluator 95% CI]")
        means = {}
        for algo in algos:
            rows = sorted((r for r in runs if r["env"] == env_id and r["algo"] == algo), key=lambda r: r["seed"])
            if not rows:
                continue
            mean, low, high = mean_ci([r["max_regret"] for r in rows])
            means[algo] = mean
            seeds = "  ".join(
                f"{r['max_regret']:.3g} [{low:.3g}, {high:.3g}]" for r in rows for low, high in [r["max_regret_ci"]]
            )
            steps = int(np.median([r["env_steps"] for r in rows]))
            train_s, eval_s = np.median([r["train_s"] for r in rows]), np.median([r["eval_s"] for r in rows])
            paper = PAPER.get(scenario, {}).get(algo)
            note = f"  (paper {paper})" if paper else ""
            lines.append(
                f"  {algo:<7} {mean:>8.3f} [{low:.3f}, {high:.3f}]{'':<17} {steps:>10} {train_s:>8.0f} {eval_s:>7.0f}  "
                f"{seeds}{note}"
            )
        if "neppo" in means:
            lines += better_of(runs, env_id)
        lines += [line for b in ("ippo", "mappo", "maddpg") if b in means for line in [paired(runs, env_id, b)] if line]
    return "\n".join(lines)


def by_seed(runs: list[dict], env_id: str) -> dict[tuple[str, int], float]:
    """Max regret by (algorithm, seed) of the runs on ``env_id``."""
    return {(r["algo"], r["seed"]): r["max_regret"] for r in runs if r["env"] == env_id}


def better_of(runs: list[dict], env_id: str) -> list[str]:
    """NePPO's mean max regret over the better baseline's (IPPO or MAPPO, by mean), both on the seeds where NePPO and
    every baseline ran, so a baseline with fewer seeds is not compared over other seeds; [] without such seeds or
    with a baseline mean <= 0."""
    by = by_seed(runs, env_id)
    bases = [a for a in ("ippo", "mappo") if any(algo == a for algo, _ in by)]
    seeds = sorted(s for a, s in by if a == "neppo" and all((b, s) in by for b in bases))
    if not bases or not seeds:
        return []
    better = min(np.mean([by[b, s] for s in seeds]) for b in bases)
    if better <= 0:
        return []
    ratio = np.mean([by["neppo", s] for s in seeds]) / better
    return [
        f"  NePPO / better of {', '.join(b.upper() for b in bases)} = {ratio:.2f} on the {len(seeds)} seeds all ran "
        "(target <= 0.5; paper 0.47)"
    ]


def paired(runs: list[dict], env_id: str, baseline: str, resamples: int = 10_000) -> str | None:
    """NePPO against ``baseline`` on the seeds where both ran: per seed NePPO / baseline, the ratio of the means with a
    paired bootstrap 95 % interval (seeds resampled with their pairs; a fixed generator, so the same data print the
    same interval), the mean of the seeds' ratios and the paired difference NePPO - baseline, each with a 95 %
    t-interval. None with fewer than 2 such seeds or a baseline regret <= 0 (no ratio)."""
    by = by_seed(runs, env_id)
    seeds = sorted(s for a, s in by if a == "neppo" and (baseline, s) in by)
    neppo, base = np.array([by["neppo", s] for s in seeds]), np.array([by[baseline, s] for s in seeds])
    if len(seeds) < 2 or (base <= 0).any():
        return None
    draws = np.random.default_rng(0).integers(len(seeds), size=(resamples, len(seeds)))
    low, high = np.percentile(neppo[draws].mean(axis=1) / base[draws].mean(axis=1), [2.5, 97.5])
    ratio, ratio_low, ratio_high = mean_ci(list(neppo / base))
    gap, gap_low, gap_high = mean_ci(list(neppo - base))
    name = baseline.upper()
    return (
        f"  paired by seed with {name} ({len(seeds)} seeds): ratio of means {neppo.mean() / base.mean():.2f} [bootstrap "
        f"{low:.2f}, {high:.2f}]; mean of the seeds' ratios {ratio:.2f} [{ratio_low:.2f}, {ratio_high:.2f}]; NePPO - "
        f"{name} {gap:+.3g} [{gap_low:+.3g}, {gap_high:+.3g}]; per seed "
        + ", ".join(f"{s}: {r:.2f}" for s, r in zip(seeds, neppo / base))
    )


def plot(runs: list[dict], scenarios: list[str], algos: list[str], backend: str, out: str, settings: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 3.8), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios):
        env_id = BACKENDS[backend].format(scenario)
        for k, algo in enumerate(algos):
            rows = [r for r in runs if r["env"] == env_id and r["algo"] == algo]
            if not rows:
                continue
            values = [r["max_regret"] for r in rows]
            mean, low, high = mean_ci(values)
            ax.bar(k, mean, color=f"C{k}", alpha=0.35, yerr=[[mean - low], [high - mean]], capsize=5)
            offsets = np.linspace(-0.2, 0.2, len(rows)) if len(rows) > 1 else [0.0]
            for dx, r in zip(offsets, rows):
                value, (lo, hi) = r["max_regret"], r["max_regret_ci"]
                ax.errorbar(k + dx, value, yerr=[[value - lo], [hi - value]], fmt="o", color=f"C{k}")
        ax.set_xticks(range(len(algos)), [a.upper() if a != "neppo" else "NePPO" for a in algos])
        ax.set_title(env_id)
        ax.axhline(0.0, color="grey", linewidth=0.6)
    axes[0][0].set_ylabel("max regret over agents")
    fig.suptitle(
        f"{settings['budget']:,} env steps of training; best responses {settings['br_timesteps']:,} env steps per start\n"
        "bars: mean over seeds (95% t-CI), points: seeds (evaluator 95% CI)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.table2", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="vmas", choices=BACKENDS)
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=200_000, help="training env steps per run")
    parser.add_argument("--br-timesteps", type=int, default=20_000, help="env steps per best response and start")
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time")
    parser.add_argument("-f", "--log-folder", default="logs/table2")
    parser.add_argument("--out", default=None, help="JSON of every run (default: <log folder>/table2-<backend>.json)")
    parser.add_argument("--plot", default=None, help="PNG of max regret per scenario and algorithm")
    parser.add_argument(
        "-params", "--params", nargs="+", default=[], help="key:value settings of every run (solver_kwargs:{share: role})"
    )
    parser.add_argument("--max-runs", type=int, default=None, help="start at most N runs in this invocation")
    parser.add_argument(
        "--time-limit", type=float, default=None, help="start no run after this many seconds (runs in flight finish)"
    )
    args = parser.parse_args(argv)
    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
    settings = {"backend": args.backend, "budget": args.budget, "br_timesteps": args.br_timesteps}
    settings["eval_episodes"] = args.eval_episodes
    if args.params:
        settings["params"] = args.params
    out = Path(args.out or Path(args.log_folder) / f"table2-{args.backend}.json")
    saved = json.loads(out.read_text()) if out.exists() else {"settings": settings, "runs": []}
    if saved["settings"] != settings:
        raise SystemExit(f"{out} holds runs with other settings {saved['settings']}; give another --out")
    runs: list[dict] = saved["runs"]
    saved_runs = list(runs)
    done = {(r["env"], r["algo"], r["seed"]) for r in runs}
    todo = [
        (BACKENDS[args.backend].format(s), a, seed)
        for seed in range(args.seeds)
        for s in args.scenarios
        for a in args.algos
        if (BACKENDS[args.backend].format(s), a, seed) not in done
    ]
    for env, algo in dict.fromkeys((env, algo) for env, algo, _ in todo):
        check_same(runs, env, algo, args.params, out)
    print(f"{len(todo)} runs to do ({len(runs)} already in {out}); settings {settings}", flush=True)
    queue = todo[: args.max_runs] if args.max_runs is not None else list(todo)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        in_flight: dict = {}

        def start_next() -> None:  # one more run, unless none is left or the time limit has passed
            if queue and (deadline is None or time.monotonic() < deadline):
                env, algo, seed = queue.pop(0)
                future = pool.submit(
                    run_one, env, algo, seed, args.budget, args.br_timesteps, args.eval_episodes, args.log_folder, args.params
                )
                in_flight[future] = (env, algo, seed)

        for _ in range(args.jobs):
            start_next()
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                del in_flight[future]
                result = future.result()
                runs.append(result)
                write_json_atomic(out, {"settings": settings, "runs": runs})
                print(
                    f"{result['env']} {result['algo']} seed {result['seed']}: max regret {result['max_regret']:.3f} "
                    f"(train {result['train_s']:.0f} s, eval {result['eval_s']:.0f} s)",
                    flush=True,
                )
                start_next()
    left = len(todo) - (len(runs) - len(saved_runs))
    if left:
        print(f"{left} runs left (--max-runs / --time-limit): the same command goes on with them", flush=True)
    algos = [a for a in ALGOS if any(r["algo"] == a for r in runs)]
    print(f"\nTable 2 protocol on {args.backend}: {settings}")
    print(table(runs, args.scenarios, algos, args.backend))
    if args.plot:
        plot(runs, args.scenarios, algos, args.backend, args.plot, settings)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
