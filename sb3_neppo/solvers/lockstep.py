"""Several SB3 on-policy learners acting in one multi-agent VecEnv at once, each in its own slots.

A multi-agent VecEnv (:class:`~sb3_neppo.envs.vec.MultiAgentVecEnv`: env copies or batched VMAS worlds) has one
slot per (copy, agent). Independent learners must step it together, so ``learn`` (which owns its env) cannot run
them; :class:`LockstepPPO` does SB3's ``collect_rollouts`` for every learner in the same env step (each learner's
policy acts in its slots, its rollout buffer gets its slots' transitions, time-limit endings bootstrapped as SB3 does)
and then calls each learner's own ``train()``. One learner on every slot is plain parameter-shared PPO. The learners
are PPO by default, or any feed-forward on-policy algorithm (A2C, TRPO: they share PPO's rollout buffer; MaskablePPO,
which acts within the env's action masks and stores them in its buffer).

Used by the IPPO and MAPPO baselines (:mod:`sb3_neppo.baselines.lockstep`) and by the cooperative solver when each role
or agent has a network of its own (``solver_kwargs.share``, :func:`sb3_neppo.roles.share_groups`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices

from sb3_neppo.envs.view import stack, take
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import is_maskable


def load_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, and check what it does not: that every per-parameter tensor (Adam's
    moments) has its parameter's shape, so an altered file fails here and not in the next update."""
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != param.shape:
                    shapes = f"{tuple(value.shape)} for a parameter of {tuple(param.shape)}"
                    raise ValueError(f"optimiser state {key} of shape {shapes}")


