"""Training throughput of the cooperative solver (SB3 PPO on the potential-reward VecEnv): VMAS batch vs PettingZoo.

    python -m sb3_neppo.benchmarks.vmas_throughput [--scenarios simple_tag simple_world_comm] [--repeats 3]
        [--settings 128:800 1024:25600] [--vmas-threads 2] [--devices cpu cuda]

Both paths train the same PPO (the mpe2 entry of ``hyperparams/neppo.yml``: 25 steps per update and env, 10 epochs,
Adam 7e-4, one hidden layer of 64, ...) on the same state-mixer potential, except the number of parallel envs (16 mpe2
copies vs the VMAS worlds of each ``--settings`` entry ``worlds:minibatch``) and the minibatch size (400 vs the
entry's), which the output states; ``--devices cpu cuda`` runs each VMAS setting with the worlds and the networks on
each device (the mpe2 path is on the CPU). Env steps/s count env steps (one step of one world), medians of
``--repeats`` runs with the paths interleaved; each run's time is split into env stepping (the VecEnv's ``step_wait``,
potential included), PPO updates, and the rest (policy forward passes and SB3's rollout bookkeeping).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnvWrapper

from sb3_neppo.devices import resolve_device
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.registry import make_env
from sb3_neppo.envs.vec import ParallelVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.envs.vmas import VmasVecEnv
from sb3_neppo.errors import ConfigError
from sb3_neppo.models import settings_for
from sb3_neppo.potentials import StateMixerPotential

MPE2_COPIES, MPE2_BATCH = 16, 400


class StepTimer(VecEnvWrapper):
    """Wall time inside the VecEnv's ``step_wait`` (env stepping, with the potential reward)."""

    def __init__(self, venv):
        super().__init__(venv)
        self.step_s = 0.0

    def reset(self):
        return self.venv.reset()

    def step_wait(self):
        start = time.perf_counter()
        out = self.venv.step_wait()
        self.step_s += time.perf_counter() - start
        return out


class RolloutTimer(BaseCallback):
    """Wall time spent collecting rollouts (the rest of ``learn`` is PPO updates)."""

    def __init__(self):
        super().__init__()
        self.rollout_s = 0.0
        self._start = 0.0

    def _on_rollout_start(self) -> None:
        self._start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.rollout_s += time.perf_counter() - self._start

    def _on_step(self) -> bool:
        return True


def measure(
    path: str, scenario: str, updates: int, worlds: int, batch_size: int, seed: int, threads: int = 1, device: str = "cpu"
) -> dict:
    """Env steps/s of ``updates`` PPO updates on one path, with the time split (``threads``: torch threads, VMAS path;
    ``device``: where the VMAS worlds and the networks are)."""
    torch.set_num_threads(threads if path == "vmas" else 1)
    if path == "vmas":
        env = make_env(f"vmas:{scenario}", {"max_steps": 25})
        batch = batch_size
    else:
        env_id = f"mpe2.{scenario}_v3"
        env = make_env(env_id, {"max_cycles": 25})
        batch = MPE2_BATCH
    potential = StateMixerPotential(len(env.possible_agents), StepEncoder(env).state_dim)
    view = AgentView(env)
    if path == "vmas":
        venv = VmasVecEnv(env, worlds, view, potential, device)
    else:
        venv = ParallelVecEnv(lambda: make_env(env_id, {"max_cycles": 25}), MPE2_COPIES, view, potential)
    ppo = dict(settings_for("mpe2.simple_tag_v3")["solver_kwargs"]["ppo"], batch_size=batch)
    timed = StepTimer(venv)
    model = PPO("MlpPolicy", timed, seed=seed, device=device if path == "vmas" else "cpu", **ppo)
    timer = RolloutTimer()
    start = time.perf_counter()
    model.learn(total_timesteps=updates * model.n_steps * venv.num_envs, callback=timer)
    elapsed = time.perf_counter() - start
    return {
        "steps_per_s": venv.env_steps / elapsed,
        "env_share": timed.step_s / elapsed,
        "update_share": 1.0 - timer.rollout_s / elapsed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.vmas_throughput", description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=["simple_tag", "simple_world_comm"])
    parser.add_argument("--settings", nargs="+", default=["1024:25600"], help="VMAS worlds:minibatch, one or more")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mpe2-updates", type=int, default=4, help="PPO updates per run on the mpe2 path")
    parser.add_argument("--env-steps", type=int, default=51_200, help="env steps per run on the VMAS path (whole updates)")
    parser.add_argument(
        "--vmas-threads", type=int, default=1, help="torch threads on the VMAS path (the mpe2 path runs on 1, its fastest)"
    )
    parser.add_argument("--devices", nargs="+", default=["cpu"], help="devices of the VMAS path (cpu, cuda), one or more")
    args = parser.parse_args(argv)
    try:
        devices = [resolve_device(d, "--devices") for d in args.devices]
    except ConfigError as exc:
        parser.error(str(exc))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    settings = [(*(int(x) for x in s.split(":")), d) for d in devices for s in args.settings]
    rows = []
    for scenario in args.scenarios:
        runs: dict[str | tuple[int, int, str], list[dict]] = {"mpe2": [], **{s: [] for s in settings}}
        for repeat in range(args.repeats):
            for path in runs:  # interleaved: a noisy machine hurts every path alike
                if path == "mpe2":
                    out = measure("mpe2", scenario, args.mpe2_updates, MPE2_COPIES, MPE2_BATCH, repeat)
                else:
                    worlds, batch, device = path
                    updates = max(1, round(args.env_steps / (25 * worlds)))
                    out = measure("vmas", scenario, updates, worlds, batch, repeat, args.vmas_threads, device)
                runs[path].append(out)
                print(f"{scenario} repeat {repeat} {path}: {out['steps_per_s']:.0f} env-steps/s", flush=True)
        med = {p: {k: statistics.median(r[k] for r in runs[p]) for k in runs[p][0]} for p in runs}
        rows.append((scenario, med))
    print(f"\nmedians of {args.repeats} repeats; PPO as hyperparams/neppo.yml (mpe2) except the parallel envs and minibatch;")
    print(
        f"mpe2: {MPE2_COPIES} env copies, minibatch {MPE2_BATCH}, 1 torch thread, {args.mpe2_updates} PPO updates per run; "
        f"VMAS: {args.vmas_threads} torch thread(s), about {args.env_steps:,} env steps per run"
    )
    columns = ["scenario", "path", "env-steps/s", "env stepping", "PPO update", "× mpe2"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for scenario, med in rows:
        for path, m in med.items():
            name = (
                f"mpe2, {MPE2_COPIES} copies, minibatch {MPE2_BATCH}"
                if path == "mpe2"
                else f"VMAS on {path[2]}, {path[0]:,} worlds, minibatch {path[1]:,}"
            )
            cells = [scenario, name, f"{m['steps_per_s']:,.0f}", f"{m['env_share']:.0%}", f"{m['update_share']:.0%}"]
            print("| " + " | ".join([*cells, f"{m['steps_per_s'] / med['mpe2']['steps_per_s']:.1f}"]) + " |")


if __name__ == "__main__":
    main()
