"""``python -m sb3_neppo.train``: the rl-baselines3-zoo-style command line.

Example::

    python -m sb3_neppo.train --algo neppo --env matrix-alpha --env-kwargs alpha:0.4 --seed 0 -f logs/
    python -m sb3_neppo.train --algo neppo --env mpe2.simple_tag_v3 -n 200000 --progress

``--algo ippo|mappo|maddpg`` trains a baseline instead (:mod:`sb3_neppo.baselines`, ``hyperparams/<algo>.yml``) into
the same layout, with a ``progress.csv`` row per training round.

Each run writes ``<log folder>/<algo>/<env>_<n>/`` with ``config.yml`` (the resolved hyperparameters), ``args.yml``,
``command.txt``, ``progress.csv`` (one row per outer iteration), ``summary.json`` and ``model.zip``.
"""

from __future__ import annotations

import argparse
import csv
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import torch
import yaml
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from stable_baselines3.common.logger import configure

from sb3_neppo.baselines import BASELINES, MultiAgentAlgorithm, baseline_class
from sb3_neppo.callbacks import EvalCallback, TensorBoardLogger
from sb3_neppo.config import NePPOConfig, load_hyperparams, merge_hyperparams, parse_key_values
from sb3_neppo.distributed import JobQueue, serve
from sb3_neppo.errors import ConfigError, run_command
from sb3_neppo.hpo import PRUNERS, SAMPLERS, make_pruner, make_sampler, objective_fn, write_report
from sb3_neppo.io import atomic_open, write_json_atomic, write_yaml_atomic
from sb3_neppo.neppo import IterationLog, NePPO
from sb3_neppo.study import JOURNAL_NAME, StudyRecorder, display_url, open_storage, open_study, stored_settings
from sb3_neppo.workers import BranchPool

