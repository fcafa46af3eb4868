"""The runs of ``python -m sb3_neppo.train`` (:mod:`sb3_neppo.train` parses and dispatches; these do the work), each in
the run folder it claims (:class:`~sb3_neppo.runs.RunFolder`: the folder, what a run records when it starts, its
checkpoint, its end), siblings of one another:

* :func:`run_neppo` — train NePPO (resuming this command's unfinished run from its checkpoint and its study), or join
  a run in progress as a worker (:func:`join`), or run a hyperparameter study (:func:`optimize`);
* :func:`run_baseline` — train IPPO, MAPPO or MADDPG, resumable from its checkpoint boundaries.

What resume must truncate, each output writer knows (:class:`~sb3_neppo.monitors.CsvLogger` keeps the rows up to the
checkpoint's iteration); the study keeps every solve (:class:`~sb3_neppo.storage.StudyRecorder`).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState
from pettingzoo import ParallelEnv
from stable_baselines3.common.logger import configure

from sb3_neppo.archive import read_data
from sb3_neppo.atomic import read_lines, write_json_atomic, write_yaml_atomic
from sb3_neppo.baselines import MultiAgentAlgorithm, baseline_class
from sb3_neppo.config import NePPOConfig
from sb3_neppo.console import cost_text, format_summary
from sb3_neppo.defaults import neppo_settings
from sb3_neppo.distributed import JobQueue, QueueExecutor, serve
from sb3_neppo.errors import ConfigError
from sb3_neppo.execution import ProcessExecutor, make_executor
from sb3_neppo.hpo import SearchSpace, make_pruner, make_sampler, objective_fn, write_report
from sb3_neppo.hyperparams_files import merge_hyperparams
from sb3_neppo.monitors import CsvLogger, EvalMonitor, TensorBoardLogger
from sb3_neppo.neppo import IterationLog, NePPO, read_model_data
from sb3_neppo.runs import CHECKPOINT, STARTED, RunFolder, RunInUse, claim_run_folder, find_unfinished_run, next_run_folder
from sb3_neppo.storage import JOURNAL_NAME, StudyRecorder, display_url, open_storage, open_study, stored_settings


def run_neppo(args: argparse.Namespace, config: NePPOConfig, env_kwargs: dict, command: str) -> Path | None:
    """A NePPO run of the command line: join a run in progress, optimize, or train (resuming this command's unfinished
    run); returns the run folder (None for a worker)."""
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
    with claim:
        return train_neppo(args, claim, config, env_kwargs, None if claim.resuming else fresh)


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
    first = claim.first_args()  # the first attempt's arguments
    seed = first.get("seed") if args.seed is None else args.seed  # resuming: the seed the first attempt drew
    if resuming and claim.checkpoint.exists():
        model = NePPO.load(claim.checkpoint, env=args.env)
    elif model is None:
        model = build_model(args, config, env_kwargs, seed)
    model.verbose = args.verbose
    check_budget(args, model, resuming)
    if resuming:  # where this run started (> 0 when it continued a saved model with -i)
        start_iteration, start_timesteps = first.get("start_iteration", 0), first.get("start_timesteps", 0)
    else:
        start_iteration, start_timesteps = model.num_iterations, model.num_timesteps
        extra = {"env_kwargs": model.env_kwargs, "seed": model.seed, "start_iteration": start_iteration}
        claim.record_start(config.to_dict(), {**vars(args), **extra, "start_timesteps": start_timesteps})
    settings = {"env": args.env, "env_kwargs": model.env_kwargs, "seed": model.seed, "config": config.to_dict()}
    storage, name = open_storage(args.storage, folder), args.study_name or folder.name
    if resuming:
        check_history(folder, storage, name, args.storage)
    study, created = open_study(storage, name, settings)
    try:
        return train_in_study(args, claim, model, study, config, start_iteration, start_timesteps)
    except ConfigError:
        if created and args.storage is not None and not claim.checkpoint.exists():
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
    claim: RunFolder,
    model: NePPO,
    study: optuna.Study,
    config: NePPOConfig,
    start_iteration: int,
    start_timesteps: int,
) -> Path:
    """Learn with every solve recorded in ``study``, checkpointing after every iteration; write the results."""
    folder, resuming = claim.path, claim.resuming
    model.set_recorder(StudyRecorder(study))
    local = make_executor(worker_count(args.n_workers, model))
    queue = None
    if args.storage is not None and model.solvers.exact:  # microseconds a branch: nothing to share
        JobQueue.refuse_workers(study)
    elif args.storage is not None:  # workers on other machines may join (sb3_neppo.distributed)
        queue = JobQueue(study, timeout=args.heartbeat_timeout)
    model.set_executor(local if queue is None else QueueExecutor(queue, local))
    if queue is not None:
        if not resuming:
            print(
                f"Study '{study.study_name}': other machines join this run with the same command and "
                f"--study-name {study.study_name}"
            )
    if resuming:
        print(f"Resuming {folder} at iteration {model.num_iterations} (study '{study.study_name}')")
    if not model.solvers.exact:
        budget = None if args.n_timesteps is None else args.n_timesteps - (model.num_timesteps - start_timesteps)
        print(f"Cost: {cost_text(model.iteration_cost(), budget)}")
    logger = CsvLogger.for_neppo(folder / "progress.csv", model.agents, model.potential.dim, keep_until=model.num_iterations)
    callbacks: list = [logger]
    tensorboard = TensorBoardLogger(Path(args.tensorboard_log) / folder.name) if args.tensorboard_log else None
    if args.eval_freq > 0:
        resume_from = model.num_iterations if resuming else None
        callbacks.append(EvalMonitor(args.eval_freq, args.eval_episodes, folder, tensorboard, resume_from, args.verbose))
    if tensorboard is not None:
        callbacks.append(tensorboard)

    def checkpoint(log: IterationLog, m: NePPO) -> None:
        m.save(claim.checkpoint)  # atomic: a kill leaves the previous checkpoint or this one
        if args.save_freq > 0 and log.iteration % args.save_freq == 0:
            m.save(folder / f"model_{log.iteration}.zip")

    try:
        if args.n_timesteps is not None:
            remaining = args.n_timesteps - (model.num_timesteps - start_timesteps)
            if not resuming or remaining >= model.next_need():  # a resumed run whose budget is spent only solves its iterate
                model.learn(total_timesteps=remaining, callback=[*callbacks, checkpoint], progress_bar=args.progress)
        elif model.num_iterations < start_iteration + config.n_iterations:
            remaining = start_iteration + config.n_iterations - model.num_iterations
            model.learn(n_iterations=remaining, callback=[*callbacks, checkpoint], progress_bar=args.progress)
        model.solve_iterate()  # resuming a run killed in its last solve (iterate_solve: final); else a no-op
    finally:
        model.close()
        logger.close()
        if tensorboard is not None:
            tensorboard.close()
    summary = model.summary()
    summary["study"] = {"name": study.study_name, "storage": display_url(args.storage) or str(folder / JOURNAL_NAME)}
    claim.finish(model, summary)
    if queue is not None:
        queue.finish()  # the workers stop
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
    with claim_run_folder(log_folder, args.algo, args.env, command) as claim:
        return train_baseline(args, claim, env_kwargs, hyperparams, overrides, budget, None if claim.resuming else fresh)


def build_baseline(
    args: argparse.Namespace, env_kwargs: dict, hyperparams: dict, overrides: dict, seed: int | None
) -> MultiAgentAlgorithm:
    """A baseline run's model: a fresh one, or a saved one (``-i``) with ``-params`` applied to its own settings."""
    cls = baseline_class(args.algo)
    if args.trained_agent is None:
        config = {k: v for k, v in merge_hyperparams(hyperparams, overrides).items() if k != "n_timesteps"}
        return cls(args.env, env_kwargs, config, seed, args.verbose)
    data = read_data(args.trained_agent)
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
    first = claim.first_args()
    if resuming and claim.checkpoint.exists():
        model = baseline_class(args.algo).load_checkpoint(claim.checkpoint, env=args.env)
        model.verbose = args.verbose
    elif model is None:
        model = build_baseline(args, env_kwargs, hyperparams, overrides, first.get("seed", args.seed))
    if resuming:
        start_timesteps = first.get("start_timesteps", 0)
        print(f"Resuming {folder} at {model.num_timesteps} env steps (round {model.num_rounds})")
    else:
        start_timesteps = model.num_timesteps
        extra = {"env_kwargs": model.env_kwargs, "seed": model.seed, "start_timesteps": start_timesteps}
        claim.record_start({**model.config.to_dict(), "n_timesteps": budget}, {**vars(args), **extra})
    tensorboard = configure(str(Path(args.tensorboard_log) / folder.name), ["tensorboard"]) if args.tensorboard_log else None
    progress = CsvLogger.for_rounds(folder / "progress.csv", model.agents, model.num_rounds if resuming else None)

    def log_round(log: dict, m: MultiAgentAlgorithm) -> None:
        if tensorboard is not None and log["returns"]:
            for agent, value in log["returns"].items():
                tensorboard.record(f"true_return/{agent}", value)
            tensorboard.dump(step=log["total_env_steps"])
        if log["checkpoint"]:
            m.save_checkpoint(claim.checkpoint)  # atomic: a kill leaves the previous checkpoint or this one
        if args.save_freq > 0 and log["round"] % args.save_freq == 0:
            m.save(folder / f"model_{log['round']}.zip")

    try:
        remaining = start_timesteps + budget - model.num_timesteps
        if remaining > 0:
            model.learn(remaining, callback=[progress, log_round], progress_bar=args.progress)
    finally:
        progress.close()
        if tensorboard is not None:
            tensorboard.close()
    summary = model.summary()
    claim.finish(model, summary)
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
    pool = ProcessExecutor(args.n_workers) if args.n_workers > 1 else None
    if pool is not None:
        pool.bind(model.branch_solver)
    try:
        serve(queue, model.branch_solver, pool, verbose=args.verbose)
    finally:
        if pool is not None:
            pool.close()
    print(f"The run has finished; this worker solved {queue.solved} branches ({queue.env_steps} env steps)")


