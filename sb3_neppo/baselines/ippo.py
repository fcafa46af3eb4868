"""IPPO: independent PPO learners, each agent paid its own reward.

Each learner is an SB3 PPO on its agents' slots of one multi-agent VecEnv (:class:`~sb3_neppo.baselines.lockstep.
LockstepPPO`); ``share`` picks what a learner covers: one agent (``agent``, the default: fully independent), every
agent of a role (``role``: parameter sharing within ``adversary_0, adversary_1, ...``), or all agents (``all``: one
shared network, told apart by the agent indicator in its observation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_neppo.baselines.lockstep import LockstepBaseline
from sb3_neppo.config import SHARE, BaselineConfig
from sb3_neppo.devices import resolve_device
from sb3_neppo.envs.backend import make_vec_env
from sb3_neppo.envs.masks import check_masks_given
from sb3_neppo.errors import ConfigError
from sb3_neppo.roles import share_groups
from sb3_neppo.solvers.lockstep import LockstepPPO


@dataclass
class IPPOConfig(BaselineConfig):
    """IPPO settings (``hyperparams/ippo.yml``); see :class:`~sb3_neppo.config.BaselineConfig`.

    :param share: parameter sharing: ``agent`` (none), ``role`` (within a role) or ``all``.
    """

    share: str = "agent"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.share not in SHARE:
            raise ConfigError(f"share must be one of {', '.join(SHARE)}, got {self.share!r}")


class IPPO(LockstepBaseline):
    """Independent PPO (see the module docstring)."""

    algo = "ippo"
    config_class = IPPOConfig

    def _setup(self) -> None:
        device = resolve_device(self.config.device)
        venv = make_vec_env(self.env_fn, self.config.n_envs, self.view, env=self.env, device=device)
        check_masks_given(self.config.algorithm(), venv.masked, "algo")
        n, members = len(self.agents), share_groups(self.agents, self.config.share)
        self.learner_agents = [[self.agents[i] for i in idx] for idx in members]
        groups = [[c * n + i for c in range(self.config.n_envs) for i in idx] for idx in members]
        kwargs = {"device": device, **self.config.algo_kwargs()}
        self.learners = LockstepPPO(venv, groups, kwargs, self.seed, self.config.policy_name(), self.config.algorithm())

    def actors(self) -> dict[str, ActorCriticPolicy]:
        return {a: m.policy for m, agents in zip(self.learners.models, self.learner_agents) for a in agents}

    def get_weights(self) -> dict[str, Any]:
        return {"learners": [m.policy.state_dict() for m in self.learners.models]}

    def set_weights(self, weights: dict[str, Any]) -> None:
        for model, state in zip(self.learners.models, weights["learners"]):
            model.policy.load_state_dict(state)
