"""``python -m sb3_neppo.evaluate RUN_FOLDER``: the regret of a trained run's joint policy.

    python -m sb3_neppo.evaluate logs/neppo/mpe2.simple_tag_v3_1 [--br-timesteps 100000] [--eval-episodes 64]
        [--sampled] [--agents agent_0 ...] [--starts scratch warm] [--best-response] [--seed 0]

Markov games: per agent, best responses trained against the frozen others (:mod:`sb3_neppo.regret`). Normal-form
games: the exact regret of the learned strategies (``--best-response`` forces the sampled path with PPO best responses,
for runs trained with the sb3 solver). Writes ``regret.json`` into the run folder and fills ``regret``,
``max_regret`` (with ``regret_ci``, ``max_regret_ci``, ``regret_method`` and the best-response budget) in its
``summary.json``; both atomically.

It scores the run's ``model.zip``, or the last ``checkpoint.zip`` of an unfinished run; ``regret.json`` records which
under ``model`` (``file``, ``iterations``, ``env_steps`` and the model's ``agents``), so ``python -m sb3_neppo.plot``
can tell a stale one from the current one. ``summary.json`` is filled only when every agent was evaluated (a max over
some agents, ``--agents``, is not the run's max regret; ``regret.json`` still holds it).

Everything is read and checked before anything is written: the settings, ``summary.json`` (valid JSON, an object,
describing the model being scored), the model archive (whatever a damaged or altered archive raises is one line), the
agents. A failure is one line and leaves both files as they were.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sb3_neppo.archive import read_data
from sb3_neppo.atomic import atomic_open
from sb3_neppo.baselines import MultiAgentAlgorithm
from sb3_neppo.errors import ConfigError, OneLineParser, first_line, run_command
from sb3_neppo.models import load_model as load_any
from sb3_neppo.neppo import NePPO
from sb3_neppo.regret import AgentRegret, RegretConfig, RegretEvaluator, RegretReport
from sb3_neppo.solvers.sb3 import PPOCooperativeSolver

POLICY_FILES = ("model.zip", "checkpoint.zip")


def load_model(path: Path) -> NePPO | MultiAgentAlgorithm:
    """A saved NePPO model or baseline (the archive's ``data.json`` says which). The loaders make a damaged or altered
    file one line (tensors are read with ``weights_only=True``, nothing else is unpickled); the user named this run, so
    its env module may be imported."""
    try:
        return load_any(path, env=read_data(path).get("env_id"))
    except ImportError as exc:
        raise ConfigError(f"cannot load model {path}: it needs a package that is not installed ({exc})") from None


def model_record(model: NePPO | MultiAgentAlgorithm, path: Path) -> dict[str, Any]:
    """Which model a ``regret.json`` scored: the file, its iterations (rounds for a baseline), env steps and agents."""
    iterations = model.num_rounds if isinstance(model, MultiAgentAlgorithm) else model.num_iterations
    return {"file": path.name, "iterations": int(iterations), "env_steps": int(model.num_timesteps), "agents": model.agents}


def evaluate_model(
    model: NePPO | MultiAgentAlgorithm,
    config: RegretConfig | None = None,
    agents: list[str] | None = None,
    best_response: bool = False,
) -> RegretReport:
    """The regret of ``model``'s returned joint policy (NePPO's π^Φ or a baseline's actors): exact in a normal-form
    game unless ``best_response``."""
    config = config if config is not None else RegretConfig()
    unknown = [a for a in agents or [] if a not in model.agents]
    if unknown:
        raise ConfigError(f"no agent '{unknown[0]}' in {model.env_id}; its agents are: {', '.join(model.agents)}")
    if model.game is not None and not best_response:
        strategies = model.strategies()
        values, regret = model.game.expected_payoffs(strategies), model.game.regret(strategies)
        rows = [
            AgentRegret(a, float(r), (float(r), float(r)), float(v), float(v + r), start="exact", br_env_steps=0)
            for a, r, v in zip(model.agents, regret, values)
            if agents is None or a in agents
        ]
        top = max(r.regret for r in rows)
        return RegretReport(rows, top, (top, top), "exact", {})
    if isinstance(model, MultiAgentAlgorithm):
        evaluator = RegretEvaluator(model.env_fn, model.view, model.regret_solver_config(), config)
        return evaluator.evaluate(model.joint_policy(), agents)
    if not isinstance(model.solvers.cooperative, PPOCooperativeSolver):
        raise ConfigError("best-response evaluation needs a run trained with the sb3 solver (-params solver:sb3)")
    coop = model.solvers.cooperative
    evaluator = RegretEvaluator(model.env_fn, coop.view, coop.config, config)
    return evaluator.evaluate(model.result.policy, agents)


def find_policy(folder: Path) -> Path:
    """The run's final model, else its last checkpoint; one line if it has neither."""
    if not folder.exists():
        raise ConfigError(f"{folder}: no such run folder")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; give the folder of a trained run (python -m sb3_neppo.train -f)")
    for name in POLICY_FILES:
        if (folder / name).exists():
            return folder / name
    raise ConfigError(f"{folder} holds no policy ({' or '.join(POLICY_FILES)}); give the folder of a trained run")


def read_summary(folder: Path) -> dict | None:
    """The run's ``summary.json`` (None if it has none, an unfinished run); one line if it is not a JSON object."""
    path = folder / "summary.json"
    if not path.exists():
        return None
    how = "restore it, or retrain the run (python -m sb3_neppo.train writes it when a run finishes); nothing was written"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); {how}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {first_line(exc)}; {how}") from None
    if not isinstance(summary, dict):
        raise ConfigError(f"{path} holds a JSON {type(summary).__name__}, not an object; {how}")
    return summary


