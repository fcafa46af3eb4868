"""Learning per env step on the VMAS path: does a faster (worlds, minibatch) setting reach the same return?

    python -m sb3_neppo.benchmarks.vmas_learning [--scenario simple_tag] [--settings 16:400 256:800 1024:25600]
        [--budget 200000] [--seeds 2] [--eval-every 20000] [--plot learning.png] [--save curves.json]

    # BenchMARL's VMAS PPO: 60,000 frames per batch (2,400 worlds x 25 steps), minibatch 4,096, 45 epochs, lr 5e-5
    python -m sb3_neppo.benchmarks.vmas_learning --settings 64:400 2400:4096:45:5e-5 --budget 2000000

The cooperative solver's job at the start of a NePPO run: SB3 PPO (the mpe2 entry of ``hyperparams/neppo.yml``:
25 steps per update and env, 10 epochs, Adam 7e-4, ...) trains the shared policy on the VMAS scenario's potential at
w = 0 (the state mixer's uniform mix: Φ = the agents' mean reward) for ``--budget`` env steps. Only the number of
worlds and the minibatch differ between settings (``worlds:minibatch``), and, where a setting names them, PPO's epochs
and learning rate (``worlds:minibatch:epochs:lr``); the first setting is the reference, by
default the PettingZoo path's 16 env copies and minibatch 400. Every ``--eval-every`` env steps the policy's
undiscounted Φ return is measured on 128 sampled episodes on fixed seeds (no training env steps).

Per setting: the median over seeds of the return at half and at the full budget; the env steps at which its median
curve first reaches the return the reference's median curve has at half the budget, and that as a multiple of the
reference's; the training wall time to that return (the median curve of training seconds against env steps, read at
those env steps) and its multiple of the reference's; and the whole run's training wall time (evaluations excluded; one
torch thread, runs one after another). ``--save`` is written after every curve and read back by the same command, so a
killed call resumes with the next curve. Throughput
against the PettingZoo path: ``vmas_throughput --settings`` with the same settings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO

from sb3_neppo.atomic import write_json_atomic
from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.envs.backend import backend_for
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.registry import make_env
from sb3_neppo.envs.view import AgentView
from sb3_neppo.envs.vmas import VmasVecEnv
from sb3_neppo.models import settings_for
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.potentials import StateMixerPotential
from sb3_neppo.solvers.sb3 import RolloutEvaluator

EVAL_EPISODES, HELD_OUT_EPISODE_SEED = 128, 777


def parse_setting(text: str) -> dict:
    """``worlds:minibatch[:epochs[:lr]]`` as the worlds and PPO's overrides."""
    parts = text.split(":")
    try:
        if not 2 <= len(parts) <= 4:
            raise ValueError
        setting = {"worlds": int(parts[0]), "batch_size": int(parts[1])}
        if len(parts) > 2:
            setting["n_epochs"] = int(parts[2])
        if len(parts) > 3:
            setting["learning_rate"] = float(parts[3])
    except ValueError:
        raise SystemExit(
            f"--settings {text!r}: give worlds:minibatch[:epochs[:lr]], e.g. 64:400 or 2400:4096:45:5e-5"
        ) from None
    return setting


def curve(scenario: str, setting: dict, budget: int, eval_every: int, seed: int) -> dict:
    """Φ return against env steps for one setting and seed, with the training time (evaluations excluded)."""
    env = make_env(f"vmas:{scenario}", {"max_steps": 25})
    potential = StateMixerPotential(len(env.possible_agents), StepEncoder(env).state_dim)
    view = AgentView(env)
    overrides = dict(setting)
    venv = VmasVecEnv(env, overrides.pop("worlds"), view, potential)
    ppo = dict(settings_for(f"mpe2.{scenario}_v3")["solver_kwargs"]["ppo"], **overrides)
    model = PPO("MlpPolicy", venv, seed=seed, **ppo)
    config = SB3SolverConfig(eval_episodes=EVAL_EPISODES, gamma=1.0)
    evaluator = RolloutEvaluator(lambda: env, config, view=view, backend=backend_for(env, lambda: env))  # batched worlds

    def score() -> float:
        rollouts = evaluator.rollouts(PolicyProfile.shared(view, frozen_copy(model.policy)), HELD_OUT_EPISODE_SEED)
        return float(rollouts.potential_returns(potential).mean())

    steps, returns, times, train_s, due = [0], [score()], [0.0], 0.0, eval_every
    while venv.env_steps < budget:
        start = time.perf_counter()
        model.learn(model.n_steps * venv.num_envs, reset_num_timesteps=False)
        train_s += time.perf_counter() - start
        if venv.env_steps >= due or venv.env_steps >= budget:
            steps.append(venv.env_steps)
            returns.append(score())
            times.append(train_s)
            due += eval_every
    return {"steps": np.array(steps), "returns": np.array(returns), "times": np.array(times), "train_s": train_s}


def _at(run: dict, step: float, key: str = "returns") -> float:
    """The return (or the training seconds, ``key="times"``) at ``step`` env steps, interpolated on the evaluation points."""
    return float(np.interp(step, run["steps"], run[key]))


