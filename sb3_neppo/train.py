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
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import torch
import yaml
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from pettingzoo import ParallelEnv
from stable_baselines3.common.logger import configure

from sb3_neppo.baselines import BASELINES, MultiAgentAlgorithm, baseline_class
from sb3_neppo.baselines.base import read_archive_data
from sb3_neppo.callbacks import EvalCallback, TensorBoardLogger
from sb3_neppo.config import MAX_SEED, NePPOConfig
from sb3_neppo.defaults import baseline_settings, neppo_settings
from sb3_neppo.distributed import JobQueue, serve
from sb3_neppo.envs.registry import make_env
from sb3_neppo.errors import ConfigError, OneLineParser, run_command
from sb3_neppo.hpo import PRUNERS, SAMPLERS, make_pruner, make_sampler, objective_fn, write_report
from sb3_neppo.hyperparams_files import merge_hyperparams, parse_key_values, yaml_load
from sb3_neppo.io import atomic_open, write_json_atomic, write_yaml_atomic
from sb3_neppo.neppo import IterationLog, NePPO, read_model_data
from sb3_neppo.runs import STARTED, RunFolder, RunInUse, claim_run_folder, find_unfinished_run, next_run_folder
from sb3_neppo.study import JOURNAL_NAME, StudyRecorder, display_url, open_storage, open_study, stored_settings
from sb3_neppo.workers import BranchPool

ALGOS = ("neppo", *BASELINES)
CHECKPOINT = "checkpoint.zip"


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


