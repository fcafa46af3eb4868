"""The settings a run gets where it says nothing: one source for the command line and the Python API.

Layers, each overriding the ones before it (mappings merge key by key at every layer):

1. the settings dataclasses' defaults (:class:`~sb3_neppo.config.NePPOConfig`, the SB3 solvers'
   :class:`~sb3_neppo.config.SB3SolverConfig` when the solvers are sampled, the baselines' configs): the paper's
   Markov-game settings (Simple World Comm: state mixer, K1 = K2 = 1, δ = 5e-4, β = 1, PPO 10 epochs, ...) with 16
   env copies, for a laptop;
2. the hyperparameter file (``hyperparams/<algo>.yml``, or ``-yaml``): its ``default`` entry (every env), its
   ``normal-form`` entry for a normal-form game (NePPO: the paper's Table 1 settings, quadratic potential, exact
   solvers, 500 iterations, ...), then the env id's own entry;
3. what the user gives: ``-params`` on the command line, keyword arguments in Python;
4. for a Markov game, what depends on the env and neither 2 nor 3 set: PPO's ``n_steps`` is the episode length L
   (clipped to [8, 128]), its minibatch ``n_envs × n_steps``, and ``eval_episodes`` is ``max(2, min(16, 400 // L))``
   so that an evaluation costs about what a rollout does. On mpe2's 25-step games these are the paper's 25 steps,
   400 and 16. With ``br_n_envs`` below ``n_envs``, the best responses' minibatch is capped at their rollout.

The episode length is the env's ``max_cycles`` (PettingZoo), ``max_steps`` (VMAS) or ``max_episode_steps`` where it has
one, else the length of one episode of uniformly random actions (seed 0, at most 1,000 steps; those steps are not
counted in any budget).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pettingzoo import ParallelEnv

from sb3_neppo.config import NePPOConfig, SB3SolverConfig
from sb3_neppo.envs.matrix import MatrixGameEnv
from sb3_neppo.hyperparams_files import HYPERPARAMS_DIR, merge_hyperparams, read_hyperparams_file

NORMAL_FORM = "normal-form"  # the hyperparameter file entry every normal-form game gets
PROBE_STEPS = 1_000
LENGTH_ATTRIBUTES = ("max_cycles", "max_steps", "max_episode_steps")


def is_normal_form(env: ParallelEnv) -> bool:
    return isinstance(env.unwrapped, MatrixGameEnv)


def episode_length(env: ParallelEnv, probe: bool = True) -> int | None:
    """The env's episode length (see the module doc); a copy of the env is probed, never the env itself.
    Without ``probe`` (or when the env cannot be copied), None where the env names no length."""
    for holder in (env, env.unwrapped):
        for name in LENGTH_ATTRIBUTES:
            value = getattr(holder, name, None)
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1:
                return int(value)
    if not probe:
        return None
    try:
        copied = copy.deepcopy(env)
    except Exception:  # an env holding something that cannot be copied (a handle, a lock): probe nothing
        return None
    copied.reset(seed=0)
    rng = np.random.default_rng(0)
    for step in range(1, PROBE_STEPS + 1):
        actions = {}
        for agent in copied.agents:
            space = copied.action_space(agent)
            space.seed(int(rng.integers(2**31)))
            actions[agent] = space.sample()
        copied.step(actions)
        if not copied.agents:
            return step
    return PROBE_STEPS


def file_layers(algo: str, env: ParallelEnv, env_id: str | None, path: str | Path | None = None) -> dict[str, Any]:
    """Layer 2: the hyperparameter file's entries that apply to ``env`` (default, normal-form, the env id's), merged."""
    data = read_hyperparams_file(Path(path) if path else HYPERPARAMS_DIR / f"{algo}.yml")
    out: dict[str, Any] = {}
    keys = ["default"] + ([NORMAL_FORM] if is_normal_form(env) else []) + ([env_id] if env_id is not None else [])
    for key in keys:
        out = merge_hyperparams(out, data.get(key, {}))
    return out


def sized_ppo(ppo: Mapping[str, Any], explicit: Mapping[str, Any], n_envs: int, length: int) -> dict[str, Any]:
    """Layer 4 for a PPO mapping: ``n_steps`` and ``batch_size`` from the episode length where not ``explicit``."""
    out = dict(ppo)
    if "n_steps" not in explicit:
        out["n_steps"] = int(min(max(length, 8), 128))
    if "batch_size" not in explicit:
        out["batch_size"] = int(n_envs * out.get("n_steps", 2048))
    return out


def capped_br_batch(solver_kwargs: Mapping[str, Any], explicit_br: Mapping[str, Any]) -> dict[str, Any]:
    """The best responses' PPO overrides, with the minibatch capped at their rollout (``br_n_envs × n_steps``) where
    ``br_n_envs`` makes it smaller than the cooperative minibatch and ``br_ppo`` does not set one."""
    br_ppo, br_envs = dict(solver_kwargs.get("br_ppo") or {}), solver_kwargs.get("br_n_envs")
    if br_envs is None or "batch_size" in explicit_br or not isinstance(br_envs, int):
        return br_ppo
    ppo = {**solver_kwargs.get("ppo", {}), **br_ppo}
    rollout = br_envs * ppo.get("n_steps", 2048)
    if isinstance(rollout, int) and isinstance(ppo.get("batch_size"), int) and ppo["batch_size"] > rollout:
        br_ppo["batch_size"] = rollout
    return br_ppo


def eval_episodes_for(length: int) -> int:
    return int(max(2, min(16, 400 // length)))


def neppo_settings(
    env: ParallelEnv, env_id: str | None, given: Mapping[str, Any], path: str | Path | None = None
) -> dict[str, Any]:
    """The complete NePPO settings (:class:`NePPOConfig`'s keys) for ``env``: the four layers of the module doc.

    :param given: what the user set (``-params`` or NePPO's keyword arguments); a potential instance or a solver
        bundle is given by its name."""
    given, files = dict(given), file_layers("neppo", env, env_id, path)
    explicit = merge_hyperparams(files, given)
    if "potential_kwargs" in given:  # a potential's arguments go together: given ones replace the file's
        explicit["potential_kwargs"] = dict(given["potential_kwargs"])
    elif given.get("potential", files.get("potential")) != files.get("potential"):
        explicit["potential_kwargs"] = {}  # the file's kwargs belong to the potential it named
    settings = merge_hyperparams(NePPOConfig().to_dict(), explicit)
    solver = settings["solver"]
    sampled = solver == "sb3" or (solver == "auto" and not is_normal_form(env))
    if sampled:
        own = explicit.get("solver_kwargs", {})
        solver_kwargs = merge_hyperparams(dataclasses.asdict(SB3SolverConfig()), own)
        if not is_normal_form(env):
            length = episode_length(env) or PROBE_STEPS
            solver_kwargs["ppo"] = sized_ppo(solver_kwargs["ppo"], own.get("ppo", {}), solver_kwargs["n_envs"], length)
            if "eval_episodes" not in own:
                solver_kwargs["eval_episodes"] = eval_episodes_for(length)
        solver_kwargs["br_ppo"] = capped_br_batch(solver_kwargs, own.get("br_ppo", {}))
        settings["solver_kwargs"] = solver_kwargs
        if "keep_best" not in given:
            settings["keep_best"] = False  # picking the minimum of noisy estimates would be biased: exact solvers only
    if "n_starts" not in given and (sampled or not settings["keep_best"]):
        settings["n_starts"] = 1  # several starts compare the certificates they keep: exact solvers, keep_best
    return settings


def baseline_settings(
    algo: str, config_class: type, env: ParallelEnv, env_id: str | None, given: Mapping[str, Any], path=None
) -> dict[str, Any]:
    """The complete settings of a baseline (``config_class``'s keys, and ``n_timesteps`` where the file gives it)."""
    explicit = merge_hyperparams(file_layers(algo, env, env_id, path), dict(given))
    settings = merge_hyperparams(config_class().to_dict(), explicit)
    if not is_normal_form(env):
        length = episode_length(env) or PROBE_STEPS
        settings["ppo"] = sized_ppo(settings["ppo"], explicit.get("ppo", {}), settings["n_envs"], length)
    return settings