def _record(setting: str, parsed: dict, seed: int, run: dict) -> dict:
    return (
        {"worlds": parsed["worlds"], "minibatch": parsed["batch_size"], "setting": setting, "seed": seed}
        | {key: run[key].tolist() for key in ("steps", "returns", "times")}
        | {"train_s": run["train_s"]}
    )


def _saved(path: str | None, scenario: str, budget: int, eval_every: int) -> list[dict]:
    """The curves an earlier call saved to ``path`` with the same scenario, budget and evaluation points (a resumed call
    skips them); none where the file is absent, and one clear line where it holds other settings or is torn."""
    if not path or not Path(path).exists():
        return []
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise SystemExit(f"--save {path}: not valid JSON ({error}); move it away or give another --save") from None
    same = (data.get("scenario"), data.get("budget"), data.get("eval_every")) == (scenario, budget, eval_every)
    if not same:
        raise SystemExit(
            f"--save {path} holds curves of {data.get('scenario')} at budget {data.get('budget')} (eval every "
            f"{data.get('eval_every')}), not {scenario} at {budget} ({eval_every}): give another --save"
        )
    return [c for c in data["curves"] if "times" in c]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.vmas_learning", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", default="simple_tag")
    parser.add_argument(
        "--settings", nargs="+", default=["16:400", "256:800", "1024:25600"], help="worlds:minibatch[:epochs[:lr]]"
    )
    parser.add_argument("--budget", type=int, default=200_000, help="training env steps per run")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--eval-every", type=int, default=20_000)
    parser.add_argument("--plot", default=None, help="PNG of the return curves, every setting and seed")
    parser.add_argument("--save", default=None, help="JSON of every curve (env steps, returns, training seconds)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    parsed = {s: parse_setting(s) for s in args.settings}
    settings = list(parsed)
    saved = _saved(args.save, args.scenario, args.budget, args.eval_every)
    done = {(c["setting"], c["seed"]): c for c in saved}
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    for seed in range(args.seeds):
        for setting in settings:
            if (setting, seed) in done:
                run = {k: np.array(v) if isinstance(v, list) else v for k, v in done[(setting, seed)].items()}
            else:
                run = curve(args.scenario, parsed[setting], args.budget, args.eval_every, seed)
                saved.append(_record(setting, parsed[setting], seed, run))
                if args.save:  # after every curve, so a killed call resumes with the next
                    data = {"scenario": args.scenario, "budget": args.budget, "eval_every": args.eval_every, "curves": saved}
                    write_json_atomic(args.save, data)
            runs[setting].append(run)
            print(f"{setting} seed {seed}: {run['returns'][0]:.3g} -> {run['returns'][-1]:.3g}", flush=True)
    grid = np.linspace(0, args.budget, 201)
    median = {s: np.median([[_at(r, x) for x in grid] for r in rs], axis=0) for s, rs in runs.items()}
    target = float(median[settings[0]][len(grid) // 2])

    def steps_to_target(curve: np.ndarray) -> float | None:
        reached = np.flatnonzero(curve >= target)
        return float(grid[reached[0]]) if reached.size else None

    reference = steps_to_target(median[settings[0]])
    seconds = {s: np.median([[_at(r, x, "times") for x in grid] for r in rs], axis=0) for s, rs in runs.items()}
    reference_s = float(np.interp(reference, grid, seconds[settings[0]])) if reference is not None else None
    print(f"\n{args.scenario}: Φ return at w = 0 (mean reward), medians over {args.seeds} seeds; target = {target:.3g}, the")
    print("reference's return at half the budget; PPO as hyperparams/neppo.yml (mpe2) except what a setting names")
    columns = ["worlds:minibatch[:epochs:lr]", "return at half budget", "at budget", "env steps to target", "× reference"]
    columns += ["train s to target", "× reference", "train s"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for setting in settings:
        med = median[setting]
        steps = steps_to_target(med)
        cells = [
            setting,
            f"{med[len(grid) // 2]:.3g}",
            f"{med[-1]:.3g}",
            f"{steps:,.0f}" if steps is not None else f"> {args.budget:,}",
            f"{steps / reference:.2f}" if steps is not None and reference else "-",
        ]
        to_target = float(np.interp(steps, grid, seconds[setting])) if steps is not None else None
        cells += [
            f"{to_target:.0f}" if to_target is not None else f"> {seconds[setting][-1]:.0f}",
            f"{to_target / reference_s:.2f}" if to_target is not None and reference_s else "-",
            f"{statistics.median(r['train_s'] for r in runs[setting]):.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for setting, color in zip(settings, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
            for k, r in enumerate(runs[setting]):
                label = f"{setting} (worlds:minibatch[:epochs:lr])" if k == 0 else None
                ax.plot(r["steps"], r["returns"], color=color, alpha=0.8, label=label)
        ax.set(title=f"vmas:{args.scenario}, cooperative PPO at w = 0", xlabel="env steps", ylabel="Φ return (128 episodes)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
