"""``python -m sb3_neppo.plot RUN [RUN ...]``: training curves of one or more runs, overlaid, as a PNG.

    python -m sb3_neppo.plot logs/neppo/mpe2.simple_tag_v3_1 logs/neppo/mpe2.simple_tag_v3_2 [-o curves.png]
        [--x auto|env_steps|iteration]

Four panels against env steps (or outer iterations, for a baseline its training rounds; ``auto``, the default, picks
iterations when no run took env steps, as with the exact solvers; against env steps a run that took none sits at x = 0,
which a warning says): max regret (each iteration's exact regret where the game has one; the evaluator's
``regret.json`` as a point with its 95 % interval at the env steps, or iterations, of the model it scored), F_i per agent
and L_β, each agent's true return (``evaluations.npz``, written by ``--eval-freq``; for a baseline, ``--algo ippo|mappo|
maddpg``, its training episodes' mean per round from ``progress.csv``), and the potential's parameters (each w_j when
there are at most 8, else |w|). A run that lacks a source (no regret, no evaluations, no potential) is left out of that
panel; one colour per run.

Each run is named in the legends by its algorithm and folder, ``ippo/matrix-alpha_1`` (the end of its path from
``LOG_FOLDER/<algo>/``; ``<algo>: <folder>`` for a run kept elsewhere; the algorithm from ``summary.json``, or
``args.yml`` for an unfinished run), with more of its path where two runs would still share a name
(``a/neppo/matrix-alpha_1``, ``b/neppo/matrix-alpha_1``); the same folder given twice is one line.

``regret.json`` is plotted only when it scored the run's current model (``python -m sb3_neppo.evaluate`` records which:
file, iterations, env steps): a finished run's ``model.zip`` as its ``summary.json`` describes it, or an unfinished
run's ``checkpoint.zip`` as its ``data.json`` describes it (a baseline checkpoints every ``checkpoint_freq`` env steps,
so that may be rounds before the last row of ``progress.csv``). Its point sits at that model: for a finished run at
``summary.json``'s env steps, which for NePPO with ``iterate_solve: final`` are past the last row (the final solve at the
final w comes after it). With ``keep_best`` the model is the iterate with the lowest L_β, which the legend names
(``iterate 3 kept``) when it is not the last. A stale one (say, scored on a checkpoint before the run was resumed and
finished) is left out with a one-line warning: rerun evaluate to refresh it.

Bad input is one line and writes nothing: a folder that is not a run (or one given twice), a ``progress.csv`` with a
non-numeric cell, a row of the wrong length or without its ``iteration``/``env_steps`` columns, a ``summary.json`` or
``regret.json`` that is not valid JSON of the expected shape, an unreadable ``evaluations.npz``, an ``args.yml`` that is
not YAML, a ``checkpoint.zip`` without a readable ``data.json`` (read when an unfinished run has a ``regret.json``), or
an ``-o`` that cannot be written. A last line of ``progress.csv`` without its line end (a run killed while writing it)
is dropped with a warning. ``-o`` without an extension gets ``.png``; another extension matplotlib knows (``.pdf``,
``.svg``, ...) picks that format. The image is written atomically and the path written is printed.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sb3_neppo.atomic import atomic_open
from sb3_neppo.errors import ConfigError, OneLineParser, first_line, run_command
from sb3_neppo.hyperparams_files import yaml_load

REQUIRED_COLUMNS = ("iteration", "env_steps")
EVALUATION_ARRAYS = ("iterations", "timesteps", "results", "agents")
REFRESH = "rerun python -m sb3_neppo.evaluate {folder} to refresh it"


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {first_line(exc)}") from None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_json(path: Path, what: str) -> dict:
    """``path`` parsed as a JSON object; one line if it is not one."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); {what}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a JSON {type(data).__name__}, not an object; {what}")
    return data