class CsvLogger:
    """Appends one row per outer iteration to ``progress.csv`` (flushed, so a killed run keeps its rows).

    :param keep_until: resuming: keep the existing rows up to this iteration (later ones are replayed) and append.
    """

    def __init__(self, path: Path, agents: list[str], dim: int, keep_until: int | None = None):
        if keep_until is not None and path.exists():
            rows = list(csv.reader(read_lines(path)))  # a row torn by a kill is dropped
            if rows:
                kept = [rows[0]] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= keep_until]
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
    if summary.get("certificate") == "estimate":
        budget = summary.get("best_response_budget")
        trained = f" ({budget['ppo_updates']} PPO update(s), {budget['env_steps']} env steps per solve)" if budget else ""
        lines.append(
            "F is an estimate: it bounds regret only as well as pi^Phi maximises Phi and the best responses are solved"
            f"{trained}; measure regret with python -m sb3_neppo.evaluate"
        )
    lines += [f"warning: {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)


def check_args(args: argparse.Namespace) -> None:
    """One line for every flag value that cannot work, before anything is built or written."""
    if args.n_timesteps is not None and args.n_timesteps < 1:
        raise ConfigError(f"-n must be an env-step budget >= 1 (got {args.n_timesteps})")
    if args.seed is not None and not 0 <= args.seed < MAX_SEED:
        raise ConfigError(f"--seed must be in [0, 2**31) (got {args.seed})")
    cpus = os.cpu_count() or 1
    if not 1 <= args.num_threads <= 4 * cpus:
        raise ConfigError(f"--num-threads must be in 1..{4 * cpus} (this machine has {cpus} CPUs; got {args.num_threads})")
    if args.n_workers < 1:
        raise ConfigError(f"--n-workers must be >= 1 (got {args.n_workers})")
    if args.eval_episodes < 1:
        raise ConfigError(f"--eval-episodes must be >= 1 (got {args.eval_episodes})")
    if not args.heartbeat_timeout > 0:
        raise ConfigError(f"--heartbeat-timeout must be > 0 seconds (got {args.heartbeat_timeout})")
    if args.n_trials < 1 or args.n_seeds < 1:
        raise ConfigError("--n-trials and --n-seeds must be >= 1")
    if args.join and (args.storage is None or args.study_name is None):
        raise ConfigError("--join needs the run's --storage and --study-name")
    if args.trained_agent is not None and args.yaml_file is not None:
        raise ConfigError("-i continues a saved model with its own settings; give changes with -params, not -yaml")
    if args.tensorboard_log is not None:
        try:
            Path(args.tensorboard_log).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot write to the TensorBoard folder {args.tensorboard_log}: {exc.strerror}") from None


def run(argv: list[str]) -> Path | None:
    """Parse ``argv``, train (resuming the run this same command left unfinished), write the run folder, return it.

    With ``--storage`` and ``--study-name`` of a run in progress elsewhere, work for that run instead (returns None)."""
    args = make_parser().parse_args(argv)
    check_args(args)
    torch.set_num_threads(args.num_threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its "[I ...] A new study created" lines are noise here
    env_kwargs = parse_key_values(args.env_kwargs, "--env-kwargs")
    overrides = parse_key_values(args.hyperparams, "-params")
    command = shlex.join(["python", "-m", "sb3_neppo.train", *argv])
    env = make_env(args.env, env_kwargs)  # the defaults depend on the game (sb3_neppo.defaults)
    try:
        if args.algo != "neppo":
            settings_class = baseline_class(args.algo).config_class
            hyperparams = baseline_settings(args.algo, settings_class, env, args.env, {}, args.yaml_file)
        else:
            config, env_kwargs = run_config(args, env, overrides, env_kwargs)
    finally:
        env.close()
    if args.algo != "neppo":
        return run_baseline(args, env_kwargs, hyperparams, overrides, command)
    log_folder = Path(args.log_folder)
    if args.join:
        return join(args, open_storage(args.storage, log_folder), args.study_name, config, env_kwargs)
    if args.optimize_hyperparameters:
        return optimize(args, env_kwargs, config.to_dict(), command)
    unfinished = find_unfinished_run(log_folder, args.algo, args.env, command)
    if args.storage is not None and unfinished is None:
        name = args.study_name or next_run_folder(log_folder, args.algo, args.env, create=False).name
        storage = open_storage(args.storage, log_folder)
        if stored_settings(storage, name) is not None:  # a run of this command is in progress elsewhere: help it
            return join(args, storage, name, config, env_kwargs)
    fresh = None  # a new run's model, built before anything is written: bad input leaves no folder behind
    if unfinished is None or not (unfinished / STARTED).exists():
        fresh = build_model(args, config, env_kwargs, args.seed)
        check_budget(args, fresh, resuming=False)
    try:
        claim = claim_run_folder(log_folder, args.algo, args.env, command)
    except RunInUse as busy:
        if args.storage is None:
            raise
        return join(args, open_storage(args.storage, log_folder), args.study_name or busy.folder.name, config, env_kwargs)
    try:
        return train_neppo(args, claim, config, env_kwargs, None if claim.resuming else fresh)
    except ConfigError:
        if not claim.resuming and not (claim.path / CHECKPOINT).exists():
            claim.discard()  # bad input found once the folder was made: nothing of this attempt is kept
        raise
    finally:
        claim.release()


def run_config(args: argparse.Namespace, env: ParallelEnv, overrides: dict, env_kwargs: dict) -> tuple[NePPOConfig, dict]:
    """The settings and env arguments the run trains with: the game's defaults with ``-params`` applied
    (:mod:`sb3_neppo.defaults`, as the Python API) and ``--env-kwargs`` or, with ``-i``, the saved model's own settings
    with ``-params`` applied and its own env (what cannot be changed on a trained model is refused, so what is
    recorded is what runs)."""
    if args.trained_agent is None:
        return NePPOConfig.from_dict(neppo_settings(env, args.env, overrides, args.yaml_file)), env_kwargs
    if args.optimize_hyperparameters:
        raise ConfigError("-optimize tunes fresh models; drop -i")
    data = read_model_data(args.trained_agent)
    if data["env_id"] != args.env:
        trained = data["env_id"]
        raise ConfigError(f"-i {args.trained_agent} was trained on {trained}, not {args.env}; give --env {trained}")
    if args.env_kwargs is not None and env_kwargs != data["env_kwargs"]:
        raise ConfigError(
            f"-i continues the saved model on its own env ({data['env_kwargs']}); drop --env-kwargs, or train a new model"
        )
    if args.seed is not None and args.seed != data["seed"]:
        raise ConfigError(f"-i continues the saved model's random streams (seed {data['seed']}); drop --seed")
    fixed = [k for k in ("potential", "potential_kwargs", "solver") if k in overrides]
    if fixed:
        raise ConfigError(f"-i cannot change {', '.join(fixed)} of a trained model; train a new model instead")
    saved = {k: v for k, v in data["config"].items() if k != "n_iterations"}
    saved["n_iterations"] = neppo_settings(env, args.env, {}, args.yaml_file)["n_iterations"]  # this run's length
    return NePPOConfig.from_dict(merge_hyperparams(saved, overrides)), dict(data["env_kwargs"])


def check_budget(args: argparse.Namespace, model: NePPO, resuming: bool) -> None:
    """Refuse, before anything is written, a budget the run cannot use (a resumed run spends what is left of it)."""
    if args.n_timesteps is not None and model.solvers.exact:
        raise ConfigError("an env-step budget (-n) needs the sampled (sb3) solvers; the exact ones take no env steps")
    if args.n_timesteps is not None and not resuming:
        model.check_budget(args.n_timesteps)


def train_neppo(
    args: argparse.Namespace, claim: RunFolder, config: NePPOConfig, env_kwargs: dict, model: NePPO | None = None
) -> Path:
    """Train NePPO in the claimed run folder (continuing it if it had started) and write its results.

    :param model: a new run's model, already built (else it is built, or loaded from the run's checkpoint)."""
    folder, resuming = claim.path, claim.resuming
    first = read_yaml(folder / STARTED) if resuming else {}  # the first attempt's arguments
    seed = first.get("seed") if args.seed is None else args.seed  # resuming: the seed the first attempt drew
    if resuming and (folder / CHECKPOINT).exists():
        model = NePPO.load(folder / CHECKPOINT, env=args.env)
    elif model is None:
        model = build_model(args, config, env_kwargs, seed)
    model.verbose, model.n_workers = args.verbose, worker_count(args.n_workers, model)
    check_budget(args, model, resuming)
    if resuming:  # where this run started (> 0 when it continued a saved model with -i)
        start_iteration, start_timesteps = first.get("start_iteration", 0), first.get("start_timesteps", 0)
    else:
        start_iteration, start_timesteps = model.num_iterations, model.num_timesteps
        write_yaml_atomic(folder / "config.yml", config.to_dict())
        extra = {"env_kwargs": model.env_kwargs, "seed": model.seed, "start_iteration": start_iteration}
        write_yaml_atomic(folder / STARTED, {**vars(args), **extra, "start_timesteps": start_timesteps})
    settings = {"env": args.env, "env_kwargs": model.env_kwargs, "seed": model.seed, "config": config.to_dict()}
    storage, name = open_storage(args.storage, folder), args.study_name or folder.name
    if resuming:
        check_history(folder, storage, name, args.storage)
    study, created = open_study(storage, name, settings)
    try:
        return train_in_study(args, folder, resuming, model, study, config, start_iteration, start_timesteps)
    except ConfigError:
        if created and args.storage is not None and not (folder / CHECKPOINT).exists():
            optuna.delete_study(study_name=name, storage=storage)  # nothing of this attempt is kept
        raise


def check_history(folder: Path, storage: BaseStorage, name: str, url: str | None) -> None:
    """Refuse to resume a run whose study lost the history its folder records (an emptied or replaced journal)."""
    rows = max(len(read_lines(folder / "progress.csv")) - 1, 0)
    if not rows and not (folder / CHECKPOINT).exists():
        return  # killed before its first iteration: nothing to lose
    if stored_settings(storage, name) is None or not storage.get_all_trials(storage.get_study_id_from_name(name)):
        where = display_url(url) or str(folder / JOURNAL_NAME)
        raise ConfigError(
            f"{folder} has {rows} iterations but its study '{name}' in {where} is missing or empty (emptied or replaced?); "
            "restore it from a copy, or give another -f to start a new run"
        )


def train_in_study(
    args: argparse.Namespace,
    folder: Path,
    resuming: bool,
    model: NePPO,
    study: optuna.Study,
    config: NePPOConfig,
    start_iteration: int,
    start_timesteps: int,
) -> Path:
    """Learn with every solve recorded in ``study``, checkpointing after every iteration; write the results."""
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
    if resuming:
        print(f"Resuming {folder} at iteration {model.num_iterations} (study '{study.study_name}')")
    if not model.solvers.exact:
        budget = None if args.n_timesteps is None else args.n_timesteps - (model.num_timesteps - start_timesteps)
        print(f"Cost: {model.cost_text(model.iteration_cost(), budget)}")
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
            remaining = args.n_timesteps - (model.num_timesteps - start_timesteps)
            cost = model.iteration_cost()
            need = cost["iteration"] + (cost["solve"] if model.config.iterate_solve == "final" else 0)
            if not resuming or remaining >= need:  # a resumed run whose budget is spent only solves its iterate
                model.learn(total_timesteps=remaining, callback=[*callbacks, checkpoint], progress_bar=args.progress)
        elif model.num_iterations < start_iteration + config.n_iterations:
            remaining = start_iteration + config.n_iterations - model.num_iterations
            model.learn(remaining, callback=[*callbacks, checkpoint], progress_bar=args.progress)
        model.solve_iterate()  # resuming a run killed in its last solve (iterate_solve: final); else a no-op
    finally:
        model.close()
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


def worker_count(requested: int, model: NePPO) -> int:
    """``--n-workers``, or 1 with a warning where more cannot help."""
    if requested > 1 and model.solvers.exact:
        warnings.warn(
            f"--n-workers {requested} ignored: the exact solvers solve a branch in microseconds, far less than a round "
            "trip to a worker process; solving in this process (the numbers are the same)",
            stacklevel=2,
        )
        return 1
    cpus = os.cpu_count() or 1
    if requested > cpus:
        warnings.warn(f"--n-workers {requested} is more than this machine's {cpus} CPUs: they will share them", stacklevel=2)
    return requested


def read_yaml(path: Path) -> dict:
    """A run folder's YAML record (``args.yml``), or one line if it is damaged."""
    try:
        data = yaml_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {path} ({type(exc).__name__}); restore it, or give another -f to start anew") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a mapping of arguments; restore it, or give another -f to start anew")
    return data


def read_lines(path: Path) -> list[str]:
    """The complete lines of a text file a killed process may have torn (a last line with no newline is dropped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return lines[:-1]  # the part after the last newline is empty, or torn


def run_baseline(args: argparse.Namespace, env_kwargs: dict, hyperparams: dict, overrides: dict, command: str) -> Path:
    """``--algo ippo|mappo|maddpg``: train a baseline into a run folder laid out as NePPO's (``progress.csv`` has a row
    per training round: env steps and each agent's mean true episode return), resumable like a NePPO run: the model
    checkpoints at its boundaries (``checkpoint_freq`` env steps) and the same command continues from there."""
    for flag, used in (
        ("-optimize", args.optimize_hyperparameters),
        ("--storage", args.storage),
        ("--join", args.join),
        ("--n-workers", args.n_workers > 1),
        ("--eval-freq", args.eval_freq > 0),
    ):
        if used:
            raise ConfigError(f"{flag} is for --algo neppo only")
    budget = overrides.get("n_timesteps", hyperparams.get("n_timesteps")) if args.n_timesteps is None else args.n_timesteps
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"--algo {args.algo} needs an env-step budget: -n N (or n_timesteps in hyperparams/{args.algo}.yml)")
    overrides = {k: v for k, v in overrides.items() if k != "n_timesteps"}
    log_folder = Path(args.log_folder)
    unfinished = find_unfinished_run(log_folder, args.algo, args.env, command)
    fresh = None  # a new run's model, built before anything is written: bad input leaves no folder behind
    if unfinished is None or not (unfinished / STARTED).exists():
        fresh = build_baseline(args, env_kwargs, hyperparams, overrides, args.seed)
    claim = claim_run_folder(log_folder, args.algo, args.env, command)
    try:
        model = None if claim.resuming else fresh
        return train_baseline(args, claim, env_kwargs, hyperparams, overrides, budget, model)
    except ConfigError:
        if not claim.resuming and not (claim.path / CHECKPOINT).exists():
            claim.discard()
        raise
    finally:
        claim.release()


def build_baseline(
    args: argparse.Namespace, env_kwargs: dict, hyperparams: dict, overrides: dict, seed: int | None
) -> MultiAgentAlgorithm:
    """A baseline run's model: a fresh one, or a saved one (``-i``) with ``-params`` applied to its own settings."""
    cls = baseline_class(args.algo)
    if args.trained_agent is None:
        config = {k: v for k, v in merge_hyperparams(hyperparams, overrides).items() if k != "n_timesteps"}
        return cls(args.env, env_kwargs, config, seed, args.verbose)
    data = read_archive_data(args.trained_agent)
    if data.get("env_id") != args.env:
        trained = data.get("env_id")
        raise ConfigError(f"-i {args.trained_agent} was trained on {trained}, not {args.env}; give --env {trained}")
    if args.env_kwargs is not None and env_kwargs != data.get("env_kwargs"):
        raise ConfigError(
            f"-i continues the saved model on its own env ({data.get('env_kwargs')}); drop --env-kwargs, or train a new model"
        )
    if args.seed is not None and args.seed != data.get("seed"):
        raise ConfigError(f"-i continues the saved model's random streams (seed {data.get('seed')}); drop --seed")
    model = cls.load(args.trained_agent, config=overrides, env=args.env)
    model.verbose = args.verbose
    return model


def train_baseline(
    args: argparse.Namespace,
    claim: RunFolder,
    env_kwargs: dict,
    hyperparams: dict,
    overrides: dict,
    budget: int,
    model: MultiAgentAlgorithm | None,
) -> Path:
    """Train a baseline in the claimed run folder (continuing it from its checkpoint if it had started)."""
    folder, resuming = claim.path, claim.resuming
    first = read_yaml(folder / STARTED) if resuming else {}
    if resuming and (folder / CHECKPOINT).exists():
        model = baseline_class(args.algo).load_checkpoint(folder / CHECKPOINT, env=args.env)
        model.verbose = args.verbose
    elif model is None:
        model = build_baseline(args, env_kwargs, hyperparams, overrides, first.get("seed", args.seed))
    if resuming:
        start_timesteps = first.get("start_timesteps", 0)
        print(f"Resuming {folder} at {model.num_timesteps} env steps (round {model.num_rounds})")
    else:
        start_timesteps = model.num_timesteps
        write_yaml_atomic(folder / "config.yml", {**model.config.to_dict(), "n_timesteps": budget})
        extra = {"env_kwargs": model.env_kwargs, "seed": model.seed, "start_timesteps": start_timesteps}
        write_yaml_atomic(folder / STARTED, {**vars(args), **extra})
    tensorboard = configure(str(Path(args.tensorboard_log) / folder.name), ["tensorboard"]) if args.tensorboard_log else None
    header = ["iteration", "env_steps", *[f"return_{a}" for a in model.agents]]
    rows = [r for r in csv.reader(read_lines(folder / "progress.csv"))][1:] if resuming else []
    rows = [r for r in rows if r and r[0].isdigit() and int(r[0]) <= model.num_rounds]  # later rounds are redone
    with atomic_open(folder / "progress.csv", newline="") as fh:
        csv.writer(fh).writerows([header, *rows])
    with (folder / "progress.csv").open("a", newline="") as fh:
        writer = csv.writer(fh)

        def log_round(log: dict, m: MultiAgentAlgorithm) -> None:
            returns = [log["returns"].get(a, "") for a in m.agents]
            writer.writerow([log["round"], log["total_env_steps"], *returns])
            fh.flush()
            if tensorboard is not None and log["returns"]:
                for agent, value in log["returns"].items():
                    tensorboard.record(f"true_return/{agent}", value)
                tensorboard.dump(step=log["total_env_steps"])
            if log["checkpoint"]:
                m.save_checkpoint(folder / CHECKPOINT)  # atomic: a kill leaves the previous checkpoint or this one
            if args.save_freq > 0 and log["round"] % args.save_freq == 0:
                m.save(folder / f"model_{log['round']}.zip")

        try:
            remaining = start_timesteps + budget - model.num_timesteps
            if remaining > 0:
                model.learn(remaining, callback=log_round, progress_bar=args.progress)
        finally:
            if tensorboard is not None:
                tensorboard.close()
    model.save(folder / "model.zip")
    summary = model.summary()
    write_json_atomic(folder / "summary.json", summary)
    (folder / CHECKPOINT).unlink(missing_ok=True)
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
    """The model a run starts from: a saved one (``-i``, with the run's settings applied) or a fresh one."""
    if args.trained_agent is None:
        return NePPO(args.env, env_kwargs=env_kwargs, seed=seed, verbose=args.verbose, config=config)
    return NePPO.load(args.trained_agent, env=args.env, verbose=args.verbose, **config.model_kwargs())


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
    study, _ = open_study(storage, name, settings)  # other settings: one line, nothing written
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


def optimize(args: argparse.Namespace, env_kwargs: dict, hyperparams: dict, command: str) -> Path:
    """``-optimize``: a hyperparameter study (see :mod:`sb3_neppo.hpo`), resumable like a training run."""
    probe = NePPO(args.env, env_kwargs=env_kwargs, seed=0, config=NePPOConfig.from_dict(hyperparams))
    sampled_solver = not probe.solvers.exact
    settings = {"optimize": True, "env": args.env, "env_kwargs": env_kwargs, "hyperparams": hyperparams}
    settings.update(n_seeds=args.n_seeds, n_timesteps=args.n_timesteps, sampler=args.sampler, pruner=args.pruner)
    claim = claim_run_folder(Path(args.log_folder), args.algo, args.env, command)
    folder, resuming = claim.path, claim.resuming
    try:
        storage = open_storage(args.storage, folder)
        study, _ = open_study(
            storage, args.study_name or folder.name, settings, make_sampler(args.sampler, args.seed), make_pruner(args.pruner)
        )
        if not resuming:
            write_yaml_atomic(folder / STARTED, {**vars(args), "env_kwargs": env_kwargs})
    except ConfigError:
        if not resuming:
            claim.discard()
        raise
    try:
        return optimize_in_study(args, folder, resuming, study, hyperparams, env_kwargs, sampled_solver)
    finally:
        claim.release()


def optimize_in_study(
    args: argparse.Namespace,
    folder: Path,
    resuming: bool,
    study: optuna.Study,
    hyperparams: dict,
    env_kwargs: dict,
    sampled_solver: bool,
) -> Path:
    """Run the study's remaining trials and write its report into the run folder."""
    if resuming:  # trials this run's killed process left RUNNING are redone
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    def build(config: NePPOConfig, seed: int) -> NePPO:
        return NePPO(args.env, env_kwargs=env_kwargs, seed=seed, n_workers=args.n_workers, config=config)

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
