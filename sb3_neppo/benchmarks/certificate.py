"""What the certificate can say on a game: F and regret of π^Φ along a line of convex-combination potentials.

    python -m sb3_neppo.benchmarks.certificate [--env vmas:simple_tag] [--role adversary]
        [--weights 0.1 0.3 0.5 0.7 0.9] [--budget 300000] [--seeds 1] [--br-timesteps 20000] [--eval-episodes 64]
        [--jobs 2] [-f logs/certificate] [--out certificate.json] [--plot certificate.png] [--time-limit SECONDS]

A potential family can certify a low regret only if some w in it makes both max_i F_i(w) and the regret low. In a
pursuit game (Simple Tag, Simple Adversary: nearly zero-sum between the teams) Φ = λ J_team + (1 - λ) J_rest asks
the cooperative solution to chase and to flee at once. This benchmark holds w fixed at each λ (the convex potential
tied within roles, ``potential_kwargs: {tie: role, weights: ...}``, ``lr: 0``: the solvers train exactly as in a
NePPO run, the potential does not move) and reports, for the returned π^Φ: F per agent with its standard error (the
estimate at the returned iteration, ``summary.json``) and the regret evaluator's max regret with its 95 % CI (the Table 2
protocol). λ is the total weight of ``--role``'s agents (default: the first agent's role); the other agents share
1 - λ equally. ``min over λ of max F`` is the best certificate the tied convex family gives at this budget; ``--out``
keeps every finished run, so a killed benchmark resumes, and ``--time-limit`` starts no run after that many seconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from sb3_neppo.atomic import write_json_atomic
from sb3_neppo.benchmarks.table2 import mean_ci
from sb3_neppo.benchmarks.table2 import run_one as table2_run
from sb3_neppo.roles import role_of


def agent_weights(agents: list[str], role: str, weight: float) -> list[float]:
    """Per-agent weights: ``weight`` shared equally by ``role``'s agents, ``1 - weight`` by the others."""
    mine = [role_of(a) == role for a in agents]
    if not any(mine) or all(mine):
        raise SystemExit(f"--role {role} must be the role of some agents but not all ({', '.join(agents)})")
    return [weight / sum(mine) if m else (1 - weight) / (len(agents) - sum(mine)) for m in mine]


def run_one(env_id: str, weights: list[float], seed: int, budget: int, br_timesteps: int, eval_episodes: int, folder: str):
    """One NePPO run with w held at ``weights``, scored by the regret evaluator; F of the returned π^Φ (its summary)."""
    params = ["potential:convex", f"potential_kwargs:{{tie: role, weights: {json.dumps(weights)}}}", "lr:0"]
    run = table2_run(env_id, "neppo", seed, budget, br_timesteps, eval_episodes, folder, params)
    summary = json.loads((Path(run["folder"]) / "summary.json").read_text())
    return {**run, "weights": summary["potential"]["weights"], "F": summary["F"], "F_se": summary["F_se"]}


def table(runs: list[dict], lambdas: list[float]) -> str:
    lines = [f"  {'lambda':>6}  {'max F +- SE (agent)':<32} {'max regret (mean, 95% CI over seeds)':<40}"]
    best = None
    for lam in lambdas:
        rows = [r for r in runs if r["lambda"] == lam]
        if not rows:
            continue
        max_f = [max(r["F"].values()) for r in rows]
        se = [r["F_se"][max(r["F"], key=r["F"].get)] for r in rows]
        mean, low, high = mean_ci([r["max_regret"] for r in rows])
        worst = {a: np.mean([r["F"][a] for r in rows]) for a in rows[0]["F"]}
        f_text = f"{np.mean(max_f):.3f} +- {np.sqrt(np.mean(np.square(se))):.3f} ({max(worst, key=worst.get)})"
        lines.append(f"  {lam:>6.2f}  {f_text:<32} {mean:.3f} [{low:.3f}, {high:.3f}] ({len(rows)} seeds)")
        if best is None or np.mean(max_f) < best[1]:
            best = (lam, float(np.mean(max_f)), mean)
    if best is not None:
        lines.append(f"  lowest certificate: max F {best[1]:.3f} at lambda {best[0]:.2f} (max regret there {best[2]:.3f})")
    return "\n".join(lines)