def read_progress(progress: Path) -> list[dict[str, float]]:
    """The rows of ``progress.csv`` as numbers (an empty cell is NaN); a torn last line is dropped with a warning."""
    text = read_text(progress)
    redo = "the file was altered or is not one written by python -m sb3_neppo.train"
    lines = text.splitlines()
    if text and not text.endswith(("\n", "\r")):  # a run killed while writing its last row
        if len(lines) <= 1:
            raise ConfigError(f"{progress} has no complete header line; {redo}")
        warn(f"{progress}: its last line is incomplete (the run stopped while writing it); plotting the rows before it")
        lines = lines[:-1]
    try:
        table = [(n, row) for n, row in enumerate(csv.reader(lines), start=1) if row]
    except csv.Error as exc:
        raise ConfigError(f"{progress} is not a valid CSV file ({first_line(exc)}); {redo}") from None
    if not table:
        raise ConfigError(f"{progress} has no iterations yet")
    header = table[0][1]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise ConfigError(f"{progress} has no '{missing[0]}' column; {redo}")
    if len(set(header)) < len(header):
        twice = next(c for c in header if header.count(c) > 1)
        raise ConfigError(f"{progress} names the column '{twice}' twice; {redo}")
    rows = []
    for n, cells in table[1:]:
        if len(cells) != len(header):
            raise ConfigError(f"{progress}, line {n}: {len(cells)} cells, but its header has {len(header)}; {redo}")
        row = {}
        for name, cell in zip(header, cells):
            if cell == "" and name not in REQUIRED_COLUMNS:
                row[name] = np.nan
                continue
            try:
                row[name] = float(cell)
            except ValueError:
                raise ConfigError(f"{progress}, line {n}: {name} = {cell!r} is not a number; {redo}") from None
            if name in REQUIRED_COLUMNS and not math.isfinite(row[name]):
                raise ConfigError(f"{progress}, line {n}: {name} = {cell!r} is not a finite number; {redo}")
        rows.append(row)
    if not rows:
        raise ConfigError(f"{progress} has no iterations yet")
    return rows


def read_evaluations(path: Path) -> dict[str, np.ndarray]:
    """``evaluations.npz`` (arrays ``iterations``, ``timesteps``, ``results[evaluations, episodes, agents]``, ``agents``)."""
    redo = "delete it, or rerun training with --eval-freq to rewrite it"
    try:
        with np.load(path, allow_pickle=False) as saved:
            arrays = {k: saved[k] for k in saved.files}
    except Exception as exc:  # a damaged archive fails in zipfile, zlib or numpy's format reader, by many types
        raise ConfigError(f"{path} is not a readable .npz archive ({type(exc).__name__}: {first_line(exc)}); {redo}") from None
    missing = [k for k in EVALUATION_ARRAYS if k not in arrays]
    if missing:
        raise ConfigError(f"{path} has no '{missing[0]}' array; {redo}")
    results, agents = arrays["results"], arrays["agents"]
    shaped = (
        results.ndim == 3
        and results.dtype.kind in "iuf"
        and agents.ndim == 1
        and agents.dtype.kind in "US"
        and results.shape[2] == len(agents)
        and all(arrays[k].ndim == 1 and arrays[k].dtype.kind in "iuf" for k in ("iterations", "timesteps"))
        and len(arrays["iterations"]) == len(arrays["timesteps"]) == len(results)
    )
    if not shaped:
        raise ConfigError(
            f"{path} does not hold one evaluation per entry of iterations and timesteps, of shape (evaluations, "
            f"episodes, agents) with one name per agent; {redo}"
        )
    return arrays


def checkpoint_counts(path: Path) -> dict[str, int] | None:
    """The iterations (rounds, for a baseline) and env steps of the model in an unfinished run's ``checkpoint.zip``, from
    its ``data.json`` (nothing else is read); None when there is no checkpoint."""
    if not path.exists():
        return None
    how = "restore it, or delete regret.json to plot the run without the evaluator's point"
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("data.json"))
    except Exception as exc:  # zipfile, zlib, json and OS errors alike: the file is not what train writes
        raise ConfigError(f"{path} is not a readable model archive ({type(exc).__name__}: {first_line(exc)}); {how}") from None
    baseline = isinstance(data, dict) and data.get("algo", "neppo") != "neppo"
    key = "num_rounds" if baseline else "num_iterations"
    if not (isinstance(data, dict) and is_count(data.get(key)) and is_count(data.get("num_timesteps"))):
        raise ConfigError(f"{path}: its data.json has no integer '{key}' and 'num_timesteps'; {how}")
    return {"file": path.name, "iterations": data[key], "env_steps": data["num_timesteps"]}


