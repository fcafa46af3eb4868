"""VMAS scenarios (torch-batched multi-agent worlds, the vectorised MPE port that BenchMARL uses) as PettingZoo envs.

``make_env("vmas:simple_tag")`` gives :class:`VmasParallelEnv`: one VMAS world behind the PettingZoo parallel API, so
everything that takes a PettingZoo env (the potential wrapper, the SB3 solvers, the CLI) runs on VMAS scenarios as it is.
It steps one world at a time. The batched path is :class:`VmasBackend`, the env backend of every VMAS scenario
(:func:`~sb3_neppo.envs.backend.backend_for`): :class:`VmasVecEnv` (B worlds × N agents as one SB3 VecEnv, stepped
in one VMAS call, with the potential reward computed on the whole batch at once), :class:`VmasFrozenOthersVecEnv` (a
best response's worlds) and :class:`VmasEpisodes` (the evaluation episodes as worlds of one batch). They see and drive
the agents through the same :class:`~sb3_neppo.envs.view.AgentView` rules, on the whole batch, as the PettingZoo path.

VMAS keeps its own random state (``vmas_random_state``): ``reset(seed=s)`` makes an episode's start a function of s
alone, whatever else draws random numbers, which is what paired (common-random-number) evaluation needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import ParallelEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from sb3_neppo.envs.backend import EnvBackend
from sb3_neppo.envs.frozen import JointActor
from sb3_neppo.envs.rollouts import EvaluationEpisodes, StepLogs, encode_states, log_format
from sb3_neppo.envs.vec import MultiAgentVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import Memory, draw_noise
from sb3_neppo.potentials import Potential

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


def make_vmas(
    scenario: str, num_envs: int, continuous_actions: bool, max_steps: int, seed: int | None, device: str = "cpu", **kwargs
):
    """``vmas.make_env`` on ``device`` (a torch device) with separate terminated/truncated flags; one clear line for a
    bad scenario."""
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
            device=device,
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
        self.scenario, self.max_steps, self.scenario_kwargs = scenario, max_steps, dict(scenario_kwargs)
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

    def sb3_neppo_backend(self, env_fn: Callable[[], ParallelEnv], env: ParallelEnv, device: str = "cpu") -> VmasBackend:
        """This scenario's env backend: batched worlds on ``device`` (see :func:`~sb3_neppo.envs.backend.backend_for`)."""
        return VmasBackend(env_fn, self, device)