def optimize(args: argparse.Namespace, env_kwargs: dict, hyperparams: dict, command: str) -> Path:
    """``-optimize``: a hyperparameter study (see :mod:`sb3_neppo.hpo`), resumable like a training run."""
    probe = NePPO(args.env, env_kwargs=env_kwargs, seed=0, config=NePPOConfig.from_dict(hyperparams))
    space = SearchSpace.of(probe)
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
    try:  # from here on the study holds what this attempt did: the folder is kept whatever happens
        return optimize_in_study(args, folder, resuming, study, hyperparams, env_kwargs, space)
    finally:
        claim.release()


def optimize_in_study(
    args: argparse.Namespace,
    folder: Path,
    resuming: bool,
    study: optuna.Study,
    hyperparams: dict,
    env_kwargs: dict,
    space: SearchSpace,
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
            model.learn(n_iterations=config.n_iterations)
        model.close()

    if finished < args.n_trials:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        objective = objective_fn(hyperparams, build, train, args.n_seeds, space)
        study.optimize(objective, n_trials=args.n_trials - finished, show_progress_bar=args.progress)
    report = write_report(study, hyperparams, folder, space)
    best = study.best_trial
    summary = {"algo": args.algo, "optimize": True, "env": args.env, "env_kwargs": env_kwargs, "n_seeds": args.n_seeds}
    summary.update(report, score=best.user_attrs.get("score"), best_params=best.params)
    summary["study"] = {"name": study.study_name, "storage": display_url(args.storage) or str(folder / JOURNAL_NAME)}
    write_json_atomic(folder / "summary.json", summary)
    print(f"best trial {best.number}: mean final {summary['score']} over {args.n_seeds} seeds = {best.value:.6f}")
    print(f"  {best.params}")
    print(f"{report['complete']} complete, {report['pruned']} pruned; best settings: {folder / 'best_hyperparams.yml'}")
    return folder