def read_regret(path: Path, folder: Path, summary: dict | None) -> dict | None:
    """The evaluator's ``regret.json`` if it scored the run's current model; else None, with a warning saying why."""
    refresh = REFRESH.format(folder=folder)
    report = read_json(path, refresh)
    low_high = report.get("max_regret_ci")
    valid = (
        is_number(report.get("max_regret"))
        and isinstance(low_high, list)
        and len(low_high) == 2
        and all(map(is_number, low_high))
        and low_high[0] <= low_high[1]
    )
    if not valid:
        raise ConfigError(f"{path} has no numeric max_regret with a max_regret_ci [low, high]; {refresh}")
    scored = report.get("model")
    if scored is None:
        warn(f"{path} does not say which model it scored (an older evaluate); not plotted: {refresh}")
        return None
    if not (
        isinstance(scored, dict)
        and isinstance(scored.get("file"), str)
        and is_count(scored.get("iterations"))
        and is_count(scored.get("env_steps"))
    ):
        raise ConfigError(f"{path}: its 'model' is not {{file, iterations, env_steps}} of the model it scored; {refresh}")

    def describe(m: dict) -> str:
        return f"{m['file']} at iteration {m['iterations']} ({m['env_steps']} env steps)"

    if summary is not None:
        current = {"file": "model.zip", "iterations": summary["iterations"], "env_steps": summary["env_steps"]}
        where = "the run's final model (summary.json)"
    else:  # a baseline checkpoints every checkpoint_freq env steps: its checkpoint may be rounds behind progress.csv
        current = checkpoint_counts(folder / "checkpoint.zip")
        where = "the unfinished run's checkpoint"
        if current is None:
            warn(f"{path} scored {describe(scored)}, but the unfinished run has no checkpoint.zip; not plotted")
            return None
    if any(scored[k] != current[k] for k in current):
        warn(f"{path} is stale: it scored {describe(scored)}, but {where} is {describe(current)}; not plotted: " + refresh)
        return None
    regret, agents = report.get("regret"), scored.get("agents")
    if isinstance(regret, dict) and isinstance(agents, list) and len(regret) < len(agents):  # evaluate --agents
        report["partial"] = f"max over {len(regret)} of {len(agents)} agents"
    return report


def read_algo(folder: Path, summary: dict | None) -> str | None:
    """The algorithm that trained a run: ``summary.json``'s ``algo``, else (an unfinished run) ``args.yml``'s; None
    when neither says."""
    algo = summary.get("algo") if summary is not None else None
    if isinstance(algo, str) and algo:
        return algo
    started = folder / "args.yml"
    if not started.exists():
        return None
    try:
        data = yaml_load(read_text(started))
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(f"{started} is not valid YAML ({problem}); restore it (sb3_neppo.train wrote it)") from None
    algo = data.get("algo") if isinstance(data, dict) else None
    return algo if isinstance(algo, str) and algo else None


def run_labels(folders: list[Path], algos: list[str | None]) -> list[str]:
    """A legend name per run that tells every run apart: the end of its path from its algorithm's folder on
    (``ippo/matrix-alpha_1``: ``train`` writes ``LOG_FOLDER/<algo>/<env>_<n>``), or ``<algo>: <folder>`` for a run
    kept elsewhere, with as much more of the path as it takes where two runs would still share a name
    (``a/neppo/matrix-alpha_1``, ``b/neppo/matrix-alpha_1``). A folder given twice is one line."""
    paths = [Path(os.path.abspath(folder)) for folder in folders]
    seen: dict[Path, Path] = {}
    for folder, path in zip(folders, paths):
        other = seen.setdefault(path.resolve(), folder)
        if other is not folder:
            raise ConfigError(f"{folder} is the run {other} again; give each run folder once")
    parts = [path.parts[1:] for path in paths]  # without the root
    under = [algo is None or (len(p) > 1 and p[-2] == algo) for p, algo in zip(parts, algos)]
    depth = [min(2 if u else 1, len(p)) for p, u in zip(parts, under)]

    def label(i: int) -> str:
        tail = "/".join(parts[i][-depth[i] :])
        return tail if under[i] else f"{algos[i]}: {tail}"

    while True:
        labels = [label(i) for i in range(len(paths))]
        clashing = [i for i, name in enumerate(labels) if labels.count(name) > 1 and depth[i] < len(parts[i])]
        if not clashing:
            return labels
        for i in clashing:
            depth[i] += 1