class VmasVecEnv(MultiAgentVecEnv):
    """``n_worlds`` worlds of a VMAS scenario as one SB3 ``VecEnv`` with a slot per (world, agent): slot ``b·N + i``,
    the layout of :class:`~sb3_neppo.envs.vec.ParallelVecEnv`, stepped with one VMAS call and no Python loop per world.

    Observations and actions go through the :class:`~sb3_neppo.envs.view.AgentView` rules (padding, agent indicator,
    wrap-round Discrete actions, sigmoid-squashed bounded Box actions) on the whole batch; the potential reads the same
    state (the observations concatenated), actions and rewards as :class:`~sb3_neppo.envs.encoding.StepEncoder`
    defines them, so a potential means the same on both paths. ``infos`` carry each slot's ``true_reward``, and at
    episode ends ``terminal_observation``, ``TimeLimit.truncated`` and an ``episode`` record with the true return.

    :param env: the :class:`VmasParallelEnv` that names the scenario and its settings.
    :param n_worlds: worlds stepped together (B).
    :param view: the shared policy's view (default: one built from ``env``).
    :param potential: pay every slot φ_w of its world (else each agent its own reward).
    :param device: where the worlds run (a torch device; what SB3 reads comes back to the CPU as numpy arrays).
    """

    def __init__(
        self,
        env: VmasParallelEnv,
        n_worlds: int,
        view: AgentView | None = None,
        potential: Potential | None = None,
        device: str = "cpu",
    ):
        if int(n_worlds) < 1:
            raise ConfigError(f"n_worlds must be >= 1 (got {n_worlds})")
        self._env = env
        self.n_worlds, self.device = int(n_worlds), device
        self.world = make_vmas(
            env.scenario, self.n_worlds, env.continuous_actions, env.max_steps, 0, device, **env.scenario_kwargs
        )
        super().__init__(env, self.n_worlds, view, potential)
        self._obs: list[torch.Tensor] = []
        self._returns = np.zeros((self.n_worlds, self.n_agents, 2))  # episode return (paid, true) per slot
        self._lengths = np.zeros(self.n_worlds, dtype=int)
        self.last_step: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def env(self) -> VmasParallelEnv:
        return self._env

    # --- the AgentView and StepEncoder rules, on the whole batch -------------------------------------------------------

    def _observe(self, observations: list[torch.Tensor]) -> np.ndarray:
        out = np.zeros((self.n_worlds, self.n_agents, self.view.width), np.float32)
        for i, (agent, obs) in enumerate(zip(self.agents, observations)):
            self.view.observe_batch(agent, obs.cpu().numpy(), out=out[:, i])
        return out.reshape(self.num_envs, -1)

    def _env_actions(self, actions: np.ndarray) -> tuple[list[torch.Tensor], np.ndarray]:
        """The agents' own actions (a tensor per agent, as VMAS takes them) and their encoding for the potential."""
        encoded = np.zeros((self.n_worlds, self.n_agents, self.encoder.action_dim))
        per_agent = actions.reshape(self.n_worlds, self.n_agents, *actions.shape[1:])
        out = []
        for i, agent in enumerate(self.agents):
            chosen = self.view.env_actions(agent, per_agent[:, i])  # [B] indices or [B, d] float64 Box actions
            self.encoder.agent_actions(agent, chosen, out=encoded[:, i])
            dtype = None if chosen.ndim == 1 else torch.float32
            out.append(torch.as_tensor(chosen, dtype=dtype, device=self.device))
        return out, encoded

    def _state(self) -> np.ndarray:
        return torch.cat([o.reshape(self.n_worlds, -1) for o in self._obs], dim=1).double().cpu().numpy()

    # --- VecEnv API ----------------------------------------------------------------------------------------------------

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        self._obs = self.world.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return self._observe(self._obs)

    def step_wait(self):
        joint, encoded = self._env_actions(self._actions)
        states = self._state()
        observations, rewards, terminated, truncated, _ = self.world.step(joint)
        true_rewards = torch.stack([r.reshape(-1) for r in rewards], dim=1).double().cpu().numpy()
        if not np.isfinite(true_rewards).all():
            raise ConfigError("the VMAS scenario returned a non-finite reward; fix the scenario or clip its rewards")
        self.last_step = (states, encoded, true_rewards)  # s_t, a_t (as the potential reads it), r_t: for logging
        paid = self._paid(states, encoded, true_rewards)
        self._returns[..., 0] += paid
        self._returns[..., 1] += true_rewards
        self._lengths += 1
        self.env_steps += self.n_worlds
        self._obs = observations
        terminated, truncated = terminated.cpu(), truncated.cpu()
        done = (terminated | truncated).numpy()
        obs = self._observe(observations)
        infos: list[dict] = [{"true_reward": float(r)} for r in true_rewards.reshape(-1)]
        finished = np.flatnonzero(done)
        for b in finished:
            cut = bool(truncated[b]) and not bool(terminated[b])
            for i in range(self.n_agents):
                k = b * self.n_agents + i
                r, true_r = self._returns[b, i]
                infos[k].update(terminal_observation=obs[k].copy(), **{"TimeLimit.truncated": cut})
                infos[k]["episode"] = {"r": float(r), "l": int(self._lengths[b]), "true_r": float(true_r)}
        if finished.size:
            if finished.size == self.n_worlds:  # fixed-length episodes: every world ends together
                self._obs = self.world.reset()
            else:
                for b in finished:
                    self._obs = self.world.reset_at(int(b))
            self._returns[finished] = 0.0
            self._lengths[finished] = 0
            obs = self._observe(self._obs)
        dones = np.repeat(done, self.n_agents)
        return obs, paid.reshape(-1).astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name == "render_mode":  # None where unset, without SB3's warning on every build
            return [getattr(self.env, "render_mode", None) for _ in self._get_indices(indices)]
        return [getattr(self.env, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.env, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return [getattr(self.env, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


class VmasFrozenOthersVecEnv(VecEnv):
    """The frozen-others env on the batched backend: in each of ``n_worlds`` VMAS worlds ``agent`` acts (one VecEnv
    slot per world, paid its own true reward) and every other agent plays ``others``, all worlds' frozen agents in
    one forward pass per distinct policy. The batched counterpart of
    :class:`~sb3_neppo.envs.frozen.FrozenOthersEnv` (with a ``view``); the same episodes, step for step.

    :param others: the joint policy the other agents play (a :class:`~sb3_neppo.policy.PolicyProfile`); assign
        ``others`` to change it between trainings.
    :param deterministic: the others play their most likely action, else sample it from this env's generator
        (seeded by ``seed()``).
    """

    def __init__(
        self,
        env: VmasParallelEnv,
        agent: str,
        others: Any,
        n_worlds: int,
        deterministic: bool = False,
        view: AgentView | None = None,
        device: str = "cpu",
    ):
        if agent not in env.possible_agents:
            raise ConfigError(f"agent '{agent}' is not in this env; its agents are: {', '.join(env.possible_agents)}")
        self.joint = VmasVecEnv(env, n_worlds, view, device=device)
        self.view, self.agent, self.others = self.joint.view, agent, others
        self.deterministic = bool(deterministic)
        self.n_agents = self.joint.n_agents
        self._i = env.possible_agents.index(agent)
        self._slots = np.arange(n_worlds) * self.n_agents + self._i  # the learning agent's slot in each world
        self._others = [(i, a) for i, a in enumerate(env.possible_agents) if a != agent]
        self._obs: np.ndarray | None = None  # the joint VecEnv's last observations, every slot
        self._rng = np.random.default_rng(0)
        self._memory = Memory()  # the frozen agents' recurrent states, a row per world
        super().__init__(n_worlds, self.view.observation_space, self.view.action_space)

    @property
    def env_steps(self) -> int:
        return self.joint.env_steps

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        self._rng = np.random.default_rng(seed)
        self.joint.seed(seed)
        return super().seed(seed)

    def reset(self) -> np.ndarray:
        self._obs = self.joint.reset()
        self._memory.forget()
        self._reset_seeds()
        self._reset_options()
        return self._obs[self._slots]

    def step_async(self, actions: np.ndarray) -> None:
        actions = np.asarray(actions)
        n_worlds, others = self.num_envs, [a for _, a in self._others]
        noise = None
        if not self.deterministic:
            u, z = draw_noise(self._rng, n_worlds * len(others), self.view.action_space)
            noise = u.reshape(n_worlds, len(others)), z.reshape(n_worlds, len(others), -1)
        obs = self._obs.reshape(n_worlds, self.n_agents, -1)[:, [i for i, _ in self._others]]
        chosen = self.others.policy_actions(obs, others, noise, self._memory)
        joint = np.zeros((n_worlds, self.n_agents, *actions.shape[1:]), dtype=actions.dtype)
        joint[:, self._i] = actions
        joint[:, [i for i, _ in self._others]] = chosen.astype(actions.dtype)
        self.joint.step_async(joint.reshape(n_worlds * self.n_agents, *actions.shape[1:]))

    def step_wait(self):
        self._obs, _, dones, infos = self.joint.step_wait()
        self._memory.forget(np.flatnonzero(dones[self._slots]))  # those worlds were reset
        rewards = np.array([infos[k]["true_reward"] for k in self._slots], dtype=np.float32)
        return self._obs[self._slots], rewards, dones[self._slots], [infos[k] for k in self._slots]

    def close(self) -> None:
        self.joint.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self.joint.get_attr(attr_name, indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self.joint.set_attr(attr_name, value, indices)

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return self.joint.env_method(method_name, *method_args, indices=indices, **method_kwargs)

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


class VmasEpisodes(EvaluationEpisodes):
    """The evaluation episodes as ``n_episodes`` worlds of one VMAS batch, every agent of every world acting in one
    forward pass per distinct policy.

    Common random numbers as on the PettingZoo path (:class:`~sb3_neppo.envs.rollouts.EnvCopyEpisodes`): the worlds
    start from ``reset(seed=seed)`` whatever the policy, and world e samples its agents' actions from its own generator
    ``(seed, e)``, agents in order, so a deviation changes only the deviating agent's actions (with one world it plays
    the very episode of the PettingZoo path).
    """

    def __init__(
        self, env: VmasParallelEnv, n_episodes: int, deterministic: bool, view: AgentView | None = None, device: str = "cpu"
    ):
        self.venv = VmasVecEnv(env, n_episodes, view, device=device)
        self.env, self.n_episodes, self.deterministic = env, self.venv.n_worlds, bool(deterministic)

    @property
    def env_steps(self) -> int:
        return self.venv.env_steps

    def play(self, profile: Any, seed: int, potential: Potential | None, log_states: bool, capacity: int) -> StepLogs:
        venv, n_ep, n = self.venv, self.venv.n_worlds, self.venv.n_agents
        rngs = [np.random.default_rng([seed, e]) for e in range(n_ep)]
        venv.seed(seed)
        obs = venv.reset().reshape(n_ep, n, -1)
        encoding, dtype = log_format(potential)
        logs: StepLogs | None = None  # allocated at the first step, when the state's and actions' widths are known
        running = np.ones(n_ep, dtype=bool)
        memory = Memory()  # recurrent policies' states, a row per world
        while running.any():
            noise = None
            if not self.deterministic:  # world e's agents, in order, from world e's generator
                parts = [draw_noise(rng, n, self.venv.view.action_space) for rng in rngs]
                noise = np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])  # [E, N], [E, N, D]
            actions = profile.policy_actions(obs, self.venv.view.agents, noise, memory)
            next_obs, _, dones, _ = venv.step(actions.reshape(n_ep * n, *actions.shape[2:]))
            states, encoded, rewards = venv.last_step
            live = np.flatnonzero(running)
            if not log_states:
                encoding, states = None, np.zeros((len(live), 0))
            elif encoding is not None:
                states = encode_states(potential, np.asarray(states[live], dtype))
            else:
                states = states[live]
            if logs is None:
                logs = StepLogs(n_ep, states.shape[-1], n, encoded.shape[-1], dtype, capacity, encoding)
            for k, e in enumerate(live):
                t = logs.next_row(e)
                logs.states[e, t], logs.actions[e, t], logs.rewards[e, t] = states[k], encoded[e], rewards[e]
            running &= ~dones.reshape(n_ep, n)[:, 0]  # a world that ends is reset: its later steps are another episode
            obs = next_obs.reshape(n_ep, n, -1)
        return logs


class VmasBackend(EnvBackend):
    """The env backend of a VMAS scenario: every VecEnv is one batched VMAS world set (:class:`VmasVecEnv`,
    :class:`VmasFrozenOthersVecEnv`, :class:`VmasEpisodes`), and VMAS's own random state is part of a run's.

    Each agent's frozen-others worlds are built from an env of their own (the first agent's from the backend's env,
    the others' from ``env_fn``): building a VMAS env moves VMAS's random state, so that order is part of a run's
    numbers.
    """

    vmas_random_state = True
    batched = True

    def __init__(self, env_fn: Callable[[], ParallelEnv], env: VmasParallelEnv, device: str = "cpu"):
        super().__init__(env_fn, env, device)
        self._spare: VmasParallelEnv | None = env  # the env the next frozen-others worlds are built from

    def vec_env(self, n_envs: int, view: AgentView | None = None, potential: Potential | None = None) -> VmasVecEnv:
        return VmasVecEnv(self.env, n_envs, view, potential, self.device)

    def frozen_others_vec_env(
        self, agent: str, others: JointActor, n_envs: int, deterministic: bool = False, view: AgentView | None = None
    ) -> VmasFrozenOthersVecEnv:
        env, self._spare = self._spare if self._spare is not None else self.env_fn().unwrapped, None
        return VmasFrozenOthersVecEnv(env, agent, others, n_envs, deterministic, view, self.device)

    def evaluation_episodes(self, n_episodes: int, deterministic: bool, view: AgentView | None = None) -> VmasEpisodes:
        return VmasEpisodes(self.env, n_episodes, deterministic, view, self.device)
