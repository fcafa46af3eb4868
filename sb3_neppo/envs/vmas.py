"""VMAS scenarios (torch-batched multi-agent worlds, the vectorised MPE port that BenchMARL uses) as PettingZoo envs.

``make_env("vmas:simple_tag")`` gives :class:`VmasParallelEnv`: one VMAS world behind the PettingZoo parallel API, so
everything that takes a PettingZoo env (the potential wrapper, the SB3 solvers, the CLI) runs on VMAS scenarios as it is.
It steps one world at a time; the batched path steps many worlds per call.

VMAS keeps its own random state (``vmas_random_state``): ``reset(seed=s)`` makes an episode's start a function of s
alone, whatever else draws random numbers, which is what paired (common-random-number) evaluation needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv

from sb3_neppo.errors import ConfigError

MPE_SCENARIOS = (
    "simple",
    "simple_adversary",
    "simple_crypto",
    "simple_push",
    "simple_reference",
    "simple_speaker_listener",
    "simple_spread",
    "simple_tag",
    "simple_world_comm",
)


def _space(space: Any) -> spaces.Space:
    """A VMAS (gym 0.26) space as the Gymnasium space SB3 and PettingZoo expect."""
    if hasattr(space, "n"):
        return spaces.Discrete(int(space.n))
    return spaces.Box(np.asarray(space.low, np.float32), np.asarray(space.high, np.float32), dtype=np.float32)


def make_vmas(scenario: str, num_envs: int, continuous_actions: bool, max_steps: int, seed: int | None, **kwargs):
    """``vmas.make_env`` on the CPU with separate terminated/truncated flags; one clear line for a bad scenario."""
    try:
        import vmas
    except ImportError:
        raise ConfigError("VMAS envs need the vmas package: pip install -e '.[vmas]'") from None
    if max_steps < 1:
        raise ConfigError(f"vmas max_steps must be >= 1 (got {max_steps})")
    try:
        return vmas.make_env(
            scenario,
            num_envs=num_envs,
            device="cpu",
            continuous_actions=continuous_actions,
            max_steps=max_steps,
            seed=seed,
            terminated_truncated=True,
            **kwargs,
        )
    except (AssertionError, ModuleNotFoundError, AttributeError) as exc:  # vmas asserts that the scenario file exists
        raise ConfigError(f"no VMAS scenario '{scenario}' ({exc}); MPE ones: {', '.join(MPE_SCENARIOS)}") from None
    except TypeError as exc:
        raise ConfigError(f"bad argument for VMAS scenario '{scenario}': {exc}") from None


class VmasParallelEnv(ParallelEnv):
    """One world of the VMAS ``scenario`` as a PettingZoo parallel env.

    :param scenario: a VMAS scenario name (``simple_tag``, ``simple_world_comm``, ...).
    :param max_steps: episode length; episodes end by truncation (default 25, MPE's ``max_cycles``).
    :param continuous_actions: Box actions (VMAS's default) or Discrete ones (False, the default here, as in mpe2).
    :param scenario_kwargs: passed to the scenario (e.g. ``num_good_agents``).
    """

    metadata = {"name": "vmas", "is_parallelizable": True}

    def __init__(self, scenario: str, max_steps: int = 25, continuous_actions: bool = False, **scenario_kwargs: Any):
        self.scenario = scenario
        self.world = make_vmas(scenario, 1, continuous_actions, max_steps, None, **scenario_kwargs)
        self.continuous_actions = continuous_actions
        self.possible_agents = [agent.name for agent in self.world.agents]
        self.agents: list[str] = []
        self._observation_spaces = {a: _space(s) for a, s in zip(self.possible_agents, self.world.observation_space)}
        self._action_spaces = {a: _space(s) for a, s in zip(self.possible_agents, self.world.action_space)}
        self.metadata = {**self.metadata, "name": f"vmas_{scenario}"}

    def observation_space(self, agent: str) -> spaces.Space:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self._action_spaces[agent]

    def _observations(self, observations: list[torch.Tensor]) -> dict[str, np.ndarray]:
        return {a: o[0].numpy().astype(np.float32) for a, o in zip(self.possible_agents, observations)}

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations = self.world.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return self._observations(observations), {a: {} for a in self.agents}

    def step(self, actions: dict[str, Any]):
        batch = []
        for agent in self.possible_agents:
            action = actions[agent]
            if self.continuous_actions:
                batch.append(torch.as_tensor(np.asarray(action, np.float32).reshape(1, -1)))
            else:
                batch.append(torch.as_tensor([int(action)]))
        observations, rewards, terminated, truncated, _ = self.world.step(batch)
        obs = self._observations(observations)
        rew = {a: float(r[0]) for a, r in zip(self.possible_agents, rewards)}
        term = {a: bool(terminated[0]) for a in self.possible_agents}
        trunc = {a: bool(truncated[0]) and not bool(terminated[0]) for a in self.possible_agents}
        infos = {a: {} for a in self.possible_agents}
        if terminated[0] or truncated[0]:
            self.agents = []
        return obs, rew, term, trunc, infos
