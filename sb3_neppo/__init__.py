"""sb3_neppo: NePPO (Near-Potential Policy Optimization) for general-sum multi-agent games, in the SB3 ecosystem."""

__version__ = "0.1.0"

from sb3_neppo.baselines.ippo import IPPO  # noqa: E402
from sb3_neppo.baselines.maddpg import MADDPG  # noqa: E402
from sb3_neppo.baselines.mappo import MAPPO  # noqa: E402
from sb3_neppo.envs import MatrixGameEnv, NormalFormGame, make_env  # noqa: E402
from sb3_neppo.neppo import NePPO  # noqa: E402
from sb3_neppo.potentials import (  # noqa: E402
    ConvexCombinationPotential,
    Potential,
    QuadraticPotential,
    RewardMixturePotential,
    StateMixerPotential,
)

__all__ = [
    "ConvexCombinationPotential",
    "IPPO",
    "MADDPG",
    "MAPPO",
    "MatrixGameEnv",
    "NePPO",
    "NormalFormGame",
    "Potential",
    "QuadraticPotential",
    "RewardMixturePotential",
    "StateMixerPotential",
    "__version__",
    "make_env",
]
