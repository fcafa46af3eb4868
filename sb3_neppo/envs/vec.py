"""Multi-agent SB3 ``VecEnv``s: one sub-env per (copy, agent) slot, so one SB3 policy drives every agent.

:class:`MultiAgentVecEnv` is what every such VecEnv offers (the slot layout, the view, the potential it pays, env-step
counting); an env backend makes one (:meth:`~sb3_neppo.envs.backend.EnvBackend.vec_env`). :class:`ParallelVecEnv` is
the one on copies of a PettingZoo parallel env (the batched VMAS one is :class:`~sb3_neppo.envs.vmas.VmasVecEnv`).

Why not SuperSuit's ``pettingzoo_env_to_vec_env_v1`` + ``concat_vec_envs_v1``: on the current stack (SB3 2.9,
gymnasium 1.x) its ``ConcatVecEnv`` cannot be seeded (``PPO(seed=...)`` raises), ``get_attr``/``env_method`` fail,
time-limit endings are reported as terminals without ``TimeLimit.truncated`` (so PPO never bootstraps at the time
limit) and its padding wrappers cost ~40 % of env speed. :class:`ParallelVecEnv` is the thin adapter that does those
four things right; :class:`~sb3_neppo.envs.view.AgentView` does SuperSuit's padding and agent indicator, and only where
spaces differ.

Units: the VecEnv has ``n_copies × n_agents`` sub-envs, so SB3's ``total_timesteps`` counts *agent*-steps; one
``step()`` advances every copy by one *env* step. ``env_steps`` counts env steps (what the CLI and ``summary.json``
speak).

Agents that leave before the episode ends: their slot reports ``done`` at the step they leave (with the terminal
observation), then holds an all-zero observation and reward 0 until the copy's episode ends (SuperSuit's "black
death"), when every slot of the copy is done and the copy resets.

Every step the envs return is checked (:class:`~sb3_neppo.envs.checks.StepChecker`): a wrong observation shape, a
NaN/inf, or no reward for an agent that acted is one line naming the agent and the step. Observation finiteness is
checked once per ``step()`` on the whole batch (the per-agent scan runs only to name the culprit).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from sb3_neppo.envs.checks import where
from sb3_neppo.envs.encoding import StepEncoder, potential_values
from sb3_neppo.envs.masks import masks_of
from sb3_neppo.envs.view import AgentView, merge_rows, take
from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import Potential


class MultiAgentVecEnv(VecEnv):
    """``n_copies`` copies (or worlds) of a multi-agent env as one SB3 ``VecEnv`` with a slot per (copy, agent): slot
    ``c·N + i`` is agent i of copy c, seen and driven through ``view``.

    Every slot is paid φ_w of its copy when ``potential`` is set (assign it to change what the slots are paid), else its
    agent's own reward; ``infos`` carry each slot's ``true_reward``, and at episode ends ``terminal_observation``,
    ``TimeLimit.truncated`` and an ``episode`` record with the true return. ``env_steps`` counts env steps (one per copy
    and ``step()``).

    :param env: one copy of the env (its agents and spaces are read; it is reset once).
    :param n_copies: copies stepped together.
    :param view: the shared policy's view (default: one built from ``env``, indicator on when N > 1).
    :param potential: what every slot is paid (None: each agent its own reward).
    """

    def __init__(self, env: ParallelEnv, n_copies: int, view: AgentView | None, potential: Potential | None):
        self.encoder = StepEncoder(env)
        self.view = view if view is not None else AgentView(env)
        self.agents = self.encoder.possible_agents
        self.n_agents = len(self.agents)
        self.n_copies = int(n_copies)
        self.potential = potential
        if potential is not None:
            self.encoder.check_potential(potential)
        self.env_steps = 0
        self._actions: np.ndarray | None = None
        super().__init__(self.n_copies * self.n_agents, self.view.observation_space, self.view.action_space)
        # the env gives action masks over Discrete actions: MaskablePPO reads them (action_masks)
        self.masked = self.encoder.masked and isinstance(self.action_space, spaces.Discrete)
        n_actions = int(self.action_space.n) if self.masked else 1
        self._masks = np.ones((self.n_copies, self.n_agents, n_actions), bool)

    def action_masks(self) -> np.ndarray:
        """Every slot's action mask ``[C·N, n]`` over the shared policy's actions (all allowed for a gone agent)."""
        return self._masks.reshape(self.num_envs, -1).copy()

    def _keep_masks(self, c: int, observations: dict, infos: dict | None) -> None:
        """Copy ``c``'s masks from a reset's or step's observations and infos (agents without one: all allowed)."""
        if self.masked:
            self._masks[c] = True
            for agent, mask in masks_of(observations, infos).items():
                self._masks[c, self.encoder.index[agent]] = self.view.joint_mask(agent, mask)

    def has_attr(self, attr_name: str) -> bool:
        if attr_name == "action_masks":  # sb3-contrib's MaskablePPO asks, then calls env_method("action_masks")
            return self.masked
        return super().has_attr(attr_name)

    @property
    @abstractmethod
    def env(self) -> ParallelEnv:
        """One env of the kind this VecEnv steps (e.g. to build solvers on the same game)."""

    def _paid(self, states: np.ndarray, actions: np.ndarray, true_rewards: np.ndarray) -> np.ndarray:
        """What each slot ``[C, N]`` is paid for a step of every copy (s_t ``[C, S]``, a_t ``[C, N, A]``, r_t ``[C, N]``):
        φ_w of its copy, or (no potential) its own reward."""
        paid = true_rewards.copy()
        if self.potential is not None:
            paid[:] = potential_values(self.potential, states, actions, true_rewards)[:, None]
        return paid

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class ParallelVecEnv(MultiAgentVecEnv):
    """``n_copies`` copies of a parallel env as one SB3 ``VecEnv`` with a sub-env per (copy, agent): slot ``c·N + i``.

    :param env_fn: builds one copy of the parallel env.
    :param n_copies: number of env copies stepped together.
    :param view: the :class:`AgentView` (default: one built from the env, indicator on when N > 1).
    :param potential: if given, every slot is paid φ_w(s, a, r) of its copy (computed for all copies in one torch call);
        else each slot gets its agent's own reward. ``infos`` always carry ``true_reward``.
    """

    def __init__(
        self,
        env_fn: Callable[[], ParallelEnv],
        n_copies: int = 1,
        view: AgentView | None = None,
        potential: Potential | None = None,
    ):
        if int(n_copies) < 1:
            raise ConfigError(f"n_copies must be >= 1 (got {n_copies})")
        self.envs = [env_fn() for _ in range(int(n_copies))]
        super().__init__(self.envs[0], len(self.envs), view, potential)
        self._obs: list[dict] = [{} for _ in self.envs]
        # s_t of every copy, float32 (what a potential reads), and the buffer s_{t+1} is written into: swapped each step,
        # so a large state (an image) is never copied
        self._state = np.zeros((self.n_copies, self.encoder.state_dim), np.float32)
        self._next_state = np.zeros_like(self._state)
        self._alive = np.zeros((self.n_copies, self.n_agents), dtype=bool)
        self._returns = np.zeros((self.n_copies, self.n_agents, 2))  # episode return (paid, true) per slot
        self._lengths = np.zeros((self.n_copies, self.n_agents), dtype=int)
        self._t = np.zeros(self.n_copies, dtype=int)  # steps since each copy's reset (for the env-fault messages)

    @property
    def env(self) -> ParallelEnv:
        return self.envs[0]

    # --- helpers ----------------------------------------------------------------------------------------------------------

    def _observe(self) -> np.ndarray:
        """Every slot's observation ``[C·N, *shape]``, agent by agent over the copies (a gone agent's: all zero)."""
        out = self.view.empty(self.n_copies, self.n_agents)
        for i, agent in enumerate(self.agents):
            self.view.observe_batch(agent, [obs.get(agent) for obs in self._obs], out=take(out, (slice(None), i)))
        return merge_rows(out, self.num_envs)

    def _reset_copy(self, c: int, seed: int | None = None, options: dict | None = None) -> None:
        env = self.envs[c]
        obs, infos = env.reset(seed=seed, options=options or None)
        self.encoder.observations(obs, 0)
        self._keep_masks(c, obs, infos)
        self._obs[c] = obs
        self.encoder.state(env, obs, out=self._state[c])
        self._alive[c] = [a in obs for a in self.agents]
        self._returns[c] = 0.0
        self._lengths[c] = 0
        self._t[c] = 0

    # --- VecEnv API -------------------------------------------------------------------------------------------------------

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seed the next reset: copy c gets ``seed + c`` (every slot of a copy reports its copy's seed)."""
        seeds = super().seed(seed)
        base = seeds[0]
        self._seeds = [base + c for c in range(self.n_copies) for _ in range(self.n_agents)]
        return self._seeds

    def reset(self) -> np.ndarray:
        for c in range(self.n_copies):
            self._reset_copy(c, self._seeds[c * self.n_agents], self._options[c * self.n_agents])
        self._reset_seeds()
        self._reset_options()
        return self._observe()

    def step_wait(self):
        actions = self._actions.reshape(self.n_copies, self.n_agents, *self._actions.shape[1:])
        n = self.n_agents
        # s_t stays in `states` (read below); s_{t+1} is written into the other buffer, which becomes self._state
        states, self._state, self._next_state = self._state, self._next_state, self._state
        action_rows = np.zeros((self.n_copies, n, self.encoder.action_dim))
        true_rewards = np.zeros((self.n_copies, n))
        dones = np.zeros((self.n_copies, n), dtype=bool)
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        finished = []
        step_obs = []
        self._t += 1
        for c, env in enumerate(self.envs):
            joint = {a: self.view.env_action(a, actions[c, i]) for i, a in enumerate(self.agents) if a in env.agents}
            obs, rewards, terminations, truncations, step_infos = env.step(joint)
            self._keep_masks(c, obs, step_infos)
            t = int(self._t[c])
            self.encoder.observations(obs, t, finite=False)  # finiteness: once for the whole batch, below
            step_obs.append(obs)
            action_rows[c] = self.encoder.actions(joint)
            true_rewards[c] = self.encoder.rewards(rewards, joint, t)
            self._obs[c] = {**self._obs[c], **obs}
            self.encoder.state(env, obs, out=self._state[c], step=t)
            left = False
            for i, agent in enumerate(self.agents):
                if not self._alive[c, i]:
                    continue
                term, trunc = terminations.get(agent, False), truncations.get(agent, False)
                if term or trunc or agent not in env.agents:
                    dones[c, i] = left = True
                    self._alive[c, i] = False
                    infos[c * n + i]["TimeLimit.truncated"] = bool(trunc and not term)
            if not env.agents:
                finished.append(c)
            if left:  # terminal observations leave the batch: check them here
                self.encoder.observations(obs, t)
        paid = self._paid(states, action_rows, true_rewards)
        was_alive = self._alive | dones
        paid[~was_alive] = 0.0
        self._returns[..., 0] += paid
        self._returns[..., 1] += np.where(was_alive, true_rewards, 0.0)
        self._lengths += was_alive
        for c in range(self.n_copies):
            for i, agent in enumerate(self.agents):
                k = c * n + i
                infos[k]["true_reward"] = float(true_rewards[c, i])
                if dones[c, i]:
                    infos[k]["terminal_observation"] = self.view.observe(agent, self._obs[c].get(agent))
                    r, true_r = self._returns[c, i]
                    infos[k]["episode"] = {"r": float(r), "l": int(self._lengths[c, i]), "true_r": float(true_r)}
            if c in finished:
                for i, agent in enumerate(self.agents):
                    if not dones[c, i]:  # a slot that left earlier: its black-death stretch ends with the episode
                        dones[c, i] = True
                        infos[c * n + i]["terminal_observation"] = self.view.observe(agent, None)
                self._reset_copy(c)
            else:
                for i, agent in enumerate(self.agents):
                    if not self._alive[c, i]:
                        self._obs[c].pop(agent, None)
        batch = self._observe()
        if isinstance(batch, np.ndarray) and batch.dtype.kind == "f" and not np.isfinite(batch).all():
            self._non_finite(step_obs, batch)
        self.env_steps += self.n_copies
        return batch, paid.reshape(-1).astype(np.float32), dones.reshape(-1), infos

    def _non_finite(self, step_obs: list[dict], batch: np.ndarray) -> None:
        """The one line for a non-finite value in this step's observation batch: the env's, or one float32 cannot hold."""
        for c, obs in enumerate(step_obs):
            self.encoder.observations(obs, int(self._t[c]))
        k = int(np.argmax(~np.isfinite(batch).all(axis=1)))
        c, agent = k // self.n_agents, self.agents[k % self.n_agents]
        raise ConfigError(
            f"the env returned an observation for {agent} {where(int(self._t[c]))} with values beyond "
            f"float32's range (|x| > {np.finfo(np.float32).max:.3g}), which SB3's policy reads; rescale the observations"
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [env.render() if getattr(env, "render_mode", None) == "rgb_array" else None for env in self.envs]

    def _copies(self, indices: VecEnvIndices) -> list[ParallelEnv]:
        return [self.envs[k // self.n_agents] for k in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":  # an env without one renders nothing: None, without SB3's warning on every build
            return [getattr(env, "render_mode", None) for env in self._copies(indices)]
        return [getattr(env, attr_name) for env in self._copies(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for env in self._copies(indices):
            setattr(env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        if method_name == "action_masks" and self.masked:  # per slot, not per copy
            masks = self.action_masks()
            return [masks[k] for k in self._get_indices(indices)]
        return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._copies(indices)]