ALGOS = ("neppo", *BASELINES)
CHECKPOINT = "checkpoint.zip"


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (a ConfigError), not a usage dump."""

    def error(self, message: str) -> None:  # one line, no usage dump
        raise ConfigError(f"{message} (see --help)")


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m sb3_neppo.train", description="Train NePPO (or a baseline) on a multi-agent game.")
    parser.add_argument(
        "--algo", default="neppo", choices=ALGOS, help="algorithm: neppo, or a baseline ippo, mappo, maddpg (default: neppo)"
    )
    parser.add_argument(
        "--env",
        default="matrix-alpha",
        help="env id: matrix, matrix-alpha, prisoners-dilemma, ..., or a PettingZoo module path (mpe2.simple_tag_v3)",
    )
    parser.add_argument("--env-kwargs", nargs="+", metavar="KEY:VALUE", help="env arguments, e.g. alpha:0.4")
    parser.add_argument("-params", "--hyperparams", nargs="+", metavar="KEY:VALUE", help="override hyperparameters")
    parser.add_argument(
        "-n",
        "--n-timesteps",
        type=int,
        default=None,
        help="env-step budget, everything counted (cooperative solves, best responses, evaluation rollouts); stops after "
        "the outer iteration that crosses it (sampled solvers only; default: n_iterations from the hyperparameters)",
    )
    parser.add_argument("-i", "--trained-agent", default=None, help="continue training a saved model.zip (in a new run)")
    parser.add_argument(
        "--save-freq", type=int, default=-1, help="also save model_<iteration>.zip every N outer iterations (default: off)"
    )
    parser.add_argument("-f", "--log-folder", default="logs", help="log folder (default: logs)")
    parser.add_argument(
        "-tb", "--tensorboard-log", default=None, help="TensorBoard folder: the run logs to <folder>/<env>_<n> (default: off)"
    )
    parser.add_argument(
        "--eval-freq",
        type=int,
        default=-1,
        help="every N outer iterations, π^Φ's true per-agent returns on held-out episodes -> evaluations.npz (default: off)",
    )
    parser.add_argument("--eval-episodes", type=int, default=10, help="episodes of each evaluation (default 10)")
    parser.add_argument(
        "--storage",
        default=None,
        help="Optuna storage of the run's study: sqlite:///f.db, postgresql://user:pw@host/db, or a .journal file "
        "(default: study.journal in the run folder)",
    )
    parser.add_argument("--study-name", default=None, help="study name (default: the run folder's name, e.g. matrix-alpha_3)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: drawn and recorded)")
    parser.add_argument("-yaml", "--yaml-file", default=None, help="hyperparameter file (default: hyperparams/<algo>.yml)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar")
    hpo = parser.add_argument_group("hyperparameter optimisation (Optuna)")
    hpo.add_argument("-optimize", "--optimize-hyperparameters", action="store_true", help="run a hyperparameter study")
    hpo.add_argument("--n-trials", type=int, default=20, help="trials of the study (default 20)")
    hpo.add_argument("--sampler", default="tpe", choices=SAMPLERS, help="Optuna sampler (default tpe)")
    hpo.add_argument("--pruner", default="median", choices=PRUNERS, help="Optuna pruner (default median)")
    hpo.add_argument("--n-seeds", type=int, default=3, help="seeds each trial is trained on; its value is the mean")
    parser.add_argument(
        "--n-workers", type=int, default=1, help="processes solving the branches of an iteration side by side (default 1)"
    )
    parser.add_argument(
        "--join",
        action="store_true",
        help="only work for the run in --study-name on --storage, waiting for it to start if need be (never coordinate)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=60.0,
        help="with --storage: seconds without a heartbeat after which a worker's branch is given to another (default 60)",
    )
    parser.add_argument(
        "--num-threads",
        type=int,
        default=1,
        help="torch threads (default 1: for these small networks one thread is as fast as more, and steadier)",
    )
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1), help="1: one line per iteration")
    return parser


def next_run_folder(log_folder: Path, algo: str, env_id: str, create: bool = True) -> Path:
    """``<log folder>/<algo>/<env>_<n>`` with n one more than the largest existing run (zoo layout)."""
    base = log_folder / algo
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", env_id)
    runs = [int(m.group(1)) for p in base.glob(f"{safe}_*") if (m := re.fullmatch(rf"{re.escape(safe)}_(\d+)", p.name))]
    folder = base / f"{safe}_{max(runs, default=0) + 1}"
    if create:
        folder.mkdir(parents=True, exist_ok=False)
    return folder


class CsvLogger:
    """Appends one row per outer iteration to ``progress.csv`` (flushed, so a killed run keeps its rows).

    :param keep_until: resuming: keep the existing rows up to this iteration (later ones are replayed) and append.
    """

    def __init__(self, path: Path, agents: list[str], dim: int, keep_until: int | None = None):
        if keep_until is not None and path.exists():
            rows = list(csv.reader(path.read_text().splitlines()))
            if rows:
                kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= keep_until]
                with atomic_open(path, "w", newline="") as fh:
                    csv.writer(fh).writerows(kept)
                self.file = path.open("a", newline="")
                self.writer = csv.writer(self.file)
                return
        self.file = path.open("w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(
            [
                "iteration",
                *[f"w_{j}" for j in range(dim)],
                "L_beta",
                *[f"F_{a}" for a in agents],
                *[f"F_se_{a}" for a in agents],
            ]
            + [*[f"regret_{a}" for a in agents], "max_regret", "grad_norm", "step_size", "env_steps"]
        )

    def __call__(self, log: IterationLog, model: NePPO) -> None:
        regret = [""] * len(log.F) + [""] if log.regret is None else [*log.regret.tolist(), float(log.regret.max())]
        self.writer.writerow(
            [log.iteration, *log.w.tolist(), log.objective, *log.F.tolist(), *log.F_se.tolist(), *regret]
            + [log.grad_norm, log.step_size, log.env_steps]
        )
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def format_summary(summary: dict) -> str:
    lines = [
        f"{summary['env']} {summary['env_kwargs'] if summary['env'] != 'matrix' else ''}".rstrip()
        + f": {summary['iterations']} iterations in {summary['wall_time_s']:.2f} s, seed {summary['seed']}",
        f"L_beta = {summary['objective']:.6f} (iterate {summary['selected_iteration']})",
    ]
    if summary["env_steps"]:
        lines[0] += f", {summary['env_steps']} env steps"
    for agent in summary["agents"]:
        line = f"  {agent:>16}: F = {summary['F'][agent]:.6f}"
        if summary["F_se"][agent]:
            line += f" ± {summary['F_se'][agent]:.6f}"
        if summary.get("regret") is not None:
            line += f"  regret = {summary['regret'][agent]:.6f}"
        if "strategies" in summary:
            names = summary["action_names"][agent]
            line += "  strategy = " + ", ".join(f"{n}: {p:.4f}" for n, p in zip(names, summary["strategies"][agent]))
        lines.append(line)
    if summary.get("max_regret") is not None:
        lines.append(f"max regret = {summary['max_regret']:.6f}")
    return "\n".join(lines)


def find_unfinished_run(log_folder: Path, algo: str, env_id: str, command: str) -> Path | None:
    """The newest run folder started by exactly ``command`` that has no ``summary.json`` yet (a killed run)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", env_id)
    candidates = []
    for folder in (log_folder / algo).glob(f"{safe}_*"):
        match = re.fullmatch(rf"{re.escape(safe)}_(\d+)", folder.name)
        command_file = folder / "command.txt"
        if match and command_file.exists() and not (folder / "summary.json").exists():
            if command_file.read_text().strip() == command:
                candidates.append((int(match.group(1)), folder))
    return max(candidates)[1] if candidates else None


