"""``python -m sb3_neppo.plot RUN [RUN ...]``: training curves of one or more runs, overlaid, as a PNG.

    python -m sb3_neppo.plot logs/neppo/mpe2.simple_tag_v3_1 logs/neppo/mpe2.simple_tag_v3_2 [-o curves.png]
        [--x auto|env_steps|iteration]

Four panels against env steps (or outer iterations; ``auto``, the default, picks iterations when no run took env steps,
as with the exact solvers): max regret (each iteration's exact regret where the game has
one; the evaluator's ``regret.json`` as a point with its 95 % interval at the run's last step), F_i per agent and
L_β, each agent's true return (``evaluations.npz``, written by ``--eval-freq``; for a baseline, ``--algo ippo|mappo|
maddpg``, its training episodes' mean per round from ``progress.csv``), and the potential's parameters (each w_j when
there are at most 8, else |w|). A run that lacks a source (no regret, no evaluations, no potential) is left out of that
panel; one colour per run.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from sb3_neppo.errors import ConfigError, run_command
from sb3_neppo.train import OneLineParser


def read_run(folder: Path) -> dict:
    """The curves a run folder holds: ``progress.csv`` (required), ``evaluations.npz`` and ``regret.json`` (optional)."""
    progress = folder / "progress.csv"
    if not progress.exists():
        raise ConfigError(f"{folder}: no progress.csv; give run folders written by python -m sb3_neppo.train (any --algo)")
    rows = list(csv.DictReader(progress.read_text().splitlines()))
    if not rows:
        raise ConfigError(f"{progress} has no iterations yet")

    def column(name: str) -> np.ndarray:
        return np.array([float(r[name]) if r.get(name) not in (None, "") else np.nan for r in rows])

    names = list(rows[0])
    run = {
        "name": folder.name,
        "iteration": column("iteration"),
        "env_steps": column("env_steps"),
        "L_beta": column("L_beta"),
        "F": {n[2:]: column(n) for n in names if n.startswith("F_") and not n.startswith("F_se_")},
        "max_regret": column("max_regret"),
        "w": np.stack([column(n) for n in names if n.startswith("w_")] or [np.full(len(rows), np.nan)], axis=1),
        "returns": {n[len("return_") :]: column(n) for n in names if n.startswith("return_")},  # baselines' rounds
    }
    evaluations = folder / "evaluations.npz"
    if evaluations.exists():
        with np.load(evaluations, allow_pickle=False) as saved:
            run["evaluations"] = {k: saved[k] for k in saved.files}
    regret = folder / "regret.json"
    if regret.exists():
        run["regret"] = json.loads(regret.read_text())
    return run


def plot_runs(runs: list[dict], out: Path, x: str = "env_steps") -> Path:
    """Draw the four panels for ``runs`` (see the module docstring) into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dots = {"marker": ".", "markersize": 3}  # a run of one iteration still shows
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (ax_regret, ax_f), (ax_return, ax_w) = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for k, run in enumerate(runs):
        color, xs = colors[k % len(colors)], run[x]
        if np.isfinite(run["max_regret"]).any():
            ax_regret.plot(xs, run["max_regret"], color=color, label=run["name"], **dots)
        if "regret" in run:
            report = run["regret"]
            low, high = report["max_regret_ci"]
            top = report["max_regret"]
            label = f"{run['name']} (evaluator)"
            ax_regret.errorbar(xs[-1], top, yerr=[[top - low], [high - top]], fmt="o", color=color, capsize=4, label=label)
        for j, (agent, values) in enumerate(run["F"].items()):
            ax_f.plot(xs, values, color=color, linestyle=styles[j % len(styles)], label=f"{run['name']}: {agent}", **dots)
        if np.isfinite(run["L_beta"]).any():
            ax_f.plot(xs, run["L_beta"], color=color, linewidth=2.5, alpha=0.4, label=f"{run['name']}: L_β", **dots)
        for j, (agent, values) in enumerate(run["returns"].items()):  # a baseline's training episodes
            ax_return.plot(xs, values, color=color, linestyle=styles[j % 4], label=f"{run['name']}: {agent}", **dots)
        if "evaluations" in run:
            ev = run["evaluations"]
            ex = ev["timesteps"] if x == "env_steps" else ev["iterations"]
            for j, agent in enumerate(ev["agents"]):
                label = f"{run['name']}: {agent}"
                mean = ev["results"][:, :, j].mean(axis=1)
                ax_return.plot(ex, mean, color=color, linestyle=styles[j % 4], label=label, **dots)
        w = run["w"]
        if not np.isfinite(w).any():  # a baseline has no potential
            continue
        if w.shape[1] <= 8:
            for j in range(w.shape[1]):
                ax_w.plot(xs, w[:, j], color=color, linestyle=styles[j % 4], label=f"{run['name']}: w_{j}", **dots)
        else:
            ax_w.plot(xs, np.linalg.norm(w, axis=1), color=color, label=f"{run['name']}: |w| ({w.shape[1]} params)", **dots)
    xlabel = "env steps" if x == "env_steps" else "outer iteration"
    titles = ["max regret (line: exact; point: evaluator, 95 % CI)", "F_i (lines) and L_β (wide)"]
    titles += ["true return per agent (NePPO: evaluation episodes; baselines: training)", "potential parameters (NePPO)"]
    for ax, title in zip(axes.flat, titles):
        ax.set(title=title, xlabel=xlabel)
        if ax.has_data():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data in these runs", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def run(argv: list[str]) -> Path:
    parser = OneLineParser(prog="python -m sb3_neppo.plot", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("-o", "--output", type=Path, default=Path("curves.png"), help="PNG to write")
    parser.add_argument("--x", choices=("auto", "env_steps", "iteration"), default="auto")
    args = parser.parse_args(argv)
    runs = [read_run(folder) for folder in args.runs]
    x = args.x
    if x == "auto":
        x = "env_steps" if any(np.nansum(run["env_steps"]) > 0 for run in runs) else "iteration"
    out = plot_runs(runs, args.output, x)
    print(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