class SlotsEnv(VecEnv):
    """What a learner's PPO is built on: the spaces and number of its slots. :class:`LockstepPPO` steps the real env."""

    def __init__(self, num_envs: int, observation_space: spaces.Space, action_space: spaces.Space):
        super().__init__(num_envs, observation_space, action_space)

    def reset(self):
        raise RuntimeError("a lockstep learner's env is stepped by LockstepPPO, not by PPO.learn")

    step_async = step_wait = reset

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [None for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        pass

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return [None for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class LockstepPPO:
    """Learners on disjoint slot groups of one VecEnv, collecting in lockstep and each training on its own slots.

    :param venv: the multi-agent VecEnv (it is seeded with ``seed`` and reset here).
    :param groups: the slot indices of each learner (disjoint, covering every slot).
    :param ppo_kwargs: keyword arguments of the algorithm (``n_steps`` per slot, as in SB3).
    :param seed: seeds the env and the learners (learner g: ``seed + g``; as SB3 does, that seeds torch and numpy).
    :param policy: the policy (class or SB3 name) of every learner.
    :param algo: the learners' algorithm: PPO, or another feed-forward on-policy algorithm (A2C, TRPO).
    """

    def __init__(
        self,
        venv: VecEnv,
        groups: Sequence[Sequence[int]],
        ppo_kwargs: dict[str, Any],
        seed: int,
        policy: Any = "MlpPolicy",
        algo: type[OnPolicyAlgorithm] = PPO,
    ):
        slots = np.concatenate([np.asarray(g, dtype=int) for g in groups])
        if sorted(slots.tolist()) != list(range(venv.num_envs)):
            raise ValueError("the groups must split the VecEnv's slots")
        self.venv = venv
        self.groups = [np.asarray(g, dtype=int) for g in groups]
        self.models: list[OnPolicyAlgorithm] = []
        for g, group in enumerate(self.groups):
            try:
                model = algo(
                    policy, SlotsEnv(len(group), venv.observation_space, venv.action_space), seed=seed + g, **ppo_kwargs
                )
            except TypeError as exc:
                raise ConfigError(f"bad {algo.__name__} argument in ppo: {exc}") from None
            model.set_logger(configure(None, [""]))
            model._last_episode_starts = np.ones(len(group), dtype=bool)
            self.models.append(model)
        self.n_steps = self.models[0].n_steps
        self.masked = bool(getattr(venv, "masked", False))  # the env gives action masks (MaskablePPO learners use them)
        venv.seed(seed)
        self._obs = venv.reset()

    def collect(self) -> list[dict]:
        """``n_steps`` steps of every slot into the learners' rollout buffers; returns the episode records that ended."""
        episodes: list[tuple[int, dict]] = []
        for model in self.models:
            model.policy.set_training_mode(False)
            model.rollout_buffer.reset()
        actions = None
        for _ in range(self.n_steps):
            steps = []
            masks = self.venv.action_masks() if self.masked else None
            for model, group in zip(self.models, self.groups):
                masked = {"action_masks": masks[group]} if masks is not None and is_maskable(model.policy) else {}
                with torch.no_grad():
                    action, value, log_prob = model.policy(obs_as_tensor(take(self._obs, group), model.device), **masked)
                action = action.cpu().numpy()
                env_action = action
                if isinstance(model.action_space, spaces.Box):
                    env_action = np.clip(action, model.action_space.low, model.action_space.high)
                if actions is None:
                    actions = np.zeros((self.venv.num_envs, *env_action.shape[1:]), dtype=env_action.dtype)
                actions[group] = env_action
                steps.append((action, value, log_prob, masked))
            new_obs, rewards, dones, infos = self.venv.step(actions)
            for model, group, (action, value, log_prob, masked) in zip(self.models, self.groups, steps):
                reward = rewards[group].astype(np.float32)
                for j, k in enumerate(group):
                    info = infos[k]
                    if "episode" in info:
                        episodes.append((int(k), info["episode"]))
                    if dones[k] and info.get("TimeLimit.truncated", False) and info.get("terminal_observation") is not None:
                        terminal = obs_as_tensor(stack([info["terminal_observation"]]), model.device)
                        with torch.no_grad():  # as SB3's collect_rollouts: float32 arithmetic, bit for bit
                            reward[j] += model.gamma * model.policy.predict_values(terminal)[0].cpu().numpy()[0]
                if isinstance(model.action_space, spaces.Discrete):
                    action = action.reshape(-1, 1)
                model.rollout_buffer.add(
                    take(self._obs, group), action, reward, model._last_episode_starts, value, log_prob, **masked
                )
                model._last_episode_starts = dones[group]
            self._obs = new_obs
        for model, group in zip(self.models, self.groups):
            with torch.no_grad():
                values = model.policy.predict_values(obs_as_tensor(take(self._obs, group), model.device))
            model.rollout_buffer.compute_returns_and_advantage(last_values=values, dones=model._last_episode_starts)
            model.num_timesteps += self.n_steps * len(group)
        return [record | {"slot": k} for k, record in episodes]

    def train(self, progress_remaining: float) -> None:
        """One optimisation of every learner on its buffer; ``progress_remaining`` (1 -> 0) drives SB3 schedules."""
        for model in self.models:
            model._current_progress_remaining = progress_remaining
            model.train()

    def restart(self, seed: int) -> None:
        """Start new episodes in every slot: seed the VecEnv with ``seed`` and reset it. Between a :meth:`collect` and
        the next that is a time-limit cut: the last collection already bootstrapped from the current observations'
        values, and the next one starts its buffers at episode starts."""
        self.venv.seed(seed)
        self._obs = self.venv.reset()
        for model, group in zip(self.models, self.groups):
            model._last_episode_starts = np.ones(len(group), dtype=bool)

    def get_state(self) -> list[dict[str, Any]]:
        """Each learner's state besides its policy weights and the global random state: its optimiser and counters
        (its rollout buffer is refilled from scratch by every :meth:`collect`)."""
        return [
            {"optimizer": m.policy.optimizer.state_dict(), "num_timesteps": m.num_timesteps, "n_updates": m._n_updates}
            for m in self.models
        ]

    def set_state(self, state: list[dict[str, Any]]) -> None:
        """Restore :meth:`get_state`'s output."""
        if not isinstance(state, list) or len(state) != len(self.models):
            raise ValueError(f"the training state has no entry for each of the {len(self.models)} PPO learners")
        for model, saved in zip(self.models, state):
            load_optimizer(model.policy.optimizer, saved["optimizer"])
            model.num_timesteps, model._n_updates = int(saved["num_timesteps"]), int(saved["n_updates"])