def run(argv: list[str]) -> Path | None:
    """Parse ``argv``, train (resuming the run this same command left unfinished), write the run folder, return it.

    With ``--storage`` and ``--study-name`` of a run in progress elsewhere, work for that run instead (returns None)."""
    args = make_parser().parse_args(argv)
    if args.n_timesteps is not None and args.n_timesteps < 1:
        raise ConfigError(f"-n must be an env-step budget >= 1 (got {args.n_timesteps})")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    if args.n_workers < 1:
        raise ConfigError(f"--n-workers must be >= 1 (got {args.n_workers})")
    if args.eval_episodes < 1:
        raise ConfigError(f"--eval-episodes must be >= 1 (got {args.eval_episodes})")
    if not args.heartbeat_timeout > 0:
        raise ConfigError(f"--heartbeat-timeout must be > 0 seconds (got {args.heartbeat_timeout})")
    env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
    hyperparams = load_hyperparams(args.env, args.yaml_file, args.algo)
    overrides = parse_key_values(args.hyperparams, "-params")
    command = shlex.join(["python", "-m", "sb3_neppo.train", *argv])
    if args.algo != "neppo":
        return run_baseline(args, env_kwargs, merge_hyperparams(hyperparams, overrides), command)
    if overrides.get("potential", hyperparams.get("potential")) != hyperparams.get("potential"):
        hyperparams.pop("potential_kwargs", None)  # the file's kwargs belong to the potential being replaced
    hyperparams = merge_hyperparams(hyperparams, overrides)
    config = NePPOConfig.from_dict(hyperparams)

    folder = find_unfinished_run(Path(args.log_folder), args.algo, args.env, command)
    if args.optimize_hyperparameters:
        return optimize(args, env_kwargs, hyperparams, command, folder)
    resuming = folder is not None
    if args.join and (args.storage is None or args.study_name is None):
        raise ConfigError("--join needs the run's --storage and --study-name")
    if args.storage is not None and not resuming:
        name = args.study_name or next_run_folder(Path(args.log_folder), args.algo, args.env, create=False).name
        storage = open_storage(args.storage, Path(args.log_folder))
        if args.join or stored_settings(storage, name) is not None:  # a run of this command is in progress: help it
            return join(args, storage, name, config, env_kwargs)
    first = yaml.safe_load((folder / "args.yml").read_text()) if resuming else {}  # the first attempt's arguments
    seed = first.get("seed") if args.seed is None else args.seed  # resuming: the seed the first attempt drew
    if resuming and (folder / CHECKPOINT).exists():
        model = NePPO.load(folder / CHECKPOINT)
    else:
        model = build_model(args, config, env_kwargs, seed)
    model.verbose, model.n_workers = args.verbose, args.n_workers
    if resuming:  # where this run started (> 0 when it continued a saved model with -i)
        start_iteration, start_timesteps = first.get("start_iteration", 0), first.get("start_timesteps", 0)
    else:
        start_iteration, start_timesteps = model.num_iterations, model.num_timesteps
    settings = {"env": args.env, "env_kwargs": env_kwargs, "seed": model.seed, "config": config.to_dict()}
    if not resuming:
        folder = next_run_folder(Path(args.log_folder), args.algo, args.env)
    try:
        study = open_study(open_storage(args.storage, folder), args.study_name or folder.name, settings)
    except ConfigError:
        if not resuming:
            shutil.rmtree(folder)  # nothing of this attempt is kept
        raise
    model.recorder = StudyRecorder(study)
    if args.storage is not None and model.solvers.exact:  # microseconds a branch: nothing to share
        JobQueue.refuse_workers(study)
    elif args.storage is not None:  # workers on other machines may join (sb3_neppo.distributed)
        model.queue = JobQueue(study, timeout=args.heartbeat_timeout)
        model.queue.claim()
        if not resuming:
            print(
                f"Study '{study.study_name}': other machines join this run with the same command and "
                f"--study-name {study.study_name}"
            )
    if not resuming:
        write_yaml_atomic(folder / "config.yml", config.to_dict())
        extra = {"env_kwargs": env_kwargs, "seed": model.seed, "start_iteration": start_iteration}
        extra["start_timesteps"] = start_timesteps
        write_yaml_atomic(folder / "args.yml", {**vars(args), **extra})
        (folder / "command.txt").write_text(command + "\n")
    else:
        print(f"Resuming {folder} at iteration {model.num_iterations} (study '{study.study_name}')")

    logger = CsvLogger(folder / "progress.csv", model.agents, model.potential.dim, keep_until=model.num_iterations)
    callbacks: list = [logger]
    tensorboard = TensorBoardLogger(Path(args.tensorboard_log) / folder.name) if args.tensorboard_log else None
    if args.eval_freq > 0:
        resume_from = model.num_iterations if resuming else None
        callbacks.append(EvalCallback(args.eval_freq, args.eval_episodes, folder, tensorboard, resume_from, args.verbose))
    if tensorboard is not None:
        callbacks.append(tensorboard)

    def checkpoint(log: IterationLog, m: NePPO) -> None:
        m.save(folder / CHECKPOINT)  # atomic: a kill leaves the previous checkpoint or this one
        if args.save_freq > 0 and log.iteration % args.save_freq == 0:
            m.save(folder / f"model_{log.iteration}.zip")

    try:
        if args.n_timesteps is not None:
            spent = model.num_timesteps - start_timesteps
            if spent < args.n_timesteps or model.policy is None:
                budget = max(args.n_timesteps - spent, 1)
                model.learn(total_timesteps=budget, callback=[*callbacks, checkpoint], progress_bar=args.progress)
        elif model.num_iterations < start_iteration + config.n_iterations:
            remaining = start_iteration + config.n_iterations - model.num_iterations
            model.learn(remaining, callback=[*callbacks, checkpoint], progress_bar=args.progress)
        model.solve_iterate()  # resuming a run killed in its last solve (iterate_solve: final); else a no-op
    finally:
        logger.close()
        if tensorboard is not None:
            tensorboard.close()
        if model.queue is not None:
            model.queue.close()
    model.save(folder / "model.zip")
    summary = model.summary()
    summary["study"] = {"name": study.study_name, "storage": display_url(args.storage) or str(folder / JOURNAL_NAME)}
    write_json_atomic(folder / "summary.json", summary)
    if model.queue is not None:
        model.queue.finish()  # the workers stop
    (folder / CHECKPOINT).unlink(missing_ok=True)  # model.zip is the final model; summary.json marks the run finished
    print(format_summary(summary))
    print(f"Saved to {folder}")
    return folder


