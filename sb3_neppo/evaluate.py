"""``python -m sb3_neppo.evaluate RUN_FOLDER``: the regret of a trained run's joint policy.

    python -m sb3_neppo.evaluate logs/neppo/mpe2.simple_tag_v3_1 [--br-timesteps 100000] [--eval-episodes 64]
        [--sampled] [--agents agent_0 ...] [--starts scratch warm] [--best-response] [--seed 0]

Markov games: per agent, best responses trained against the frozen others (:mod:`sb3_neppo.evaluation`). Normal-form
games: the exact regret of the learned strategies (``--best-response`` forces the sampled path with PPO best responses,
for runs trained with the sb3 solver). Writes ``regret.json`` into the run folder and fills ``regret``,
``max_regret`` (with ``regret_ci``, ``max_regret_ci``, ``regret_method`` and the best-response budget) in its
``summary.json``; both atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sb3_neppo.baselines import BASELINES, MultiAgentAlgorithm, load_baseline, saved_algo
from sb3_neppo.errors import ConfigError, run_command
from sb3_neppo.evaluation import AgentRegret, RegretConfig, RegretEvaluator, RegretReport
from sb3_neppo.io import write_json_atomic
from sb3_neppo.neppo import NePPO
from sb3_neppo.solvers.sb3 import PPOCooperativeSolver
from sb3_neppo.train import OneLineParser

POLICY_FILES = ("model.zip", "checkpoint.zip")


def load_model(path: Path) -> NePPO | MultiAgentAlgorithm:
    """A saved NePPO model or baseline (the archive's ``data.json`` says which)."""
    return load_baseline(path) if saved_algo(path) in BASELINES else NePPO.load(path)


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
        evaluator = RegretEvaluator(model._env_fn(), model.view, model.regret_solver_config(), config)
        return evaluator.evaluate(model.joint_policy(), agents)
    if not isinstance(model.solvers.cooperative, PPOCooperativeSolver):
        raise ConfigError("best-response evaluation needs a run trained with the sb3 solver (-params solver:sb3)")
    coop = model.solvers.cooperative
    evaluator = RegretEvaluator(model._env_fn(), coop.view, coop.config, config)
    return evaluator.evaluate(model.result.policy, agents)


def find_policy(folder: Path) -> Path:
    """The run's final model, else its last checkpoint; one line if it has neither."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such run folder")
    for name in POLICY_FILES:
        if (folder / name).exists():
            return folder / name
    raise ConfigError(f"{folder} holds no policy ({' or '.join(POLICY_FILES)}); give the folder of a trained run")


def update_summary(folder: Path, report: RegretReport) -> None:
    """Fill the regret fields of the run's ``summary.json`` (other fields untouched)."""
    path = folder / "summary.json"
    if not path.exists():
        return
    summary = json.loads(path.read_text())
    summary.update(
        regret=report.regret,
        max_regret=report.max_regret,
        regret_ci={r.agent: list(r.ci) for r in report.agents},
        max_regret_ci=list(report.max_ci),
        regret_method=report.method,
        regret_budget=None if report.method == "exact" else {r.agent: r.br_env_steps for r in report.agents},
    )
    write_json_atomic(path, summary)


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
    folder = args.folder
    model = load_model(find_policy(folder))
    report = evaluate_model(model, config, args.agents, args.best_response)
    write_json_atomic(folder / "regret.json", report.to_dict())
    update_summary(folder, report)
    for r in report.agents:
        budget = "" if report.method == "exact" else f"  BR {r.br_env_steps} env steps, kept {r.start}"
        print(f"{r.agent:>20}: regret {r.regret:+.4g}  95% CI [{r.ci[0]:.4g}, {r.ci[1]:.4g}]{budget}")
    print(f"max regret {report.max_regret:+.4g}  CI [{report.max_ci[0]:.4g}, {report.max_ci[1]:.4g}] ({report.method})")
    print(f"wrote {folder / 'regret.json'}")
    return report


def main(argv: list[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