def check_summary(summary: dict, scored: dict[str, Any], folder: Path) -> None:
    """``summary.json`` describes the model being scored (same iterations and env steps); one line if not."""
    described = {k: summary.get(k) for k in ("iterations", "env_steps")}
    if any(described[k] is not None and described[k] != scored[k] for k in described):
        raise ConfigError(
            f"{folder}: summary.json describes iteration {described['iterations']} ({described['env_steps']} env steps) "
            f"but {scored['file']} holds iteration {scored['iterations']} ({scored['env_steps']} env steps); restore the "
            "run's model.zip, or retrain it"
        )


def updated_summary(summary: dict, report: RegretReport) -> dict:
    """``summary`` with its regret fields filled from ``report`` (other fields untouched)."""
    return {
        **summary,
        "regret": report.regret,
        "max_regret": report.max_regret,
        "regret_ci": {r.agent: list(r.ci) for r in report.agents},
        "max_regret_ci": list(report.max_ci),
        "regret_method": report.method,
        "regret_budget": None if report.method == "exact" else {r.agent: r.br_env_steps for r in report.agents},
    }


def write_results(folder: Path, files: dict[str, Any]) -> None:
    """Write each ``name: data`` as JSON into ``folder`` atomically: every file is serialized and staged beside its
    target first, then all are renamed over their targets (a failure before the renames leaves every file as it was)."""
    texts = {name: json.dumps(data, indent=2) + "\n" for name, data in files.items()}
    try:
        with ExitStack() as stack:  # leaving it renames the staged files, the last entered first
            for name, text in texts.items():
                stack.enter_context(atomic_open(folder / name)).write(text)
    except OSError as exc:
        raise ConfigError(f"cannot write the results into {folder}: {first_line(exc)}") from None


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m sb3_neppo.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="a run folder written by python -m sb3_neppo.train (any --algo)")
    defaults = RegretConfig()
    parser.add_argument("--br-timesteps", type=int, default=defaults.br_timesteps, help="env steps per best response")
    parser.add_argument("--eval-episodes", type=int, default=defaults.eval_episodes)
    parser.add_argument("--sampled", action="store_true", help="frozen agents sample their actions (default: most likely)")
    parser.add_argument("--agents", nargs="+", default=None, help="evaluate these agents only")
    parser.add_argument("--starts", nargs="+", default=list(defaults.starts), help="best-response starts: scratch, warm")
    parser.add_argument("--best-response", action="store_true", help="normal-form games: PPO best responses, not exact")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    return parser


def run(argv: list[str]) -> RegretReport:
    args = make_parser().parse_args(argv)
    config = RegretConfig(
        br_timesteps=args.br_timesteps,
        eval_episodes=args.eval_episodes,
        deterministic=not args.sampled,
        starts=tuple(args.starts),
        seed=args.seed,
    )
    if args.agents is not None and len(set(args.agents)) < len(args.agents):
        twice = next(a for a in args.agents if args.agents.count(a) > 1)
        raise ConfigError(f"--agents names {twice} twice; name each agent once")
    folder = args.folder
    path = find_policy(folder)
    summary = read_summary(folder)  # everything is read and checked before anything is written
    model = load_model(path)
    scored = model_record(model, path)
    if summary is not None:
        check_summary(summary, scored, folder)
    report = evaluate_model(model, config, args.agents, args.best_response)
    every_agent = len(report.agents) == len(model.agents)
    files = {"summary.json": updated_summary(summary, report)} if summary is not None and every_agent else {}
    files["regret.json"] = {**report.to_dict(), "model": scored}  # renamed first, then summary.json
    write_results(folder, files)
    for r in report.agents:
        budget = "" if report.method == "exact" else f"  BR {r.br_env_steps} env steps, kept {kept(r)}"
        print(f"{r.agent:>20}: regret {r.regret:+.4g}  95% CI [{r.ci[0]:.4g}, {r.ci[1]:.4g}]{budget}")
    label = "max regret" if every_agent else f"max regret of these {len(report.agents)} agents"
    print(f"{label} {report.max_regret:+.4g}  CI [{report.max_ci[0]:.4g}, {report.max_ci[1]:.4g}] ({report.method})")
    print(f"wrote {folder / 'regret.json'}" + (" and summary.json" if "summary.json" in files else ""))
    if summary is not None and not every_agent:
        print(f"summary.json left as it was: its regret is of all {len(model.agents)} agents; evaluate without --agents")
    return report


def kept(row: AgentRegret) -> str:
    """Which best-response checkpoint was kept, in words: π_i itself (the warm start before any update) when no trained
    checkpoint did better on the selection episodes, which is why its regret is exactly 0."""
    if row.start == "warm" and row.kept_at == 0:
        return "warm at 0 env steps (pi_i itself: no trained checkpoint did better on the selection episodes)"
    return row.start if row.kept_at is None else f"{row.start} at {row.kept_at} env steps"


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
