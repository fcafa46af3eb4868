"""Environments: normal-form games as PettingZoo parallel envs, the env-id registry, and the wrappers that turn a parallel
env into what SB3 trains on (potential reward, vector env, frozen-others env)."""

from sb3_neppo.envs.frozen import FrozenOthersEnv, FrozenOthersVecEnv
from sb3_neppo.envs.games import NormalFormGame, alpha_game, matching_pennies, prisoners_dilemma, stag_hunt
from sb3_neppo.envs.matrix import MatrixGameEnv, action_from_strategy, strategy_from_action
from sb3_neppo.envs.registry import ENVS, make_env
from sb3_neppo.envs.vec import AgentView, ParallelVecEnv
from sb3_neppo.envs.wrappers import PotentialRewardWrapper

__all__ = [
    "ENVS",
    "AgentView",
    "FrozenOthersEnv",
    "FrozenOthersVecEnv",
    "ParallelVecEnv",
    "PotentialRewardWrapper",
    "MatrixGameEnv",
    "NormalFormGame",
    "action_from_strategy",
    "alpha_game",
    "make_env",
    "matching_pennies",
    "prisoners_dilemma",
    "stag_hunt",
    "strategy_from_action",
]
