"""Does the potential learn? How far w moves, how L_β falls, and whether the zeroth-order step is signal or noise.

    python -m sb3_neppo.benchmarks.potential_moves [--env vmas:simple_world_comm] [--budget 200000] [--seeds 1]
        [--variants default paper convex convex-delta convex-delta-lr role-delta-lr mixer-role-8] [--jobs 2]
        [-f logs/potential_moves] [--out potential_moves.json]

Each (variant, seed) is one ``python -m sb3_neppo.train --env E -n BUDGET --seed S -params ...`` run (no regret
evaluation); its ``progress.csv`` gives per outer iteration w, L_β, the gradient's norm before clipping
(``grad_norm_raw``) and the branches' loss gap |L_β(w + δu) - L_β(w - δu)|. Printed per run: iterations, the share of
steps clipped (a raw norm far above ``max_grad_norm`` means each step has the clip's length and the noise's
direction), the median raw norm and loss gap, ‖w_T - w_0‖ against the length a random walk of clipped steps would reach
(η · clip · √T), and L_β of the first and last iterations. Then each variant against ``--control`` (default:
``convex-delta-control``, w held at its start while the solvers train as in the real run), paired by seed: the fall of
L_β (first iteration minus the mean of the last three) beyond the control's, and the median ratio of the branch gap to
its paired standard error (``loss_gap_se_paired``; 0.8 for a gap of pure noise), each as a mean with a 95 % t-interval
over seeds. ``--out`` keeps every finished run, so a killed benchmark resumes.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import yaml

from sb3_neppo.atomic import write_json_atomic
from sb3_neppo.benchmarks.table2 import mean_ci

UNTIED = "potential_kwargs:{tie: agent}"  # one logit per agent, whatever hyperparams/neppo.yml ties
VARIANTS: dict[str, list[str]] = {
    "default": [],  # hyperparams/neppo.yml (vmas:simple_world_comm: the convex potential tied within roles)
    "paper": ["potential:state_mixer", UNTIED, "delta:0.0005", "lr:0.01"],  # the state mixer from zero
    "convex": ["potential:convex", UNTIED, "delta:0.0005", "lr:0.01"],  # one logit per agent
    "convex-delta": ["potential:convex", UNTIED, "delta:0.05", "lr:0.01"],
    "convex-delta-lr": ["potential:convex", UNTIED, "delta:0.05", "lr:0.1"],
    "convex-delta-control": ["potential:convex", UNTIED, "delta:0.05", "lr:0"],  # w held: how L_beta moves from PPO alone
    "role-delta-lr": ["potential:convex", "potential_kwargs:{tie: role}", "delta:0.05", "lr:0.1"],  # a logit per role
    # the state mixer on 8 pooled state features, one output per role: (8 + 1) x roles values
    "mixer-role-8": ["potential:state_mixer", "potential_kwargs:{tie: role, state_features: 8}", "delta:0.05", "lr:0.1"],
}


def run_one(env_id: str, variant: str, seed: int, budget: int, log_folder: str) -> dict:
    """Train one run; return its per-iteration trace from progress.csv and its settings."""
    import torch

    from sb3_neppo import train

    torch.set_num_threads(1)
    start = time.perf_counter()
    params = ["-params", *VARIANTS[variant]] if VARIANTS[variant] else []
    folder = train.run(["--env", env_id, "-n", str(budget), "--seed", str(seed), "-f", log_folder, *params])
    with (folder / "progress.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    config = yaml.safe_load((folder / "config.yml").read_text())
    w = np.array([[float(r[k]) for k in r if k.startswith("w_")] for r in rows])
    return {
        "env": env_id,
        "variant": variant,
        "seed": seed,
        "folder": str(folder),
        "train_s": time.perf_counter() - start,
        "dim": int(w.shape[1]),
        "lr": config["lr"],
        "delta": config["delta"],
        "max_grad_norm": config["max_grad_norm"],
        "L_beta": [float(r["L_beta"]) for r in rows],
        "grad_norm": [float(r["grad_norm"]) for r in rows],
        "grad_norm_raw": [float(r["grad_norm_raw"]) for r in rows],
        "loss_gap": [float(r["loss_gap"]) for r in rows],
        "loss_gap_se": [float(r.get("loss_gap_se") or "nan") for r in rows],  # unpaired: an upper bound
        "loss_gap_se_paired": [float(r.get("loss_gap_se_paired") or "nan") for r in rows],  # pure noise: E|gap| = 0.8 se
        "w_distance": [float(np.linalg.norm(x - w[0])) for x in w],  # from the first logged iterate
        "w_start_norm": float(np.linalg.norm(w[0])),
        "env_steps": int(rows[-1]["env_steps"]),
    }


def describe(run: dict) -> str:
    """One line: what moved, and whether the steps were clipped noise."""
    t = len(run["L_beta"])
    clip = run["max_grad_norm"]
    clipped = np.mean([r > clip for r in run["grad_norm_raw"]]) if clip else 0.0
    walk = run["lr"] * (clip or np.median(run["grad_norm"])) * math.sqrt(max(t - 1, 1))
    first, last = run["L_beta"][: min(2, t)], run["L_beta"][-min(2, t) :]
    return (
        f"{run['variant']:<16} seed {run['seed']}  dim(w) {run['dim']:>5}  {t:>3} it  clipped {clipped:4.0%}  "
        f"raw |g| {np.median(run['grad_norm_raw']):9.3g}  loss gap {np.median(run['loss_gap']):8.3g}  "
        f"(se {np.median(run.get('loss_gap_se', [np.nan])):.3g}, "
        f"paired {np.median(run.get('loss_gap_se_paired', [np.nan])):.3g})  "
        f"|w_T - w_1| {run['w_distance'][-1]:.3g} (random walk of clipped steps {walk:.3g})  "
        f"L_beta {np.mean(first):.3f} -> {np.mean(last):.3f}"
    )


def fall(run: dict, last: int = 3) -> float:
    """How far L_β fell: the first iteration's minus the mean of the last ``last``."""
    return float(run["L_beta"][0] - np.mean(run["L_beta"][-last:]))


