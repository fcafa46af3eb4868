"""Inner solvers: the slots of Algorithm 1 and their implementations."""

from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.solvers.base import (
    BestResponseSolver,
    CooperativeSolver,
    Estimate,
    FEstimate,
    PolicyEvaluator,
    Solvers,
    estimate_f,
)
from sb3_neppo.solvers.exact import ExactBestResponseSolver, ExactCooperativeSolver, ExactEvaluator, exact_solvers
from sb3_neppo.solvers.sb3 import PPOBestResponseSolver, PPOCooperativeSolver, RolloutEvaluator, Rollouts, sb3_solvers

__all__ = [
    "BestResponseSolver",
    "CooperativeSolver",
    "Estimate",
    "ExactBestResponseSolver",
    "ExactCooperativeSolver",
    "ExactEvaluator",
    "FEstimate",
    "PPOBestResponseSolver",
    "PPOCooperativeSolver",
    "PolicyEvaluator",
    "RolloutEvaluator",
    "Rollouts",
    "SB3SolverConfig",
    "Solvers",
    "estimate_f",
    "exact_solvers",
    "sb3_solvers",
]
