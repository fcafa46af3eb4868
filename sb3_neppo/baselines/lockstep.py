"""The round of the IPPO and MAPPO baselines: PPO learners in lockstep on one multi-agent VecEnv
(:class:`~sb3_neppo.solvers.lockstep.LockstepPPO`), one collection and one optimisation of every learner per round."""

from __future__ import annotations

from typing import Any

import numpy as np

from sb3_neppo.baselines.base import MultiAgentAlgorithm
from sb3_neppo.solvers.lockstep import LockstepPPO


def episode_returns(episodes: list[dict], agents: list[str]) -> dict[str, float]:
    """Mean true return per agent of the episode records :meth:`LockstepPPO.collect` returned (slot ``c·N + i``)."""
    by_agent: dict[str, list[float]] = {}
    for record in episodes:
        by_agent.setdefault(agents[record["slot"] % len(agents)], []).append(record["true_r"])
    return {a: float(np.mean(by_agent[a])) for a in agents if a in by_agent}


class LockstepBaseline(MultiAgentAlgorithm):
    """A baseline trained by PPO learners in lockstep (IPPO, MAPPO): ``_setup`` sets ``self.learners``; a round is one
    collection of ``n_steps`` per env copy and one PPO optimisation of every learner."""

    learners: LockstepPPO

    def _train_round(self) -> dict[str, Any]:
        episodes = self.learners.collect()
        self.learners.train(self._progress_remaining)
        return {"env_steps": self.learners.n_steps * self.config.n_envs, "returns": episode_returns(episodes, self.agents)}

    def _restart_envs(self, seed: int) -> None:
        self.learners.restart(seed)

    def _get_training_state(self) -> dict[str, Any]:
        return {"learners": self.learners.get_state()}

    def _set_training_state(self, state: dict[str, Any]) -> None:
        self.learners.set_state(state["learners"])

    def close(self) -> None:
        self.learners.venv.close()
        super().close()
