"""PettingZoo parallel env -> SB3 ``VecEnv``: one sub-env per (copy, agent) slot, so one SB3 policy drives every agent.

Why not SuperSuit's ``pettingzoo_env_to_vec_env_v1`` + ``concat_vec_envs_v1``: on the current stack (SB3 2.9,
gymnasium 1.x) its ``ConcatVecEnv`` cannot be seeded (``PPO(seed=...)`` raises), ``get_attr``/``env_method`` fail,
time-limit endings are reported as terminals without ``TimeLimit.truncated`` (so PPO never bootstraps at the time
limit) and its padding wrappers cost ~40 % of env speed. :class:`ParallelVecEnv` is the thin adapter that does those
four things right; :class:`AgentView` does SuperSuit's padding and agent indicator, and only where spaces differ.

Units: the VecEnv has ``n_copies × n_agents`` sub-envs, so SB3's ``total_timesteps`` counts *agent*-steps; one
``step()`` advances every copy by one *env* step. ``ParallelVecEnv.env_steps`` counts env steps (what the CLI and
``summary.json`` speak).

Agents that leave before the episode ends: their slot reports ``done`` at the step they leave (with the terminal
observation), then holds an all-zero observation and reward 0 until the copy's episode ends (SuperSuit's "black
death"), when every slot of the copy is done and the copy resets.

Every step the envs return is checked (:class:`~sb3_neppo.envs.wrappers.StepChecker`): a wrong observation shape, a
NaN/inf, or no reward for an agent that acted is one line naming the agent and the step. Observation finiteness is
checked once per ``step()`` on the whole batch (the per-agent scan runs only to name the culprit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from sb3_neppo.envs.wrappers import FlatObservation, StepEncoder, check_parallel_env, potential_values, where
from sb3_neppo.errors import ConfigError
from sb3_neppo.potentials import Potential

SQUASH_BOUND = 10.0


class AgentView:
    """How one shared policy sees and drives agents whose spaces may differ.

    Observations are flattened as SB3's preprocessing does for an MLP (:class:`~sb3_neppo.envs.wrappers.FlatObservation`:
    Discrete and MultiDiscrete one-hot, Box and MultiBinary flattened, images scaled to [0, 1], Dict and Tuple part by
    part), zero-padded to the widest agent and (with ``agent_indicator``) followed by a one-hot of the agent, so agents
    whose spaces differ, even in kind, share one Box. Discrete actions are padded to the largest ``n`` (an action an
    agent does not have wraps round: ``a mod n_i``); Box actions to the widest agent (extra dims ignored, the rest
    clipped to the agent's bounds). When every agent has the same 1-D Box observation space and there is no indicator,
    observations pass through unchanged.

    With ``squash`` (the default), bounded Box dimensions are reached through a sigmoid: the policy acts on
    u ∈ [-10, 10] (SB3 needs finite bounds; sigmoid(10) = 1 - 5e-5) and ``low + (high - low) · sigmoid(u)`` goes to
    the env. SB3 PPO otherwise clips a Gaussian sample to the bounds, and a mean that has drifted past a bound gets no
    gradient back (every sample clips to the same action): a cooperative policy then stops tracking a potential whose
    optimum moves back inside.

    :param env: the parallel env (only its spaces are read).
    :param agent_indicator: append the one-hot agent id (None: when there is more than one agent).
    :param squash: map bounded Box actions through a sigmoid (see above).
    """

    def __init__(self, env: ParallelEnv, agent_indicator: bool | None = None, squash: bool = True):
        check_parallel_env(env)
        self.agents = list(env.possible_agents)
        self.index = {a: i for i, a in enumerate(self.agents)}
        self.agent_indicator = len(self.agents) > 1 if agent_indicator is None else bool(agent_indicator)
        self.squash = bool(squash)
        self.obs_spaces = {a: env.observation_space(a) for a in self.agents}
        self.act_spaces = {a: env.action_space(a) for a in self.agents}
        self.flat = {a: FlatObservation(a, space) for a, space in self.obs_spaces.items()}  # one line for a bad space
        self.obs_dim = max(f.size for f in self.flat.values())
        width = self.obs_dim + (len(self.agents) if self.agent_indicator else 0)
        low, high = np.zeros(width, np.float32), np.ones(width, np.float32)
        low[: self.obs_dim] = np.min([np.pad(f.low, (0, self.obs_dim - f.size)) for f in self.flat.values()], axis=0)
        high[: self.obs_dim] = np.max([np.pad(f.high, (0, self.obs_dim - f.size)) for f in self.flat.values()], axis=0)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = self._joint_action_space()
        first = next(iter(self.obs_spaces.values()))
        self.passthrough_obs = (
            not self.agent_indicator
            and isinstance(first, spaces.Box)
            and len(first.shape) == 1
            and self.flat[self.agents[0]].scale is None
            and all(s == first for s in self.obs_spaces.values())
        )

    def _joint_action_space(self) -> spaces.Space:
        acts = list(self.act_spaces.values())
        if all(isinstance(s, spaces.Discrete) for s in acts):
            return spaces.Discrete(max(int(s.n) for s in acts))
        if all(isinstance(s, spaces.Box) for s in acts):
            dim = max(int(np.prod(s.shape)) for s in acts)
            low = np.min([np.pad(s.low.reshape(-1), (0, dim - s.low.size), constant_values=np.inf) for s in acts], axis=0)
            high = np.max([np.pad(s.high.reshape(-1), (0, dim - s.high.size), constant_values=-np.inf) for s in acts], axis=0)
            if self.squash:
                bounded = np.isfinite(low) & np.isfinite(high)
                low, high = np.where(bounded, -SQUASH_BOUND, low), np.where(bounded, SQUASH_BOUND, high)
            return spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        raise ConfigError(
            "agents mix Discrete and Box actions, which one shared policy cannot drive; make them all Discrete or all Box "
            "(mpe2: continuous_actions=False or True)"
        )

    def observe(self, agent: str, obs) -> np.ndarray:
        """The shared policy's view of ``agent``'s observation (``obs=None``: the all-zero observation of a gone agent)."""
        if self.passthrough_obs:
            return np.zeros(self.observation_space.shape, np.float32) if obs is None else np.asarray(obs, np.float32)
        out = np.zeros(self.observation_space.shape, np.float32)
        if obs is not None:
            flat = self.flat[agent](obs)
            out[: flat.size] = flat
        if self.agent_indicator:
            out[self.obs_dim + self.index[agent]] = 1.0
        return out

    def env_action(self, agent: str, action) -> Any:
        """The shared policy's action for ``agent``, made valid in the agent's own action space."""
        space = self.act_spaces[agent]
        if isinstance(space, spaces.Discrete):
            return int(space.start) + int(np.asarray(action).reshape(-1)[0]) % int(space.n)
        flat = self.box_actions(agent, np.asarray(action, np.float64).reshape(1, -1))[0]
        return flat.reshape(space.shape).astype(space.dtype)

    def box_actions(self, agent: str, actions: np.ndarray) -> np.ndarray:
        """A batch ``[B, D]`` of the shared policy's Box actions as ``agent``'s own flat actions ``[B, d]`` (extra dims
        dropped, bounded dims squashed, clipped to the bounds)."""
        space = self.act_spaces[agent]
        flat = actions[:, : int(np.prod(space.shape))]
        low, high = space.low.reshape(-1).astype(np.float64), space.high.reshape(-1).astype(np.float64)
        if self.squash:
            bounded = np.isfinite(low) & np.isfinite(high)
            squashed = low + (high - low) / (1.0 + np.exp(-np.clip(flat, -60.0, 60.0)))
            flat = np.where(bounded, squashed, flat)
        return np.clip(flat, low, high)


class ParallelVecEnv(VecEnv):
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
        self.encoder = StepEncoder(self.envs[0])
        self.view = view if view is not None else AgentView(self.envs[0])
        self.agents = self.encoder.possible_agents
        self.n_agents = len(self.agents)
        self.n_copies = len(self.envs)
        self.potential = potential
        if potential is not None:
            self.encoder.check_potential(potential)
        self.env_steps = 0
        self._actions: np.ndarray | None = None
        self._obs: list[dict] = [{} for _ in self.envs]
        # s_t of every copy, float32 (what a potential reads), and the buffer s_{t+1} is written into: swapped each step,
        # so a large state (an image) is never copied
        self._state = np.zeros((self.n_copies, self.encoder.state_dim), np.float32)
        self._next_state = np.zeros_like(self._state)
        self._alive = np.zeros((self.n_copies, self.n_agents), dtype=bool)
        self._returns = np.zeros((self.n_copies, self.n_agents, 2))  # episode return (paid, true) per slot
        self._lengths = np.zeros((self.n_copies, self.n_agents), dtype=int)
        self._t = np.zeros(self.n_copies, dtype=int)  # steps since each copy's reset (for the env-fault messages)
        super().__init__(self.n_copies * self.n_agents, self.view.observation_space, self.view.action_space)

    # --- helpers ----------------------------------------------------------------------------------------------------------

    def _observe_copy(self, c: int) -> np.ndarray:
        return np.stack([self.view.observe(a, self._obs[c].get(a)) for a in self.agents])

    def _reset_copy(self, c: int, seed: int | None = None, options: dict | None = None) -> None:
        env = self.envs[c]
        obs, _ = env.reset(seed=seed, options=options or None)
        self.encoder.observations(obs, 0)
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
        return np.concatenate([self._observe_copy(c) for c in range(self.n_copies)])

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

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
            obs, rewards, terminations, truncations, _ = env.step(joint)
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
        paid = true_rewards.copy()
        if self.potential is not None:
            paid[:] = potential_values(self.potential, states, action_rows, true_rewards)[:, None]
        was_alive = self._alive | dones
        paid[~was_alive] = 0.0
        self._returns[..., 0] += paid
        self._returns[..., 1] += np.where(was_alive, true_rewards, 0.0)
        self._lengths += was_alive
        observations = []
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
            observations.append(self._observe_copy(c))
        batch = np.concatenate(observations)
        if not np.isfinite(batch).all():
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
        return [getattr(env, method_name)(*method_args, **method_kwargs) for env in self._copies(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