def read_run(folder: Path) -> dict:
    """The curves a run folder holds: ``progress.csv`` (required), ``evaluations.npz`` and ``regret.json`` (optional)."""
    if not folder.exists():
        raise ConfigError(f"{folder}: no such run folder; give run folders written by python -m sb3_neppo.train")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give run folders written by python -m sb3_neppo.train")
    progress = folder / "progress.csv"
    if not progress.exists():
        raise ConfigError(f"{folder}: no progress.csv; give run folders written by python -m sb3_neppo.train (any --algo)")
    rows = read_progress(progress)

    def column(name: str) -> np.ndarray:
        return np.array([r.get(name, np.nan) for r in rows], dtype=float)

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
    summary = None
    if (folder / "summary.json").exists():
        how = "restore it, or retrain the run (python -m sb3_neppo.train writes it when a run finishes)"
        summary = read_json(folder / "summary.json", how)
        if not (is_count(summary.get("iterations")) and is_count(summary.get("env_steps"))):
            raise ConfigError(f"{folder / 'summary.json'} has no integer 'iterations' and 'env_steps'; {how}")
        if is_count(summary.get("selected_iteration")):  # keep_best: the model returns this iterate, not the last
            run["selected_iteration"] = summary["selected_iteration"]
    # a NePPO run's progress.csv has L_beta, a baseline's has not (it cannot tell IPPO from MAPPO: args.yml does)
    run["algo"] = read_algo(folder, summary) or ("neppo" if "L_beta" in names else None)
    run["label"] = run_labels([folder], [run["algo"]])[0]
    evaluations = folder / "evaluations.npz"
    if evaluations.exists():
        run["evaluations"] = read_evaluations(evaluations)
    regret = folder / "regret.json"
    if regret.exists():
        report = read_regret(regret, folder, summary)
        if report is not None:
            run["regret"] = report
    return run


def read_runs(folders: list[Path]) -> list[dict]:
    """:func:`read_run` of each folder, labelled so that no two runs share a legend name (:func:`run_labels`)."""
    runs = [read_run(folder) for folder in folders]
    for run, label in zip(runs, run_labels(folders, [run["algo"] for run in runs])):
        run["label"] = label
    return runs


def x_axis(runs: list[dict], choice: str = "auto") -> str:
    """``--x``: ``auto`` is env steps when a run took any, else iterations. Against env steps, a run that took none (exact
    solvers) would sit at x = 0: a one-line warning says so."""
    stepped = [bool(np.nansum(run["env_steps"]) > 0) for run in runs]
    if choice == "auto":
        choice = "env_steps" if any(stepped) else "iteration"
    if choice == "env_steps" and any(stepped) and not all(stepped):
        idle = ", ".join(run["label"] for run, took in zip(runs, stepped) if not took)
        warn(f"{idle} took no env steps (exact solvers): plotted at x = 0 against env steps; --x iteration avoids that")
    return choice


