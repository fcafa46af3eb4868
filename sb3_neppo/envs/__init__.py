"""Environments: normal-form games as PettingZoo parallel envs, the env-id registry, and what turns a parallel env into
what SB3 trains on (the potential-reward wrapper, the shared policy's view, the vector envs, the frozen-others env),
made per env by its backend (:mod:`sb3_neppo.envs.backend`).

Modules, in the order they build on each other: ``observations`` (what a policy reads of an observation) → ``checks``
(the checks of an env's steps) → ``encoding`` (what a potential reads of a step) → ``potential_reward`` (the wrapper)
and ``view`` (the shared policy's view) → ``vec`` (multi-agent VecEnvs) → ``frozen`` (one agent acts, the others are
frozen) → ``rollouts`` (evaluation episodes and their logs) → ``backend`` (which of these an env gets) → ``vmas`` (VMAS
scenarios and their batched backend).
"""

from sb3_neppo.envs.backend import EnvBackend, backend_for
from sb3_neppo.envs.frozen import FrozenOthersEnv, FrozenOthersVecEnv
from sb3_neppo.envs.games import NormalFormGame, alpha_game, matching_pennies, prisoners_dilemma, stag_hunt
from sb3_neppo.envs.matrix import MatrixGameEnv, action_from_strategy, strategy_from_action
from sb3_neppo.envs.potential_reward import PotentialRewardWrapper
from sb3_neppo.envs.registry import ENVS, make_env
from sb3_neppo.envs.vec import MultiAgentVecEnv, ParallelVecEnv
from sb3_neppo.envs.view import AgentView

__all__ = [
    "ENVS",
    "AgentView",
    "EnvBackend",
    "FrozenOthersEnv",
    "FrozenOthersVecEnv",
    "MultiAgentVecEnv",
    "ParallelVecEnv",
    "PotentialRewardWrapper",
    "MatrixGameEnv",
    "NormalFormGame",
    "action_from_strategy",
    "alpha_game",
    "backend_for",
    "make_env",
    "matching_pennies",
    "prisoners_dilemma",
    "stag_hunt",
    "strategy_from_action",
]
