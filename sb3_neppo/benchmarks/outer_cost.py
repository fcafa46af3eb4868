"""What an outer iteration costs and what it buys: settings of the SB3 solvers side by side at one env-step budget.

    python -m sb3_neppo.benchmarks.outer_cost [--env vmas:simple_world_comm] [--budget 200000] [--seeds 2]
        [--variants paper br16 br16-eval8] [--br-timesteps 20000] [--eval-episodes 64] [--jobs 2]
        [-f logs/outer_cost] [--out outer_cost.json]

Each (variant, seed) is one NePPO run (``python -m sb3_neppo.train --env E -n BUDGET --seed S -params ...``) scored by
the regret evaluator (:func:`sb3_neppo.benchmarks.table2.run_one`, the Table 2 protocol). Printed per variant, medians
over seeds: env steps per outer iteration (the run's mean, from ``progress.csv``), iterations in the budget, the
standard error of the largest F_i and of the branch gap per iteration, that SE scaled to one env step (``se × √cost``:
the SE an iteration would have if its cost were one env step; lower buys more per step), the last L_β and max F, and
the evaluator's max regret; then each variant against the first, paired by seed: the mean difference of max regret with
a 95 % t-interval. F is an estimate whose best responses are the variant's own: a weaker best response lowers F without
lowering regret, so the evaluator's regret, with one best-response budget for every variant, is the number that
compares. ``--out`` keeps every finished run, so a killed benchmark resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from sb3_neppo.atomic import write_json_atomic
from sb3_neppo.benchmarks.table2 import mean_ci
from sb3_neppo.benchmarks.table2 import run_one as table2_run

# the paper's Markov-game potential settings (hyperparams/neppo.yml held them until Simple World Comm got the tied
# convex potential): the state mixer from zero, delta 5e-4, step 0.01
PAPER = ["potential:state_mixer", "potential_kwargs:{tie: agent}", "delta:0.0005", "lr:0.01"]
# the regret-weights step on the tied convex potential (hyperparams/neppo.yml's vmas:simple_world_comm entry)
ROLE_REGRET = ["potential:convex", "potential_kwargs:{tie: role}", "outer_step:regret_weights", "lr:0.1"]
VARIANTS: dict[str, list[str]] = {
    "paper": PAPER,  # every best response on the cooperative solve's 64 worlds
    "br16": [*PAPER, "solver_kwargs:{br_n_envs: 16}"],  # a best response on 16 worlds: one minibatch of 400
    "br16-eval8": [*PAPER, "solver_kwargs:{br_n_envs: 16, eval_episodes: 8}"],  # and half the paired episodes
    "br16-k2": [*PAPER, "solver_kwargs:{br_n_envs: 16, br_updates: 2}"],  # two updates of 16 worlds: half the paper's steps
    # the convex potential with one logit per role (3 on Simple World Comm instead of the state mixer's 2,118 values;
    # hyperparams/neppo.yml's vmas:simple_world_comm entry)
    "role": ["potential:convex", "potential_kwargs:{tie: role}", "delta:0.05", "lr:0.1"],
    "role-lr03": ["potential:convex", "potential_kwargs:{tie: role}", "delta:0.05", "lr:0.03"],
    # a wider perturbation: the gap's signal grows with delta, the estimate's noise (dim / 2 delta x gap) falls
    "role-wide": ["potential:convex", "potential_kwargs:{tie: role}", "delta:0.2", "lr:0.03"],
    # steps shrunk by the gap's paired standard error: a gap within the noise moves w not at all (shrink_z)
    "role-shrink": ["potential:convex", "potential_kwargs:{tie: role}", "delta:0.05", "lr:0.1", "shrink_z:1"],
    "role-control": ["potential:convex", "potential_kwargs:{tie: role}", "delta:0.05", "lr:0"],  # w held: the control
    # best responses trained at every other iteration (the others replay them): about 1.5x the iterations per budget
    "role-br2": ["potential:convex", "potential_kwargs:{tie: role}", "delta:0.05", "lr:0.1", "solver_kwargs:{br_every: 2}"],
    # one solve per iteration; each role's logit moves by 0.1 x (its largest F_i - the roles' mean), clipped at 10
    "role-regret": ROLE_REGRET,
    # the same step: half the step size; best responses at every other iteration (about 1.5x the iterations); four
    # cooperative updates per solve (π^Φ trained on more of the budget)
    "role-regret-lr05": [*ROLE_REGRET[:-1], "lr:0.05"],
    "role-regret-br2": [*ROLE_REGRET, "solver_kwargs:{br_every: 2}"],
    "role-regret-coop4": [*ROLE_REGRET, "solver_kwargs:{coop_updates: 4}"],
    # both: about the iterations of role-regret, π^Φ trained on 4x the env steps
    "role-regret-coop4-br2": [*ROLE_REGRET, "solver_kwargs:{coop_updates: 4, br_every: 2}"],
}


def trace(folder: str) -> dict:
    """Per outer iteration, from a run's ``progress.csv``: its env-step cost, max F, the largest F_i's SE, L_β, the
    branch gap's SE, how far w is from the first row's (‖w_t - w_1‖) and, for a w of at most 8 values, w itself."""
    with (Path(folder) / "progress.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    steps = [int(r["env_steps"]) for r in rows]
    f = [[float(r[k]) for k in r if k.startswith("F_") and not k.startswith("F_se_")] for r in rows]
    se = [[float(r[k]) for k in r if k.startswith("F_se_")] for r in rows]
    w = np.array([[float(r[k]) for k in r if k.startswith("w_")] for r in rows])
    return {
        "iterations": len(rows),
        "iteration_cost": int(np.median(np.diff([0, *steps]))),
        "iteration_cost_mean": steps[-1] / len(rows),  # what the step costs on average (br_every: solves alternate)
        "max_F": [max(x) for x in f],
        "max_F_se": [max(x) for x in se],
        "L_beta": [float(r["L_beta"]) for r in rows],
        "loss_gap_se": [float(r.get("loss_gap_se_paired") or "nan") for r in rows],  # from the paired episodes
        "w_distance": np.linalg.norm(w - w[0], axis=1).tolist(),
        **({"w": w.tolist()} if w.shape[1] <= 8 else {}),
    }


def run_one(env_id: str, variant: str, seed: int, budget: int, br_timesteps: int, eval_episodes: int, folder: str) -> dict:
    """Train and score one run; return the Table 2 record with the variant and its per-iteration trace."""
    run = table2_run(env_id, "neppo", seed, budget, br_timesteps, eval_episodes, folder, VARIANTS[variant])
    return {**run, "variant": variant, **trace(run["folder"])}


def describe(runs: list[dict], variant: str) -> str:
    rows = [r for r in runs if r["variant"] == variant]
    cost = np.median([r.get("iteration_cost_mean", r["iteration_cost"]) for r in rows])  # older records: the median
    se, gap_se = np.median([np.median(r["max_F_se"]) for r in rows]), np.median([np.nanmedian(r["loss_gap_se"]) for r in rows])
    mean, low, high = mean_ci([r["max_regret"] for r in rows])
    return (
        f"{variant:<12} {len(rows)} seeds  {cost:>7,.0f} steps/it  {np.median([r['iterations'] for r in rows]):>4.0f} it  "
        f"max F se {se:.3g} (x sqrt(cost) {se * np.sqrt(cost):.3g})  gap se {gap_se:.3g}  "
        f"L_beta {np.median([r['L_beta'][-1] for r in rows]):.3f}  max F {np.median([r['max_F'][-1] for r in rows]):.3f}  "
        f"max regret {mean:.3f} [{low:.3f}, {high:.3f}]"
    )


def paired(runs: list[dict], variant: str, reference: str) -> str | None:
    """``variant``'s max regret minus ``reference``'s, paired by seed: mean and 95 % t-interval."""
    by = {(r["variant"], r["seed"]): r["max_regret"] for r in runs}
    seeds = sorted(s for v, s in by if v == variant and (reference, s) in by)
    if variant == reference or not seeds:
        return None
    mean, low, high = mean_ci([by[variant, s] - by[reference, s] for s in seeds])
    return f"{variant} - {reference}: max regret {mean:+.3f} [{low:+.3f}, {high:+.3f}] over {len(seeds)} paired seeds"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.outer_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="vmas:simple_world_comm")
    parser.add_argument("--budget", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=["paper", "br16", "br16-eval8"], choices=VARIANTS)
    parser.add_argument("--br-timesteps", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("-f", "--log-folder", default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--out", default="outer_cost.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    settings = {"env": args.env, "budget": args.budget, "br_timesteps": args.br_timesteps, "eval_episodes": args.eval_episodes}
    saved = json.loads(out.read_text()) if out.exists() else {"settings": settings, "runs": []}
    if saved["settings"] != settings:
        raise SystemExit(f"{out} holds runs with other settings ({saved['settings']}); give another --out")
    runs = saved["runs"]
    done = {(r["variant"], r["seed"]) for r in runs}
    todo = [(v, s) for s in range(args.seeds) for v in args.variants if (v, s) not in done]
    print(f"{len(todo)} runs to do ({len(runs)} in {out})", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.log_folder or scratch
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                pool.submit(run_one, args.env, v, s, args.budget, args.br_timesteps, args.eval_episodes, folder)
                for v, s in todo
            ]
            for future in as_completed(futures):
                runs.append(future.result())
                write_json_atomic(out, {"settings": settings, "runs": runs})
                print(f"{runs[-1]['variant']} seed {runs[-1]['seed']}: max regret {runs[-1]['max_regret']:.3f}", flush=True)
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in runs)]
    print(f"\n{args.env}, {args.budget:,} env steps per run, best responses of {args.br_timesteps:,} env steps")
    for variant in variants:
        print(describe(runs, variant))
    for variant in variants[1:]:
        line = paired(runs, variant, variants[0])
        if line:
            print(line)


if __name__ == "__main__":
    main()