def draw(runs: list[dict], x: str = "env_steps"):
    """The four panels for ``runs`` (see the module docstring) as a matplotlib Figure, axes in the order regret, F and
    L_β, returns, potential; close it with ``matplotlib.pyplot.close``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dots = {"marker": ".", "markersize": 3}  # a run of one iteration still shows
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    (ax_regret, ax_f), (ax_return, ax_w) = axes
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for k, run in enumerate(runs):
        color, xs, name = colors[k % len(colors)], run[x], run.get("label", run["name"])
        if np.isfinite(run["max_regret"]).any():
            ax_regret.plot(xs, run["max_regret"], color=color, label=name, **dots)
        if "regret" in run:
            report = run["regret"]
            (low, high), top, scored = report["max_regret_ci"], report["max_regret"], report["model"]
            # at the model it scored: a finished run's final model (NePPO with iterate_solve: final solves once more
            # after its last row), an unfinished one's checkpoint (a baseline's may be rounds behind its last row)
            at = scored["env_steps"] if x == "env_steps" else scored["iterations"]
            notes = ["evaluator"]
            kept = run.get("selected_iteration")
            if scored["file"] == "model.zip" and kept is not None and kept != scored["iterations"]:
                notes.append(f"iterate {kept} kept")  # keep_best: the model is that iterate, not the last one
            if "partial" in report:
                notes.append(report["partial"])
            # the interval as reported: a bootstrap interval of a max need not contain the observed max
            ax_regret.errorbar(at, (low + high) / 2, yerr=(high - low) / 2, fmt="none", ecolor=color, capsize=4)
            ax_regret.plot(at, top, "o", color=color, label=f"{name} ({', '.join(notes)})")
        for j, (agent, values) in enumerate(run["F"].items()):
            ax_f.plot(xs, values, color=color, linestyle=styles[j % len(styles)], label=f"{name}: {agent}", **dots)
        if np.isfinite(run["L_beta"]).any():
            ax_f.plot(xs, run["L_beta"], color=color, linewidth=2.5, alpha=0.4, label=f"{name}: L_β", **dots)
        for j, (agent, values) in enumerate(run["returns"].items()):  # a baseline's training episodes
            ax_return.plot(xs, values, color=color, linestyle=styles[j % 4], label=f"{name}: {agent}", **dots)
        if "evaluations" in run:
            ev = run["evaluations"]
            ex = ev["timesteps"] if x == "env_steps" else ev["iterations"]
            for j, agent in enumerate(ev["agents"]):
                mean = ev["results"][:, :, j].mean(axis=1)
                ax_return.plot(ex, mean, color=color, linestyle=styles[j % 4], label=f"{name}: {agent}", **dots)
        w = run["w"]
        if not np.isfinite(w).any():  # a baseline has no potential
            continue
        if w.shape[1] <= 8:
            for j in range(w.shape[1]):
                ax_w.plot(xs, w[:, j], color=color, linestyle=styles[j % 4], label=f"{name}: w_{j}", **dots)
        else:
            ax_w.plot(xs, np.linalg.norm(w, axis=1), color=color, label=f"{name}: |w| ({w.shape[1]} params)", **dots)
    if x == "env_steps":
        xlabel = "env steps"
    else:  # a baseline's row is a training round, far cheaper than NePPO's outer iteration: say which is which
        neppo = {run.get("algo") == "neppo" for run in runs}
        xlabel = {frozenset({True}): "outer iteration", frozenset({False}): "training round"}.get(
            frozenset(neppo), "outer iteration (NePPO) / training round (baselines)"
        )
    titles = ["max regret (line: exact; point: evaluator, 95 % CI)", "F_i (lines) and L_β (wide)"]
    titles += ["true return per agent (NePPO: evaluation episodes; baselines: training)", "potential parameters (NePPO)"]
    for ax, title in zip(axes.flat, titles):
        ax.set(title=title, xlabel=xlabel)
        if ax.has_data():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data in these runs", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.tight_layout()
    return fig


def plot_runs(runs: list[dict], out: Path, x: str = "env_steps") -> Path:
    """Draw the four panels for ``runs`` (:func:`draw`) into ``out``, atomically; returns ``out``."""
    import matplotlib.pyplot as plt

    fig = draw(runs, x)
    try:
        with atomic_open(out, "wb") as fh:
            fig.savefig(fh, format=out.suffix[1:].lower(), dpi=110)
    except OSError as exc:
        raise ConfigError(f"-o {out}: cannot write it ({first_line(exc)}); give a path in a writable folder") from None
    finally:
        plt.close(fig)
    return out


def output_path(out: Path) -> Path:
    """The image file ``-o`` names (``.png`` added when it has no extension); one line if it cannot be written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if out.is_dir():
        raise ConfigError(f"-o {out} is a folder; give a file path such as {out / 'curves.png'}")
    if out.suffix == "":
        out = out.with_name(out.name + ".png")
    formats = FigureCanvasAgg.get_supported_filetypes()
    if out.suffix[1:].lower() not in formats:
        known = ", ".join(f".{f}" for f in sorted(formats))
        raise ConfigError(f"-o {out}: unknown image format '{out.suffix}'; end the path in .png (or one of {known})")
    parent = out.parent
    if out.is_dir():
        raise ConfigError(f"-o {out} is a folder; give a file path such as {out / 'curves.png'}")
    if not parent.is_dir():
        state = "is not a folder" if parent.exists() else "does not exist"
        raise ConfigError(f"-o {out}: the folder {parent} {state}; create it first or write elsewhere")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"-o {out}: the folder {parent} is not writable; write elsewhere")
    return out


def run(argv: list[str]) -> Path:
    parser = OneLineParser(prog="python -m sb3_neppo.plot", description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("-o", "--output", type=Path, default=Path("curves.png"), help="image to write (default: PNG)")
    parser.add_argument("--x", choices=("auto", "env_steps", "iteration"), default="auto")
    args = parser.parse_args(argv)
    output = output_path(args.output)  # checked before any run is read: a bad -o costs nothing
    runs = read_runs(args.runs)
    out = plot_runs(runs, output, x_axis(runs, args.x))
    print(f"wrote {out}")
    return out


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
