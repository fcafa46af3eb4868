"""MAPPO: one shared PPO actor, every agent paid the sum of all agents' rewards, a centralised critic on the state.

The paper's MAPPO baseline: the shared reward is the team's total, the actor sees its agent's own observation (with
the agent indicator) and the critic sees that plus the global state, the concatenation of every agent's observation
(MAPPO's usual state for MPE). Built from SB3 parts: :class:`CentralisedVecEnv` appends the state to each slot's
observation and pays the sum, :class:`CentralCriticPolicy` is an ``ActorCriticPolicy`` whose actor reads only the
agent's part, and PPO trains it (:class:`~sb3_neppo.baselines.lockstep.LockstepPPO` with one learner). The returned
actor is an ordinary ``MlpPolicy`` on the agent's observation with the trained actor weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import MlpExtractor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from sb3_neppo.baselines.lockstep import LockstepBaseline
from sb3_neppo.config import BaselineConfig
from sb3_neppo.devices import resolve_device
from sb3_neppo.envs.backend import make_vec_env
from sb3_neppo.solvers.lockstep import LockstepPPO


@dataclass
class MAPPOConfig(BaselineConfig):
    """MAPPO settings (``hyperparams/mappo.yml``); see :class:`~sb3_neppo.config.BaselineConfig` (``algo``: PPO, A2C or
    TRPO on the centralised critic; ``policy``: MlpPolicy)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_mlp("MAPPO", ("PPO", "A2C", "TRPO"))


class CentralisedVecEnv(VecEnvWrapper):
    """A multi-agent VecEnv (slot ``c·N + i``) whose slots see ``[own observation | global state]`` and are all paid
    their copy's total reward (infos keep each agent's ``true_reward``).

    :param venv: the multi-agent VecEnv (agent's own rewards in ``infos["true_reward"]``).
    :param n_agents: N.
    :param local_dim: the part of a slot's observation that is the agent's own (without the agent indicator); the
        state is these parts of all N slots, concatenated.
    """

    def __init__(self, venv: VecEnv, n_agents: int, local_dim: int):
        self.n_agents, self.local_dim = n_agents, local_dim
        inner = venv.observation_space
        state_low = np.tile(inner.low[:local_dim], n_agents)
        state_high = np.tile(inner.high[:local_dim], n_agents)
        space = spaces.Box(np.concatenate([inner.low, state_low]), np.concatenate([inner.high, state_high]), dtype=np.float32)
        super().__init__(venv, observation_space=space)

    def _with_state(self, obs: np.ndarray) -> np.ndarray:
        copies = obs.reshape(-1, self.n_agents, obs.shape[-1])
        state = copies[:, :, : self.local_dim].reshape(copies.shape[0], 1, -1)
        state = np.broadcast_to(state, (copies.shape[0], self.n_agents, state.shape[-1]))
        return np.concatenate([copies, state], axis=2).reshape(obs.shape[0], -1).astype(np.float32)

    def reset(self) -> np.ndarray:
        return self._with_state(self.venv.reset())

    def step_wait(self):
        obs, _, dones, infos = self.venv.step_wait()
        n = self.n_agents
        totals = np.array([info["true_reward"] for info in infos], dtype=np.float64).reshape(-1, n).sum(axis=1)
        ended = [k for k, info in enumerate(infos) if "terminal_observation" in info]
        if ended:  # the state at an episode's end: the copy's terminal observations where a slot ended, else current
            last = obs.copy()
            for k in ended:
                last[k] = infos[k]["terminal_observation"]
            terminal = self._with_state(last)
            for k in ended:
                infos[k]["terminal_observation"] = terminal[k]
        return self._with_state(obs), np.repeat(totals, n).astype(np.float32), dones, infos


class CentralCriticExtractor(MlpExtractor):
    """SB3's ``MlpExtractor`` whose actor network reads only the first ``local_dim`` features (the agent's own
    observation) while the critic reads them all (plus the global state)."""

    def __init__(self, feature_dim: int, local_dim: int, net_arch, activation_fn, device="auto"):
        super().__init__(feature_dim, net_arch, activation_fn, device)
        self.local_dim = local_dim
        self.policy_net = MlpExtractor(local_dim, net_arch, activation_fn, device).policy_net

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return self.policy_net(features[..., : self.local_dim])


class CentralCriticPolicy(ActorCriticPolicy):
    """``ActorCriticPolicy`` with a centralised critic: observations are ``[own | state]``, the actor sees ``own``.

    :param local_dim: width of ``own`` (the shared policy view's observation, agent indicator included).
    """

    def __init__(self, *args, local_dim: int, **kwargs):
        self.local_dim = local_dim
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = CentralCriticExtractor(
            self.features_dim, self.local_dim, self.net_arch, self.activation_fn, self.device
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "local_dim": self.local_dim}


class MAPPO(LockstepBaseline):
    """MAPPO (see the module docstring)."""

    algo = "mappo"
    config_class = MAPPOConfig

    def _setup(self) -> None:
        n = len(self.agents)
        device = resolve_device(self.config.device)
        inner = make_vec_env(self.env_fn, self.config.n_envs, self.view, env=self.env, device=device)
        venv = CentralisedVecEnv(inner, n, self.view.obs_dim)
        kwargs = {"device": device, **self.config.algo_kwargs()}
        local_dim = int(self.view.observation_space.shape[0])
        kwargs["policy_kwargs"] = {**kwargs.get("policy_kwargs", {}), "local_dim": local_dim}
        algo = self.config.algorithm()
        self.learners = LockstepPPO(venv, [range(venv.num_envs)], kwargs, self.seed, CentralCriticPolicy, algo)
        self.model = self.learners.models[0]
        kwargs = dict(self.config.ppo.get("policy_kwargs", {}))
        self.actor = ActorCriticPolicy(self.view.observation_space, self.view.action_space, lambda _: 0.0, **kwargs)

    def actors(self) -> dict[str, ActorCriticPolicy]:
        """The shared actor as an ``MlpPolicy`` on the agent's observation (its value head untrained: the trained
        critic needs the state)."""
        trained = self.model.policy
        self.actor.mlp_extractor.policy_net.load_state_dict(trained.mlp_extractor.policy_net.state_dict())
        self.actor.action_net.load_state_dict(trained.action_net.state_dict())
        if hasattr(trained, "log_std"):
            with torch.no_grad():
                self.actor.log_std.copy_(trained.log_std)
        return {a: self.actor for a in self.agents}

    def get_weights(self) -> dict[str, Any]:
        return {"policy": self.model.policy.state_dict()}

    def set_weights(self, weights: dict[str, Any]) -> None:
        self.model.policy.load_state_dict(weights["policy"])