def against_control(runs: list[dict], variant: str, control: str) -> str | None:
    """``variant`` against ``control``, paired by seed: the fall of L_β beyond the control's, ‖w_T - w_1‖ of both, and
    the variant's median gap / se (each a mean with a 95 % t-interval over seeds)."""
    by = {(r["env"], r["variant"], r["seed"]): r for r in runs}
    pairs = [
        (r, by[r["env"], control, r["seed"]]) for r in runs if r["variant"] == variant and (r["env"], control, r["seed"]) in by
    ]
    if variant == control or not pairs:
        return None
    extra = mean_ci([fall(r) - fall(c) for r, c in pairs])
    moved, held = mean_ci([r["w_distance"][-1] for r, _ in pairs]), mean_ci([c["w_distance"][-1] for _, c in pairs])
    se = "loss_gap_se_paired" if all("loss_gap_se_paired" in r for r, _ in pairs) else "loss_gap_se"
    ratio = mean_ci([np.nanmedian(np.divide(r["loss_gap"], r[se])) for r, _ in pairs])
    return (
        f"{variant} against {control}, {len(pairs)} paired seeds: L_beta falls {extra[0]:+.3f} [{extra[1]:+.3f}, "
        f"{extra[2]:+.3f}] more; |w_T - w_1| {moved[0]:.3g} [{moved[1]:.3g}, {moved[2]:.3g}] against {held[0]:.3g}; "
        f"gap / {'paired ' if se.endswith('paired') else ''}se {ratio[0]:.2f} [{ratio[1]:.2f}, {ratio[2]:.2f}] (noise: 0.8)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.potential_moves", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="vmas:simple_world_comm")
    parser.add_argument("--budget", type=int, default=200_000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--control", default="convex-delta-control", choices=VARIANTS, help="the paired reference variant")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("-f", "--log-folder", default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("--out", default="potential_moves.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.exists() else {"budget": args.budget, "runs": []}
    if saved["budget"] != args.budget:
        raise SystemExit(f"{out} holds runs of budget {saved['budget']}; give another --out")
    runs = saved["runs"]
    done = {(r["env"], r["variant"], r["seed"]) for r in runs}
    todo = [(args.env, v, s) for s in range(args.seeds) for v in args.variants if (args.env, v, s) not in done]
    print(f"{len(todo)} runs to do ({len(runs)} in {out})", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.log_folder or scratch
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_one, env, v, s, args.budget, folder) for env, v, s in todo]
            for future in as_completed(futures):
                runs.append(future.result())
                write_json_atomic(out, {"budget": args.budget, "runs": runs})
                print(describe(runs[-1]), flush=True)
    print(f"\n{args.env}, {args.budget:,} env steps per run")
    for run in sorted(runs, key=lambda r: (r["env"], list(VARIANTS).index(r["variant"]), r["seed"])):
        print(describe(run))
    for variant in dict.fromkeys(r["variant"] for r in runs):
        line = against_control(runs, variant, args.control)
        if line:
            print(line)


if __name__ == "__main__":
    main()
