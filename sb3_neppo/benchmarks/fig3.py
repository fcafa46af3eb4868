"""Fig. 3 of the paper: the regret of the joint policy over training, NePPO's certificate (max F) beside it.

    python -m sb3_neppo.benchmarks.fig3 [--env vmas:simple_world_comm] [--budget 2000000] [--seeds 3] [--marks 5]
        [--algos neppo ippo] [--br-timesteps 20000] [--eval-episodes 64] [--jobs 2] [-f logs/fig3]
        [--out fig3.json] [--plot fig3.png] [--time-limit SECONDS] [-params KEY:VALUE ...] [--compare FILE[=LABEL] ...]

Each (algorithm, seed) is one ``python -m sb3_neppo.train --algo A --env E -n BUDGET --seed S --save-freq K`` run that
keeps a snapshot (``model_<iteration>.zip``) at least every ``BUDGET / marks`` env steps (NePPO: every outer iteration;
a baseline: every ``marks``-th of its rounds' worth); at each mark the last snapshot at or before it is scored by the
regret evaluator (the Table 2 protocol: per agent, PPO best responses of ``--br-timesteps`` env steps from scratch and
from the agent's policy, ``--eval-episodes`` paired episodes, raw gain and bootstrap 95 % CI). NePPO's max F and its
standard error at that iteration come from ``progress.csv``. Printed per algorithm and mark: the env steps of the
scored snapshots, the mean over seeds of max regret with a 95 % t-interval, and NePPO's max F. ``-params`` applies to
the NePPO runs (the settings of ``hyperparams/neppo.yml`` otherwise) and is kept with the settings in ``--out``.
``--out`` keeps every finished run and score (the snapshots stay in ``-f``), so a killed benchmark resumes;
``--time-limit`` starts no new job after that many seconds, so the figure can be built in slices. ``--compare`` adds the
scores of other ``--out`` files of the same protocol (env, budget, marks, evaluator) to the table and the plot, each
algorithm labelled ``algo (LABEL)`` (default label: the file's name), e.g. NePPO with other settings beside this one.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from sb3_neppo.atomic import write_json_atomic
from sb3_neppo.benchmarks.provenance import check_same, ran
from sb3_neppo.benchmarks.table2 import mean_ci

ALGOS = ("neppo", "ippo", "mappo")


def save_freq(env_id: str, algo: str, budget: int, marks: int) -> int:
    """Snapshots often enough that every mark has one within ``budget / marks`` env steps before it."""
    if algo == "neppo":
        return 1  # an outer iteration costs tens of thousands of env steps
    from sb3_neppo.models import settings_for

    settings = settings_for(env_id, algo)
    return max(1, budget // marks // (settings["n_envs"] * settings["ppo"]["n_steps"]))


def train(env_id: str, algo: str, seed: int, budget: int, marks: int, log_folder: str, params: list[str]) -> dict:
    """Train one run with snapshots; return its folder and, per snapshot, its env steps (and NePPO's max F)."""
    import torch

    from sb3_neppo import train as train_cli

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    freq = save_freq(env_id, algo, budget, marks)
    args = ["--algo", algo, "--env", env_id, "-n", str(budget), "--seed", str(seed), "-f", log_folder]
    extra = ["-params", *params] if params and algo == "neppo" else []
    folder = train_cli.run([*args, "--save-freq", str(freq), *extra])
    with (folder / "progress.csv").open() as fh:
        rows = {int(r["iteration"]): r for r in csv.DictReader(fh)}
    snapshots = []
    for path in sorted(folder.glob("model_*.zip"), key=lambda p: int(p.stem.split("_")[1])):
        row = rows[int(path.stem.split("_")[1])]
        f = [float(v) for k, v in row.items() if k.startswith("F_") and not k.startswith("F_se_")]
        se = [float(v) for k, v in row.items() if k.startswith("F_se_")]
        snapshots.append(
            {
                "file": path.name,
                "env_steps": int(row["env_steps"]),
                "max_F": max(f) if f else None,
                "max_F_se": se[int(np.argmax(f))] if f else None,
            }
        )
    return {
        "algo": algo,
        "seed": seed,
        "folder": str(folder),
        "train_s": time.perf_counter() - start,
        "snapshots": snapshots,
        "settings": ran(folder, env_id, algo),
    }


def score(folder: str, file: str, br_timesteps: int, eval_episodes: int) -> dict:
    """The regret evaluator on one snapshot."""
    import torch

    from sb3_neppo.evaluate import evaluate_model, load_model
    from sb3_neppo.regret import RegretConfig

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    report = evaluate_model(
        load_model(Path(folder) / file), RegretConfig(br_timesteps=br_timesteps, eval_episodes=eval_episodes)
    )
    return {
        "max_regret": report.max_regret,
        "max_regret_ci": list(report.max_ci),
        "regret": report.regret,
        "regret_ci": {r.agent: list(r.ci) for r in report.agents},
        "eval_s": time.perf_counter() - start,
    }


def at_marks(run: dict, budget: int, marks: int) -> list[tuple[int, dict]]:
    """(mark, snapshot) for each mark: the last snapshot at or before it (none before the first snapshot; a snapshot
    scored once, at the first mark it is the last before)."""
    chosen: dict[str, tuple[int, dict]] = {}
    for k in range(1, marks + 1):
        before = [s for s in run["snapshots"] if s["env_steps"] <= budget * k // marks]
        if before and before[-1]["file"] not in chosen:
            chosen[before[-1]["file"]] = (budget * k // marks, before[-1])
    return list(chosen.values())


def table(data: dict, algos: list[str]) -> str:
    width = max([6, *(len(a) for a in algos)])
    lines = [f"  {'algo':<{width}} {'mark':>10} {'env steps':>10} {'max regret (mean, 95% CI over seeds)':<38} {'max F':>8}"]
    budget, marks = data["settings"]["budget"], data["settings"]["marks"]
    for algo in algos:
        for k in range(1, marks + 1):
            mark = budget * k // marks
            rows = [s for s in data["scores"] if s["algo"] == algo and s["mark"] == mark]
            if not rows:
                continue
            mean, low, high = mean_ci([s["max_regret"] for s in rows])
            steps = int(np.median([s["env_steps"] for s in rows]))
            f = [s["max_F"] for s in rows if s.get("max_F") is not None]
            lines.append(
                f"  {algo:<{width}} {mark:>10,} {steps:>10,} {mean:>8.3f} [{low:.3f}, {high:.3f}] ({len(rows)} seeds)"
                f"{'':<8} {f'{np.mean(f):.3f}' if f else '-':>8}"  # a baseline has no certificate
            )
    return "\n".join(lines)


def plot(data: dict, algos: list[str], out: str) -> None:
    """Left: each algorithm's max regret (mean over seeds with its 95 % t-band, thin lines per seed) and NePPO's max F;
    right: each agent's regret (mean over seeds), one colour per agent and one line style per algorithm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (ax, per_agent) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = ["-", ":", "--", "-."]
    agents: list[str] = []
    for k, algo in enumerate(algos):
        rows = [s for s in data["scores"] if s["algo"] == algo]
        marks = sorted({s["mark"] for s in rows})
        stats = [mean_ci([s["max_regret"] for s in rows if s["mark"] == m]) for m in marks]
        color = f"C{k}"
        ax.plot(marks, [s[0] for s in stats], marker="o", color=color, label=f"{algo}: max regret")
        ax.fill_between(marks, [s[1] for s in stats], [s[2] for s in stats], alpha=0.15, color=color)
        for seed in sorted({s["seed"] for s in rows}):
            mine = sorted((s for s in rows if s["seed"] == seed), key=lambda s: s["mark"])
            ax.plot([s["mark"] for s in mine], [s["max_regret"] for s in mine], lw=0.6, alpha=0.4, color=color)
        if algo.startswith("neppo"):
            f = [np.mean([s["max_F"] for s in rows if s["mark"] == m]) for m in marks]
            ax.plot(marks, f, ls="--", marker="x", color=color, alpha=0.7, label=f"{algo}: max F (the certificate, estimated)")
        for agent in rows[0]["regret"]:
            if agent not in agents:
                agents.append(agent)
            means = [np.mean([s["regret"][agent] for s in rows if s["mark"] == m]) for m in marks]
            per_agent.plot(marks, means, ls=styles[k % len(styles)], marker=".", color=f"C{agents.index(agent)}")
    handles = [Line2D([], [], color=f"C{i}", label=agent) for i, agent in enumerate(agents)]
    handles += [Line2D([], [], color="black", ls=styles[k % len(styles)], label=algo) for k, algo in enumerate(algos)]
    settings = data["settings"]
    for axis, what in ((ax, "max regret over agents"), (per_agent, "regret per agent (mean over seeds)")):
        axis.set_xlabel("training env steps (mark)")
        axis.set_ylabel(what)
    ax.legend(fontsize=7)
    per_agent.legend(handles=handles, fontsize=7)
    fig.suptitle(f"{settings['env']}: best responses of {settings['br_timesteps']:,} env steps per start", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def compared(data: dict, specs: list[str]) -> tuple[list[dict], list[str]]:
    """The scores of the ``--compare`` files (``FILE[=LABEL]``), each algorithm relabelled ``algo (LABEL)``, and those
    labels; SystemExit (one line) if a file is missing or measured another protocol than ``data``."""
    protocol = {k: v for k, v in data["settings"].items() if k != "neppo_params"}
    scores: list[dict] = []
    labels: list[str] = []
    for spec in specs:
        file, _, label = spec.partition("=")
        path = Path(file)
        if not path.is_file():
            raise SystemExit(f"--compare {spec}: no such file; give a --out of an earlier fig3 run")
        other = json.loads(path.read_text())
        theirs = {k: v for k, v in other["settings"].items() if k != "neppo_params"}
        if theirs != protocol:
            raise SystemExit(f"--compare {spec}: measured {theirs}, not {protocol}; compare runs of one protocol")
        label = label or path.stem
        for algo in ALGOS:
            rows = [{**s, "algo": f"{algo} ({label})"} for s in other["scores"] if s["algo"] == algo]
            if rows:
                scores += rows
                labels.append(f"{algo} ({label})")
    return scores, labels


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.fig3", description=__doc__.split("\n")[0])
    parser.add_argument("--env", default="vmas:simple_world_comm")
    parser.add_argument("--budget", type=int, default=2_000_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--marks", type=int, default=5, help="env-step marks at which the regret is measured")
    parser.add_argument("--algos", nargs="+", default=["neppo", "ippo"], choices=ALGOS)
    parser.add_argument("--br-timesteps", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("-f", "--log-folder", default="logs/fig3", help="run folders with their snapshots (kept)")
    parser.add_argument("--out", default="fig3.json")
    parser.add_argument("--plot", default=None)
    parser.add_argument("--time-limit", type=float, default=None, help="start no job after this many seconds")
    parser.add_argument("-params", "--params", nargs="+", default=[], help="key:value settings of the NePPO runs")
    parser.add_argument("--compare", nargs="+", default=[], metavar="FILE[=LABEL]", help="other --out files to show beside")
    args = parser.parse_args(argv)
    deadline = None if args.time_limit is None else time.monotonic() + args.time_limit
    settings = {k: getattr(args, k) for k in ("env", "budget", "marks", "br_timesteps", "eval_episodes")}
    if args.params:
        settings["neppo_params"] = args.params
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {"settings": settings, "runs": [], "scores": []}
    if data["settings"] != settings:
        raise SystemExit(f"{out} holds other settings ({data['settings']}); give another --out")
    others, other_algos = compared(data, args.compare)  # before any run: a wrong --compare costs nothing

    def pending_scores() -> list[tuple[dict, int, dict]]:
        done = {(s["algo"], s["seed"], s["mark"]) for s in data["scores"]}
        return [
            (run, mark, snap)
            for run in data["runs"]
            for mark, snap in at_marks(run, args.budget, args.marks)
            if (run["algo"], run["seed"], mark) not in done
        ]

    trained = {(r["algo"], r["seed"]) for r in data["runs"]}
    to_train = [(a, s) for s in range(args.seeds) for a in args.algos if (a, s) not in trained]
    for algo in dict.fromkeys(a for a, _ in to_train):
        check_same(data["runs"], args.env, algo, args.params if algo == "neppo" else [], out)
    print(f"{len(to_train)} runs to train, {len(pending_scores())} snapshots to score ({out})", flush=True)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        in_flight: dict = {}

        def start_next() -> bool:  # a finished run's snapshot before a new run; nothing after the time limit
            if deadline is not None and time.monotonic() >= deadline:
                return False
            busy = {job for job, _, _ in in_flight.values()}
            for run, mark, snap in pending_scores():
                job = ("score", run["algo"], run["seed"], mark)
                if job not in busy:
                    future = pool.submit(score, run["folder"], snap["file"], args.br_timesteps, args.eval_episodes)
                    in_flight[future] = (job, mark, snap)
                    return True
            if to_train:
                algo, seed = to_train.pop(0)
                future = pool.submit(train, args.env, algo, seed, args.budget, args.marks, args.log_folder, args.params)
                in_flight[future] = (("train", algo, seed), None, None)
                return True
            return False

        while len(in_flight) < args.jobs and start_next():
            pass
        while in_flight:
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                job, mark, snap = in_flight.pop(future)
                result = future.result()
                if job[0] == "train":
                    data["runs"].append(result)
                    print(f"trained {job[1]} seed {job[2]} in {result['train_s']:.0f} s", flush=True)
                else:
                    point = {
                        "algo": job[1],
                        "seed": job[2],
                        "mark": mark,
                        "env_steps": snap["env_steps"],
                        "file": snap["file"],
                    }
                    data["scores"].append({**point, "max_F": snap["max_F"], "max_F_se": snap["max_F_se"], **result})
                    print(f"{job[1]} seed {job[2]} at {snap['env_steps']:,} env steps: max regret {result['max_regret']:.3f}")
                write_json_atomic(out, data)
            while len(in_flight) < args.jobs and start_next():
                pass
    write_json_atomic(out, data)
    left = len(to_train) + len(pending_scores())
    if left:
        print(f"{left} jobs left (--time-limit): the same command goes on with them", flush=True)
    algos = [a for a in ALGOS if any(s["algo"] == a for s in data["scores"])] + other_algos
    shown = {**data, "scores": data["scores"] + others}
    print(f"\nFig. 3 protocol: {settings}")
    print(table(shown, algos))
    if args.plot and shown["scores"]:
        plot(shown, algos, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