def plot(runs: list[dict], lambdas: list[float], settings: dict, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {lam: [r for r in runs if r["lambda"] == lam] for lam in lambdas}
    done = [lam for lam in lambdas if rows[lam]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for agent in runs[0]["F"]:
        f = [np.mean([r["F"][agent] for r in rows[lam]]) for lam in done]
        ax.plot(done, f, ls=":", marker=".", label=f"F {agent}")
    max_f = [np.mean([max(r["F"].values()) for r in rows[lam]]) for lam in done]
    ax.plot(done, max_f, marker="x", lw=2, label="max F (the certificate)")
    stats = np.array([mean_ci([r["max_regret"] for r in rows[lam]]) for lam in done])
    errors = np.nan_to_num([stats[:, 0] - stats[:, 1], stats[:, 2] - stats[:, 0]])  # one seed: no interval
    ax.errorbar(done, stats[:, 0], yerr=errors, marker="o", lw=2, capsize=3, label="max regret (evaluator)")
    ax.set_xlabel(f"lambda: total weight of the {settings['role']} agents in the potential")
    ax.set_ylabel("F, regret")
    ax.set_title(f"{settings['env']}, {settings['budget']:,} env steps per run, w held fixed", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.certificate", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="vmas:simple_tag")
    parser.add_argument("--role", default=None, help="the role whose agents share the weight lambda (default: the first's)")
    parser.add_argument("--weights", nargs="+", type=float, default=[0.1, 0.3, 0.5, 0.7, 0.9], help="values of lambda")
    parser.add_argument("--budget", type=int, default=300_000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--br-timesteps", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("-f", "--log-folder", default="logs/certificate")
    parser.add_argument("--out", default="certificate.json")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--time-limit", type=float, default=None, help="start no run after this many seconds")
    args = parser.parse_args(argv)
    if any(not 0 < lam < 1 for lam in args.weights):
        raise SystemExit(
            f"--weights must lie strictly between 0 and 1 (a zero weight is an infinite logit), got {args.weights}"
        )
    from sb3_neppo.envs.registry import make_env

    agents = list(make_env(args.env).possible_agents)
    role = args.role or role_of(agents[0])
    weights = {lam: agent_weights(agents, role, lam) for lam in args.weights}
    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
    settings = {"env": args.env, "role": role, "budget": args.budget, "br_timesteps": args.br_timesteps,
                "eval_episodes": args.eval_episodes}  # fmt: skip
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {"settings": settings, "runs": []}
    if data["settings"] != settings:
        raise SystemExit(f"{out} holds runs with other settings ({data['settings']}); give another --out")
    done = {(r["lambda"], r["seed"]) for r in data["runs"]}
    todo = [(lam, s) for s in range(args.seeds) for lam in args.weights if (lam, s) not in done]
    write_json_atomic(out, data)
    print(f"{len(todo)} runs to do ({len(data['runs'])} in {out}); lambda = total weight of {role}", flush=True)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        in_flight: dict = {}
        while todo or in_flight:
            while todo and len(in_flight) < args.jobs and (deadline is None or time.monotonic() < deadline):
                lam, seed = todo.pop(0)
                job = (args.env, weights[lam], seed, args.budget, args.br_timesteps, args.eval_episodes)
                in_flight[pool.submit(run_one, *job, args.log_folder)] = (lam, seed)
            if not in_flight:
                break
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                lam, seed = in_flight.pop(future)
                data["runs"].append({**future.result(), "lambda": lam})
                write_json_atomic(out, data)
                run = data["runs"][-1]
                print(f"lambda {lam:.2f} seed {seed}: max F {max(run['F'].values()):.3f}, "
                      f"max regret {run['max_regret']:.3f}", flush=True)  # fmt: skip
    if todo:
        print(f"{len(todo)} runs left (--time-limit): the same command goes on with them", flush=True)
    lambdas = sorted({r["lambda"] for r in data["runs"]})
    print(f"\n{args.env}: convex potential tied within roles, w held fixed, {args.budget:,} env steps per run, best "
          f"responses of {args.br_timesteps:,} env steps per start")  # fmt: skip
    print(table(data["runs"], lambdas))
    if args.plot and data["runs"]:
        plot(data["runs"], lambdas, settings, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
