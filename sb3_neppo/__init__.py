"""sb3_neppo: NePPO (Near-Potential Policy Optimization) for general-sum multi-agent games, in the SB3 ecosystem."""

from sb3_neppo.baselines.ippo import IPPO
from sb3_neppo.baselines.maddpg import MADDPG
from sb3_neppo.baselines.mappo import MAPPO
from sb3_neppo.envs import MatrixGameEnv, NormalFormGame, make_env
from sb3_neppo.model import MultiAgentModel
from sb3_neppo.neppo import NePPO
from sb3_neppo.potentials import (
    ConvexCombinationPotential,
    Potential,
    QuadraticPotential,
    RewardMixturePotential,
    StateMixerPotential,
)
from sb3_neppo.version import __version__

__all__ = [
    "ConvexCombinationPotential",
    "IPPO",
    "MADDPG",
    "MAPPO",
    "MatrixGameEnv",
    "MultiAgentModel",
    "NePPO",
    "NormalFormGame",
    "Potential",
    "QuadraticPotential",
    "RewardMixturePotential",
    "StateMixerPotential",
    "__version__",
    "make_env",
]