def run_baseline(args: argparse.Namespace, env_kwargs: dict, hyperparams: dict, command: str) -> Path:
    """``--algo ippo|mappo|maddpg``: train a baseline into a run folder laid out as NePPO's (``progress.csv`` has a row
    per training round: env steps and each agent's mean true episode return)."""
    for flag, used in (
        ("-optimize", args.optimize_hyperparameters),
        ("--storage", args.storage),
        ("--join", args.join),
        ("--n-workers", args.n_workers > 1),
        ("--eval-freq", args.eval_freq > 0),
    ):
        if used:
            raise ConfigError(f"{flag} is for --algo neppo only")
    budget = args.n_timesteps if args.n_timesteps is not None else hyperparams.get("n_timesteps")
    hyperparams.pop("n_timesteps", None)
    if not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"--algo {args.algo} needs an env-step budget: -n N (or n_timesteps in hyperparams/{args.algo}.yml)")
    cls = baseline_class(args.algo)
    if args.trained_agent is not None:
        if not Path(args.trained_agent).is_file():
            raise ConfigError(f"-i {args.trained_agent}: no such model file (give a run's model.zip)")
        model: MultiAgentAlgorithm = cls.load(args.trained_agent)
        if model.env_id != args.env:
            raise ConfigError(f"-i {args.trained_agent} was trained on {model.env_id}, not {args.env}")
        model.verbose = args.verbose
    else:
        model = cls(args.env, env_kwargs, hyperparams, args.seed, args.verbose)
    folder = next_run_folder(Path(args.log_folder), args.algo, args.env)
    write_yaml_atomic(folder / "config.yml", {**model.config.to_dict(), "n_timesteps": budget})
    write_yaml_atomic(folder / "args.yml", {**vars(args), "env_kwargs": env_kwargs, "seed": model.seed})
    (folder / "command.txt").write_text(command + "\n")
    tensorboard = configure(str(Path(args.tensorboard_log) / folder.name), ["tensorboard"]) if args.tensorboard_log else None
    with (folder / "progress.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["iteration", "env_steps", *[f"return_{a}" for a in model.agents]])

        def log_round(log: dict, m: MultiAgentAlgorithm) -> None:
            returns = [log["returns"].get(a, "") for a in m.agents]
            writer.writerow([log["round"], log["total_env_steps"], *returns])
            fh.flush()
            if tensorboard is not None and log["returns"]:
                for agent, value in log["returns"].items():
                    tensorboard.record(f"true_return/{agent}", value)
                tensorboard.dump(step=log["total_env_steps"])
            if args.save_freq > 0 and log["round"] % args.save_freq == 0:
                m.save(folder / f"model_{log['round']}.zip")

        try:
            model.learn(budget, callback=log_round, progress_bar=args.progress)
        finally:
            if tensorboard is not None:
                tensorboard.close()
    model.save(folder / "model.zip")
    summary = model.summary()
    write_json_atomic(folder / "summary.json", summary)
    print(f"{args.algo} on {args.env}: {summary['env_steps']} env steps in {summary['wall_time_s']:.1f} s, seed {model.seed}")
    for agent in model.agents:
        line = f"  {agent:>16}: true return {summary['returns'].get(agent, float('nan')):.4g}"
        if summary["regret"] is not None:
            line += f"  regret = {summary['regret'][agent]:.6f}"
        print(line)
    if summary["max_regret"] is not None:
        print(f"max regret = {summary['max_regret']:.6f}")
    print(f"Saved to {folder}")
    return folder


def build_model(args: argparse.Namespace, config: NePPOConfig, env_kwargs: dict, seed: int | None) -> NePPO:
    """The model a run starts from: a saved one (``-i``) or a fresh one."""
    if args.trained_agent is None:
        return NePPO(args.env, env_kwargs=env_kwargs, seed=seed, verbose=args.verbose, **config.model_kwargs())
    if not Path(args.trained_agent).is_file():
        raise ConfigError(f"-i {args.trained_agent}: no such model file (give a run's model.zip)")
    model = NePPO.load(args.trained_agent)
    if model.env_id != args.env:
        raise ConfigError(f"-i {args.trained_agent} was trained on {model.env_id}, not {args.env}; pass --env {model.env_id}")
    return model


def join(args: argparse.Namespace, storage: BaseStorage, name: str, config: NePPOConfig, env_kwargs: dict) -> None:
    """Work for the run in progress in study ``name``: solve its queued branches until it finishes.

    With ``--join`` wait for the study to appear first (workers may start before the coordinator)."""
    if args.join:
        print(f"Waiting for study '{name}' to appear on {display_url(args.storage)}", flush=True)
    deadline = time.monotonic() + 30  # a coordinator that has just created the study writes its settings next
    while not (stored := stored_settings(storage, name)):
        if not args.join and time.monotonic() > deadline:
            break
        time.sleep(0.5)
    seed = (stored or {}).get("seed") if args.seed is None else args.seed
    settings = {"env": args.env, "env_kwargs": env_kwargs, "seed": seed, "config": config.to_dict()}
    study = open_study(storage, name, settings)  # other settings: one line, nothing written
    queue = JobQueue(study, timeout=args.heartbeat_timeout)
    if not queue.wait_joinable():
        queue.close()
        raise ConfigError(
            f"study '{name}' takes no workers (its run finished, or solves its branches exactly in one process); "
            "use another --study-name"
        )
    model = build_model(args, config, env_kwargs, seed)
    print(f"Joining study '{name}' as a worker ({queue.owner}); Ctrl-C hands back the branch in hand")
    pool = BranchPool(model._worker_spec(), args.n_workers) if args.n_workers > 1 else None
    try:
        serve(queue, model, pool, verbose=args.verbose)
    finally:
        if pool is not None:
            pool.close()
    print(f"The run has finished; this worker solved {queue.solved} branches ({queue.env_steps} env steps)")


def optimize(args: argparse.Namespace, env_kwargs: dict, hyperparams: dict, command: str, folder: Path | None) -> Path:
    """``-optimize``: a hyperparameter study (see :mod:`sb3_neppo.hpo`), resumable like a training run."""
    if args.n_trials < 1 or args.n_seeds < 1:
        raise ConfigError("--n-trials and --n-seeds must be >= 1")
    resuming = folder is not None
    probe = NePPO(args.env, env_kwargs=env_kwargs, seed=0, **NePPOConfig.from_dict(hyperparams).model_kwargs())
    sampled_solver = not probe.solvers.exact
    settings = {"optimize": True, "env": args.env, "env_kwargs": env_kwargs, "hyperparams": hyperparams}
    settings.update(n_seeds=args.n_seeds, n_timesteps=args.n_timesteps, sampler=args.sampler, pruner=args.pruner)
    if not resuming:
        folder = next_run_folder(Path(args.log_folder), args.algo, args.env)
    try:
        storage = open_storage(args.storage, folder)
        study = open_study(
            storage, args.study_name or folder.name, settings, make_sampler(args.sampler, args.seed), make_pruner(args.pruner)
        )
    except ConfigError:
        if not resuming:
            shutil.rmtree(folder)
        raise
    if not resuming:
        write_yaml_atomic(folder / "args.yml", {**vars(args), "env_kwargs": env_kwargs})
        (folder / "command.txt").write_text(command + "\n")
    if resuming:  # trials this run's killed process left RUNNING are redone
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def build(config: NePPOConfig, seed: int) -> NePPO:
        return NePPO(args.env, env_kwargs=env_kwargs, seed=seed, n_workers=args.n_workers, **config.model_kwargs())

    def train(model: NePPO, config: NePPOConfig) -> None:
        if args.n_timesteps is not None:
            model.learn(total_timesteps=args.n_timesteps)
        else:
            model.learn(config.n_iterations)
        model.close()

    if finished < args.n_trials:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        objective = objective_fn(hyperparams, build, train, args.n_seeds, sampled_solver)
        study.optimize(objective, n_trials=args.n_trials - finished, show_progress_bar=args.progress)
    report = write_report(study, hyperparams, folder, sampled_solver)
    best = study.best_trial
    summary = {"algo": args.algo, "optimize": True, "env": args.env, "env_kwargs": env_kwargs, "n_seeds": args.n_seeds}
    summary.update(report, score=best.user_attrs.get("score"), best_params=best.params)
    summary["study"] = {"name": study.study_name, "storage": display_url(args.storage) or str(folder / JOURNAL_NAME)}
    write_json_atomic(folder / "summary.json", summary)
    print(f"best trial {best.number}: mean final {summary['score']} over {args.n_seeds} seeds = {best.value:.6f}")
    print(f"  {best.params}")
    print(f"{report['complete']} complete, {report['pruned']} pruned; best settings: {folder / 'best_hyperparams.yml'}")
    return folder


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    np.set_printoptions(precision=4, suppress=True)
    sys.exit(main())
