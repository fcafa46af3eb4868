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
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import optuna
import torch

from sb3_neppo.baselines import baseline_class
from sb3_neppo.config import MAX_SEED
from sb3_neppo.defaults import baseline_settings, is_normal_form
from sb3_neppo.devices import resolve_device
from sb3_neppo.envs.registry import make_env
from sb3_neppo.errors import ConfigError, OneLineParser, run_command
from sb3_neppo.experiment import run_baseline, run_config, run_neppo
from sb3_neppo.hpo import PRUNERS, SAMPLERS
from sb3_neppo.hyperparams_files import merge_hyperparams, parse_key_values
from sb3_neppo.models import ALGOS


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
        "--device",
        choices=("auto", "cpu", "cuda"),
        help="where the networks run (default: the settings', auto: a CUDA GPU if torch sees one); VMAS worlds: the CPU",
    )
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
    if args.device is not None:  # the networks' device: a setting of the sampled solvers and of the baselines
        resolve_device(args.device, "--device")
        if args.algo != "neppo":
            overrides = merge_hyperparams(overrides, {"device": args.device})
        elif not is_normal_form(env) or overrides.get("solver") == "sb3":
            overrides = merge_hyperparams(overrides, {"solver_kwargs": {"device": args.device}})
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
    return run_neppo(args, config, env_kwargs, command)


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    np.set_printoptions(precision=4, suppress=True)
    sys.exit(main())
