"""Environments: normal-form games as PettingZoo parallel envs, and the env-id registry."""

from sb3_neppo.envs.games import NormalFormGame, alpha_game, matching_pennies, prisoners_dilemma, stag_hunt
from sb3_neppo.envs.matrix import MatrixGameEnv, action_from_strategy, strategy_from_action
from sb3_neppo.envs.registry import ENVS, make_env

__all__ = [
    "ENVS",
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
