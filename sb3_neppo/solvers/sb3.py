"""The sampled slots of Algorithm 1: SB3 PPO on the potential-reward VecEnv, PPO best responses, rollout estimates.

PPO is the default; ``solver_kwargs.algo`` / ``br_algo`` / ``policy`` choose any on-policy SB3 or sb3-contrib
algorithm and policy for either (:mod:`sb3_neppo.algorithms`, :func:`make_model`); a recurrent policy carries its
hidden state through the frozen-others envs and the evaluation episodes (:class:`~sb3_neppo.policy.Memory`).

* :class:`PPOCooperativeSolver` — one shared PPO policy (agent indicator in its observation) trained for K1 PPO
  updates on the env's multi-agent VecEnv paid φ_w (:class:`~sb3_neppo.envs.vec.ParallelVecEnv`; for VMAS scenarios
  batched worlds); each solve starts from the warm start's weights with a fresh optimiser, so both branches of a
  direction start from the same state.
* :class:`PPOBestResponseSolver` — per agent, PPO for K2 updates on the env's frozen-others VecEnv (the agent's own
  true reward, the others frozen: :class:`~sb3_neppo.envs.frozen.FrozenOthersEnv` copies), started from the previous
  best response or from the agent's cooperative policy. The agents, solved one after another, share one PPO and (on
  PettingZoo envs) one set of env copies.
* :class:`RolloutEvaluator` — J_i and Φ_w by rollouts of π^Φ and of every (BR_i, π^Φ_-i) on the same episode seeds
  and the same per-episode random numbers (common random numbers), discounted by γ. Φ for any w is recomputed from
  the logged steps (:meth:`~sb3_neppo.envs.rollouts.Rollouts.potential_returns`) without new env steps; the logs are
  preallocated float32 arrays (:class:`~sb3_neppo.envs.rollouts.StepLogs`) holding the potential's small state encoding
  where it has one.

Every VecEnv and the evaluation episodes come from the env's backend (:func:`~sb3_neppo.envs.backend.backend_for`).

Memory is planned, not discovered: :func:`sb3_solvers` estimates the peak memory of a solve from the settings
(:func:`plan_memory`) and refuses, in one line with settings that would fit, a plan beyond the memory available.
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.spaces.utils import flatdim
from pettingzoo import ParallelEnv
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from sb3_neppo.algorithms import default_policy
from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.defaults import PROBE_STEPS, episode_length
from sb3_neppo.envs.backend import EnvBackend, PettingZooBackend, backend_for, make_vec_env
from sb3_neppo.envs.encoding import StepEncoder
from sb3_neppo.envs.masks import check_masks_given
from sb3_neppo.envs.matrix import MatrixGameEnv, strategy_from_action
from sb3_neppo.envs.observations import is_image
from sb3_neppo.envs.rollouts import Rollouts
from sb3_neppo.envs.vec import MultiAgentVecEnv
from sb3_neppo.envs.view import AgentView
from sb3_neppo.errors import ConfigError, first_line
from sb3_neppo.policy import PolicyProfile, frozen_copy
from sb3_neppo.potentials import DEFAULT_STATE_FEATURES, LARGE_STATE, Potential
from sb3_neppo.roles import share_groups
from sb3_neppo.solvers.base import BestResponseSolver, CooperativeSolver, Estimate, PolicyEvaluator, Solvers
from sb3_neppo.solvers.lockstep import LockstepPPO

EnvFn = Callable[[], ParallelEnv]
_SHOWN: set[str] = set()  # SB3's warnings already shown in this process (see make_model)


def model_kwargs(config: SB3SolverConfig, best_response: bool = False) -> dict[str, Any]:
    """The algorithm's keyword arguments with the device, as a copy: A2C writes its optimizer class into the
    ``policy_kwargs`` it is given (the settings, saved as JSON)."""
    return {"device": config.torch_device(), **copy.deepcopy(config.algo_kwargs(best_response))}


def make_model(config: SB3SolverConfig, env, seed: int, best_response: bool = False) -> OnPolicyAlgorithm:
    """The cooperative solver's or (``best_response``) the best responses' algorithm (``solver_kwargs.algo`` /
    ``br_algo``, ``policy``, the algorithm's arguments) on ``env``; a value SB3 refuses while building (an assertion
    on ``n_steps``/``batch_size``, an invalid learning rate, a bad ``policy_kwargs`` network, a policy that does not fit
    the observation space) is one line naming the arguments.

    What SB3 warns while building (a minibatch that does not divide the rollout, ...) is about the settings, the same
    for every model of a run: each message is shown once per process, on one line, however many are built (the
    solvers of every ``NePPO``, the regret evaluator's best responses, workers' rebuilds) and however often other code
    resets Python's warning registry (every ``catch_warnings`` does, so the default filter would repeat it)."""
    cls, policy, kwargs = config.algorithm(best_response), config.policy_name(best_response), config.algo_kwargs(best_response)
    check_policy_fits(policy, env.observation_space, default_policy(cls))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = cls(policy, env, seed=seed, **model_kwargs(config, best_response))
    except (TypeError, ValueError, AssertionError, RuntimeError, KeyError) as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        message = first_line(exc)
        raise ConfigError(
            f"bad {cls.__name__} argument in solver_kwargs ({given}): {type(exc).__name__}: {message} (policy {policy}, "
            f"observations {env.observation_space})"
        ) from None
    for caught_warning in caught:
        text = " ".join(str(caught_warning.message).split())
        if text not in _SHOWN:
            _SHOWN.add(text)
            warnings.warn(text, caught_warning.category, stacklevel=3)
    return model


def check_policy_fits(policy: str, space: spaces.Space, flat: str = "MlpPolicy") -> None:
    """One line when ``policy`` cannot read the shared policy's observations: a CNN policy needs images, a
    multi-input policy a Dict space; the shared policy sees every agent's observation as one flat Box, or as an image
    for a CNN policy (:class:`~sb3_neppo.envs.view.AgentView`). ``flat``: the policy to suggest instead."""
    described = (
        f"a flat Box of {flatdim(space):,} values" if isinstance(space, spaces.Box) and len(space.shape) == 1 else space
    )
    if policy.startswith("Cnn") and not is_image_space(space, check_channels=False):
        raise ConfigError(
            f"solver_kwargs.policy {policy} needs image observations; the policies here see {described}: use {flat}"
        )
    if policy.startswith("MultiInput") and not isinstance(space, spaces.Dict):
        raise ConfigError(
            f"solver_kwargs.policy {policy} needs Dict observations; the policies here see {described}: use {flat}"
        )


def start_from(model: OnPolicyAlgorithm, policy: ActorCriticPolicy | dict) -> None:
    """Load weights into ``model`` and give it a fresh optimiser, so every solve from one warm start starts alike."""
    state = policy if isinstance(policy, dict) else policy.state_dict()
    try:
        model.policy.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"cannot warm-start: the networks differ ({str(exc).splitlines()[0]})") from None
    model.policy.optimizer = model.policy.optimizer_class(
        model.policy.parameters(), lr=model.lr_schedule(1.0), **model.policy.optimizer_kwargs
    )


def _learn(model: OnPolicyAlgorithm, updates: int, seed: int) -> int:
    """K updates (rollout + optimisation) from ``seed``; returns the SB3 timesteps taken."""
    model.set_random_seed(seed)
    model.learn(total_timesteps=updates * model.n_steps * model.n_envs, reset_num_timesteps=True)
    return model.num_timesteps


class _Seeded:
    """A slot's seeds: ``reseed`` sets the next solve's seed; without it, each solve draws one from its own generator."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)
        self._seed: int | None = None

    def reseed(self, seed: int) -> None:
        self._seed = int(seed)

    def _next_seed(self) -> int:
        return self._seed if self._seed is not None else int(self._rng.integers(2**31 - 1))


class PPOCooperativeSolver(_Seeded, CooperativeSolver):
    """π^Φ: SB3 policies trained on the potential-reward VecEnv (see the module docstring): one network shared by every
    agent (``solver_kwargs.share: all``, the default), or one per role or per agent, every network paid φ_w and
    trained in the same rollout (:class:`~sb3_neppo.solvers.lockstep.LockstepPPO`)."""

    def __init__(self, env_fn: EnvFn, config: SB3SolverConfig, seed: int = 0):
        super().__init__(seed)
        self.config = config
        env = env_fn()
        view = AgentView.for_policy(env, config.policy_name(), config.agent_indicator, config.squash_actions)
        # VMAS: batched worlds, on the networks' device
        self.venv: MultiAgentVecEnv = make_vec_env(env_fn, config.n_envs, view, env=env, device=config.torch_device())
        self.view = self.venv.view
        check_masks_given(config.algorithm(), self.venv.masked)
        check_masks_given(config.algorithm(best_response=True), self.venv.masked, "solver_kwargs.br_algo")
        members = share_groups(self.view.agents, config.share)
        self.groups = [[self.view.agents[i] for i in idx] for idx in members]  # the agents of each network
        self.learners: LockstepPPO | None = None
        if len(members) == 1:
            self.model = make_model(config, self.venv, seed)
            self.models = [self.model]
        else:
            n, kwargs = len(self.view.agents), model_kwargs(config)
            slots = [[c * n + i for c in range(config.n_envs) for i in idx] for idx in members]
            check_policy_fits(config.policy_name(), self.venv.observation_space)
            self.learners = LockstepPPO(self.venv, slots, kwargs, seed, config.policy_name(), config.algorithm())
            self.models = self.learners.models
            self.model = self.models[0]
        self.initial_states = [{k: v.clone() for k, v in m.policy.state_dict().items()} for m in self.models]

    def solve(self, potential: Potential, warm_start: PolicyProfile | None) -> PolicyProfile:
        if self.venv.potential is not potential:
            self.venv.encoder.check_potential(potential)
            self.venv.potential = potential
        for model, agents, initial in zip(self.models, self.groups, self.initial_states):
            start_from(model, warm_start.policies[agents[0]] if warm_start is not None else initial)
        seed = self._next_seed()
        if self.learners is None:
            _learn(self.model, self.config.coop_updates, seed)
        else:  # what _learn does, for every network in one rollout
            set_random_seed(seed)
            self.learners.restart(seed)
            for k in range(self.config.coop_updates):
                self.learners.collect()
                self.learners.train(1.0 - (k + 1) / self.config.coop_updates)
        return self._profile()

    def _profile(self) -> PolicyProfile:
        """π^Φ now: a frozen copy of each network, for its agents."""
        copies = [frozen_copy(m.policy) for m in self.models]
        return PolicyProfile(self.view, {a: policy for policy, agents in zip(copies, self.groups) for a in agents})

    def state_of(self, profile: PolicyProfile) -> dict | list[dict]:
        """The weights of ``profile``'s networks: one state dict (one network), else one per network."""
        states = [profile.policies[agents[0]].state_dict() for agents in self.groups]
        return states[0] if len(states) == 1 else states

    def profile_from_state(self, state: dict | list[dict]) -> PolicyProfile:
        """A joint policy with the networks' weights ``state`` (:meth:`state_of`'s, e.g. loaded from a saved model)."""
        states = state if isinstance(state, list) else [state] * len(self.models)
        if len(states) != len(self.models):
            raise ConfigError(f"the saved policy has {len(states)} networks, these settings {len(self.models)} (share)")
        for model, weights in zip(self.models, states):
            start_from(model, weights)
        return self._profile()

    def policy_from_state(self, state: dict) -> ActorCriticPolicy:
        """One network with the weights ``state`` (a best response's)."""
        start_from(self.model, state)
        return frozen_copy(self.model.policy)

    @property
    def env_steps(self) -> int:
        return self.venv.env_steps


class PPOBestResponseSolver(_Seeded, BestResponseSolver):
    """BR_i: SB3 PPO for agent i on frozen-others envs with agent i's true reward (see the module docstring).

    Agents are solved one at a time and every solve starts from given weights with a fresh optimiser and a reset env,
    so all agents share one PPO (one rollout buffer, one network and its Adam moments) and, on PettingZoo envs, the same
    ``br_n_envs`` env copies, each agent seeing them through its own frozen-others envs: memory does not grow with the
    number of agents, and the numbers are those of one PPO and env set per agent.
    """

    def __init__(self, env_fn: EnvFn, view: AgentView, config: SB3SolverConfig, seed: int = 0):
        super().__init__(seed)
        self.env_fn, self.view, self.config = env_fn, view, config
        self.models: dict[
            str, OnPolicyAlgorithm
        ] = {}  # agent -> its PPO: the one shared PPO, with that agent's env while it solves
        self.initial_states: dict[str, dict] = {}
        self._venvs: dict[str, VecEnv] = {}
        self._backend: EnvBackend | None = None  # chosen at the first solve, from the env env_fn builds
        self._ppo: OnPolicyAlgorithm | None = None
        self._steps = 0

    def _venv(self, agent: str, joint: PolicyProfile) -> VecEnv:
        """``agent``'s frozen-others VecEnv (built once per agent)."""
        if agent not in self._venvs:
            if self._backend is None:
                self._backend = backend_for(self.env_fn(), self.env_fn, self.config.torch_device())
            n_envs, deterministic = self.config.envs(best_response=True), self.config.deterministic
            self._venvs[agent] = self._backend.frozen_others_vec_env(agent, joint, n_envs, deterministic, self.view)
        return self._venvs[agent]

    def model(self, agent: str, joint: PolicyProfile) -> OnPolicyAlgorithm:
        """The PPO that trains ``agent``'s best response: on ``agent``'s frozen-others VecEnv, the others now playing
        ``joint``."""
        venv = self._venv(agent, joint)
        if self._ppo is None:
            self._ppo = make_model(self.config, venv, 0, best_response=True)
            self._initial = {k: v.clone() for k, v in self._ppo.policy.state_dict().items()}
        elif self._ppo.env is not venv:
            self._ppo.set_env(venv)  # the next learn() resets it
        self.models[agent], self.initial_states[agent] = self._ppo, self._initial
        venv.others = joint
        return self._ppo

    def solve(self, agent: str, joint: PolicyProfile, warm_start: ActorCriticPolicy | None) -> ActorCriticPolicy:
        model = self.model(agent, joint)
        mode = self.config.br_warm_start
        if mode == "scratch":
            start_from(model, self.initial_states[agent])
        elif mode == "previous" and warm_start is not None:
            start_from(model, warm_start)
        else:
            start_from(model, joint.policies[agent])
        if self.config.br_log_std is not None and mode != "scratch" and hasattr(model.policy, "log_std"):
            with torch.no_grad():
                model.policy.log_std.fill_(float(self.config.br_log_std))
        seed = self._next_seed() + self.view.index[agent]
        self._steps += _learn(model, self.config.br_updates, seed)
        return frozen_copy(model.policy)

    @property
    def env_steps(self) -> int:
        return self._steps


class RolloutEvaluator(_Seeded, PolicyEvaluator):
    """J_i and Φ_w of π^Φ and each deviation by rollouts on common random numbers (see the module docstring), played
    by ``backend``'s evaluation episodes (default: copies of ``env_fn``'s env, whatever the env;
    :func:`rollout_evaluator` asks the env's own backend, e.g. batched VMAS worlds).

    :param view: the shared policy's view (the batched backends drive the agents through it; default: the env's).
    """

    def __init__(
        self,
        env_fn: EnvFn,
        config: SB3SolverConfig,
        seed: int = 0,
        view: AgentView | None = None,
        backend: EnvBackend | None = None,
    ):
        super().__init__(seed)
        self.config = config
        backend = backend if backend is not None else PettingZooBackend(env_fn)
        self.episodes = backend.evaluation_episodes(config.eval_episodes, config.deterministic, view)
        self._capacity = episode_length(self.episodes.env, probe=False) or 64  # the longest episode seen so far, after one

    def rollouts(
        self, profile: PolicyProfile, seed: int, potential: Potential | None = None, log_states: bool = True
    ) -> Rollouts:
        """One batch of episodes (:meth:`EvaluationEpisodes.play`); episode e samples from its own generator."""
        logs = self.episodes.play(profile, seed, potential, log_states, self._capacity)
        self._capacity = max(self._capacity, int(logs.lengths.max(initial=1)))
        return logs.rollouts(self.config.gamma)

    def estimate(self, potential: Potential, profile: PolicyProfile, seed: int) -> Estimate:
        rollouts = self.rollouts(profile, seed, potential)
        steps = sum(len(r) for r in rollouts.rewards)
        return Estimate(rollouts.returns(), rollouts.potential_returns(potential), steps, rollouts)

    def evaluate(
        self, potential: Potential, joint: PolicyProfile, deviations: Mapping[str, ActorCriticPolicy]
    ) -> tuple[Estimate, dict[str, Estimate]]:
        seed = self._next_seed()
        at_joint = self.estimate(potential, joint, seed)
        return at_joint, {a: self.estimate(potential, joint.with_agent(a, br), seed) for a, br in deviations.items()}

    @property
    def env_steps(self) -> int:
        return self.episodes.env_steps


def rollout_evaluator(env_fn: EnvFn, config: SB3SolverConfig, view: AgentView, seed: int = 0) -> RolloutEvaluator:
    """The rollout evaluator for ``env_fn``'s env, on the env's backend (:func:`~sb3_neppo.envs.backend.backend_for`)."""
    env = env_fn()
    return RolloutEvaluator(env_fn, config, seed, view, backend_for(env, env_fn, config.torch_device()))


# --- memory planning ------------------------------------------------------------------------------------------------

MEMORY_MARGIN = 0.8  # a solve may plan on this share of the memory available (the rest: Python, torch, the OS)
FLOAT = 4  # bytes of a float32: SB3's rollout buffers, the networks, the logged states and actions


def _resident_bytes() -> int:
    """This process's resident memory now (``/proc/self/statm``; 0 where there is none)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def memory_available() -> tuple[int | None, str]:
    """Bytes this process can still take and what bounds it: ``MemAvailable`` in ``/proc/meminfo``, or less where the
    process is limited (``ulimit -v``: RLIMIT_AS less the address space in use; a cgroup's ``memory.max`` less its
    ``memory.current``). ``(None, ...)`` where none of these can be read."""
    bounds: list[tuple[int, str]] = []
    try:
        with open("/proc/meminfo") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        bounds.append((int(fields["MemAvailable"].split()[0]) * 1024, "MemAvailable"))
    except (OSError, KeyError, ValueError):
        pass
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            with open("/proc/self/status") as fh:
                used = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
            bounds.append((max(0, limit - used), "the address-space limit (ulimit -v)"))
    except (ImportError, OSError, ValueError, StopIteration):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            high = fh.read().strip()
        if high != "max":
            with open("/sys/fs/cgroup/memory.current") as fh:
                bounds.append((max(0, int(high) - int(fh.read())), "the cgroup's memory.max"))
    except (OSError, ValueError):
        pass
    return min(bounds) if bounds else (None, "unknown")


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MB"


def _policy_parameters(config: SB3SolverConfig, sizes: MemorySizes, best_response: bool, kwargs: Mapping[str, Any]) -> int:
    """Parameters of the cooperative solver's or the best responses' policy (its ``policy_kwargs``: network, CNN,
    LSTM), counted on one built on the CPU, torch's random state kept (a network SB3 cannot build counts as none:
    building the model says why)."""
    cls, name = config.algorithm(best_response), config.policy_name(best_response)
    policy_kwargs = dict(kwargs.get("policy_kwargs") or {})
    try:
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            policy = cls.policy_aliases[name](sizes.observation_space, sizes.action_space, lambda _: 0.0, **policy_kwargs)
    except Exception:  # noqa: BLE001 - make_model reports a bad network in one line
        return 0
    return sum(p.numel() for p in policy.parameters())


@dataclass
class MemorySizes:
    """What a solve's memory depends on, read from the env once (:func:`memory_sizes`)."""

    n_agents: int
    obs_width: int  # values in the shared policy's observation (padded, with the agent indicator; an image's pixels)
    observation_space: spaces.Space  # the shared policy's
    action_space: spaces.Space  # the shared policy's
    state_dim: int
    logged_state: int  # values the evaluator logs per step for the state (the potential's encoding of it)
    action_dim: int  # values per agent in the potential's action encoding
    episode_length: int
    env_bytes: int  # one env copy
    batched: bool  # the env's backend runs each VecEnv as one batched env (VMAS), not as env copies
    images: bool = False  # every agent observes images (a CNN policy could read them as images)


def memory_sizes(env_fn: EnvFn, env: ParallelEnv, config: SB3SolverConfig, logged_state: int | None = None) -> MemorySizes:
    """The sizes of :class:`MemorySizes` for ``env`` (one more copy is built to weigh an env copy).

    :param logged_state: values the evaluator logs per step for the state; None: the default state mixer's, the
        state itself or, above 1,024 values, its 32 features (:func:`~sb3_neppo.potentials.build_potential`).
    """
    view = AgentView.for_policy(env, config.policy_name(), config.agent_indicator, config.squash_actions)
    encoder = StepEncoder(env)
    if logged_state is None:
        logged_state = DEFAULT_STATE_FEATURES if encoder.state_dim > LARGE_STATE else encoder.state_dim
    before = _resident_bytes()
    extra = env_fn()
    extra.reset(seed=0)
    env_bytes = max(0, _resident_bytes() - before)
    del extra
    return MemorySizes(
        n_agents=len(view.agents),
        obs_width=view.width,
        observation_space=view.observation_space,
        action_space=view.action_space,
        state_dim=encoder.state_dim,
        logged_state=int(logged_state),
        action_dim=encoder.action_dim,
        episode_length=episode_length(env) or PROBE_STEPS,
        env_bytes=env_bytes,
        batched=backend_for(env, env_fn).batched,
        images=all(is_image(env.observation_space(a)) for a in view.agents),
    )


@dataclass
class MemoryPlan:
    """The estimated peak memory of a solve, by part: ``{part: (bytes, how it is counted)}``."""

    parts: dict[str, tuple[int, str]]

    @property
    def total(self) -> int:
        return sum(n for n, _ in self.parts.values())

    def describe(self, top: int = 4) -> str:
        """The largest parts, one clause each."""
        largest = sorted(self.parts.items(), key=lambda item: -item[1][0])[:top]
        return "; ".join(f"{name} {_gb(n)} ({how})" for name, (n, how) in largest)


def plan_memory(sizes: MemorySizes, config: SB3SolverConfig) -> MemoryPlan:
    """The peak memory of a solve with ``config`` (see the parts' descriptions; an estimate, not a bound).

    * PPO rollout buffers: the cooperative solver's (``n_envs × N`` slots × ``n_steps`` × the observation, the action
      and six numbers), the best responses' one shared buffer (``br_n_envs`` slots), and once more the larger of the two,
      which SB3 copies while it flattens it for the minibatches;
    * networks: the two trained policies with their gradients and Adam's two moments (4 copies each), and the frozen
      copies NePPO holds (π^Φ and N best responses, for the warm start and two branches: 3 (N + 1));
    * the evaluator's logs: ``eval_episodes × (N + 1)`` joint policies × the episode length × (the logged state, the
      actions, the rewards), alive together while F is estimated;
    * state buffers: the vector env's two rows per copy and the evaluator's batch of raw states, and the env copies
      (each weighed once): ``n_envs`` for the cooperative solver, ``br_n_envs`` shared by the best responses,
      ``eval_episodes`` for the evaluator (VMAS: one batched env for each solver and agent).
    """
    n, width, e = sizes.n_agents, sizes.obs_width, config.eval_episodes
    a_buffer = flatdim(sizes.action_space) if isinstance(sizes.action_space, spaces.Box) else 1
    coop_ppo, br_ppo = config.algo_kwargs(), config.algo_kwargs(best_response=True)
    coop_steps, br_steps = config.n_steps(), config.n_steps(best_response=True)
    row = (width + a_buffer + 6) * FLOAT
    br_envs = config.envs(best_response=True)
    coop, br = coop_steps * config.n_envs * n * row, br_steps * br_envs * row
    p_coop, p_br = _policy_parameters(config, sizes, False, coop_ppo), _policy_parameters(config, sizes, True, br_ppo)
    length = sizes.episode_length
    log_row = sizes.logged_state * FLOAT + n * sizes.action_dim * FLOAT + n * 8
    copies = 2 + n if sizes.batched else config.n_envs + br_envs + e
    raw_states = (
        0
        if sizes.batched
        else (config.n_envs + br_envs + (e if sizes.logged_state != sizes.state_dim else 0)) * sizes.state_dim
    )
    return MemoryPlan(
        {
            "PPO rollout buffers": (
                coop + br + max(coop, br),
                f"cooperative {config.n_envs * n} slots × {coop_steps} steps × {width:,} values, twice while PPO "
                f"flattens it; best responses {br_envs} slots",
            ),
            "networks": (
                (4 * (p_coop + p_br) + 3 * (n + 1) * max(p_coop, p_br)) * FLOAT,
                f"{max(p_coop, p_br):,} parameters per policy: 2 trained with Adam, {3 * (n + 1)} frozen copies",
            ),
            "evaluator logs": (
                e * (n + 1) * length * log_row,
                f"{e} episodes × {n + 1} joint policies × {length} steps × {sizes.logged_state:,} state values",
            ),
            "env copies and states": (
                copies * sizes.env_bytes + raw_states * FLOAT,
                f"{copies} copies of {_gb(sizes.env_bytes)}, states of {sizes.state_dim:,} values",
            ),
        }
    )


def _halvings(value: int, floor: int) -> list[int]:
    out = []
    while value // 2 >= floor:
        value //= 2
        out.append(value)
    return out


def _fitting_settings(sizes: MemorySizes, config: SB3SolverConfig, budget: int) -> dict[str, Any] | None:
    """Settings that would fit ``budget``, reducing ``n_envs``, then ``eval_episodes``, then the network's width, each
    only as far as needed (None: none do)."""
    values = asdict(config)
    changes: dict[str, Any] = {}

    def fits(trial: dict[str, Any]) -> bool:
        return plan_memory(sizes, SB3SolverConfig(**trial)).total <= budget

    stages = [("n_envs", v) for v in _halvings(config.n_envs, 1)] + [
        ("eval_episodes", v) for v in _halvings(config.eval_episodes, 2)
    ]
    for key, value in stages:
        values[key] = changes[key] = value
        if fits(values):
            return changes
    for width in (32, 16, 8, 4):
        for key in ("ppo", "br_ppo"):
            if key == "ppo" or "policy_kwargs" in values["br_ppo"]:
                values[key] = {
                    **values[key],
                    "policy_kwargs": {**(values[key].get("policy_kwargs") or {}), "net_arch": [width]},
                }
        changes["ppo"] = {"policy_kwargs": {"net_arch": [width]}}
        if fits(values):
            return changes
    return None


def _flow(value: Any) -> str:
    """A YAML flow literal: ``{n_envs: 2, ppo: {policy_kwargs: {net_arch: [8]}}}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return str(value)


def check_memory(sizes: MemorySizes, config: SB3SolverConfig, available: int | None = None, bound: str = "") -> MemoryPlan:
    """The plan of a solve; one line if it needs more than :data:`MEMORY_MARGIN` of the memory available (default:
    :func:`memory_available`), stating the estimate and settings that would fit."""
    plan = plan_memory(sizes, config)
    if available is None:
        available, bound = memory_available()
    if available is None:
        return plan
    budget = int(MEMORY_MARGIN * available)
    if plan.total <= budget:
        return plan
    fitting = _fitting_settings(sizes, config, budget)
    if fitting is not None:
        advice = f"settings that would fit: solver_kwargs {_flow(fitting)}"
    else:
        advice = (
            f"no smaller n_envs, eval_episodes or network fits: each agent's observation is {sizes.obs_width:,} values; "
            "make the observations smaller (e.g. SuperSuit's resize_v1 or color_reduction_v0 in env_wrapper) or use a "
            "machine with more memory"
        )
        if sizes.images and isinstance(sizes.observation_space, spaces.Box) and len(sizes.observation_space.shape) == 1:
            advice += "; or read the images as images: solver_kwargs.policy CnnPolicy"
    raise ConfigError(
        f"a solve needs about {_gb(plan.total)} of memory, more than the {_gb(budget)} it may use "
        f"({MEMORY_MARGIN:.0%} of the {_gb(available)} available, {bound}): {plan.describe()}; {advice}"
    )


@dataclass
class SB3Solvers(Solvers):
    """The sampled bundle: π^Φ is a :class:`~sb3_neppo.policy.PolicyProfile` of one shared SB3 policy, a best response
    an SB3 policy; warm starts travel as their state dicts; one solve's env steps are planned from the settings."""

    env_fn: EnvFn | None = None
    env: ParallelEnv | None = None  # one copy, to read the spaces, the episode length and a normal-form game's strategies
    config: SB3SolverConfig | None = None
    seed: int = 0
    _episode_length: int | None = None

    @property
    def name(self) -> str:
        return "sb3"

    @property
    def episode_length(self) -> int:
        """The env's episode length (its ``max_cycles``-like attribute, or one probe episode: :mod:`sb3_neppo.defaults`)."""
        if self._episode_length is None:
            self._episode_length = episode_length(self.env) or PROBE_STEPS
        return self._episode_length

    def solve_cost(self, n_agents: int) -> dict[str, int]:
        config = self.config
        return {
            "cooperative": config.coop_updates * config.n_envs * config.n_steps(),
            "best_responses": n_agents * config.br_updates * config.envs(True) * config.n_steps(best_response=True),
            "evaluation": config.eval_episodes * (n_agents + 1) * self.episode_length,
            "episode_length": self.episode_length,
        }

    @property
    def best_response_every(self) -> int:
        return self.config.br_every

    def best_response_budget(self) -> dict[str, Any]:
        config = self.config
        steps = config.envs(best_response=True) * config.n_steps(best_response=True)
        algo = config.algorithm(best_response=True).__name__
        return {
            "ppo_updates": config.br_updates,
            "env_steps": config.br_updates * steps,
            "warm_start": config.br_warm_start,
            "every": config.br_every,
            "algo": algo,
        }

    def encode(self, policy: PolicyProfile | None, best_responses: Mapping[str, ActorCriticPolicy]) -> Any:
        if policy is None:
            return None, dict(best_responses)
        return self.cooperative.state_of(policy), {a: p.state_dict() for a, p in best_responses.items()}

    def decode(self, state: Any) -> tuple[PolicyProfile | None, dict[str, ActorCriticPolicy]]:
        policy, best_responses = state
        if policy is None:
            return None, dict(best_responses)
        cooperative = self.cooperative
        best = {a: cooperative.policy_from_state(sd) for a, sd in best_responses.items()}
        return cooperative.profile_from_state(policy), best

    def factory(self) -> Callable[[], Solvers]:
        return functools.partial(sb3_solvers, self.env_fn, self.config, self.seed)

    def strategies(self, policy: PolicyProfile) -> list[np.ndarray] | None:
        """Read off the learned policy: its (mean) action in mixed mode, its action probabilities in pure mode (one-hot
        of the most likely action when the solvers play deterministically)."""
        matrix = self.env.unwrapped
        if not isinstance(matrix, MatrixGameEnv):
            return None
        observations, _ = self.env.reset(seed=self.seed)
        agents, n_actions = self.env.possible_agents, matrix.game.n_actions
        if matrix.mixed:
            actions = policy.act(observations, deterministic=True)
            return [strategy_from_action(actions[a], k) for a, k in zip(agents, n_actions)]
        strategies = []
        for agent, k in zip(agents, n_actions):
            probs = policy.action_probabilities(agent, observations[agent])[:k]
            strategies.append(np.eye(k)[int(np.argmax(probs))] if self.config.deterministic else probs / probs.sum())
        return strategies

    def regret(self, policy: PolicyProfile) -> np.ndarray | None:
        strategies = self.strategies(policy)
        return None if strategies is None else self.env.unwrapped.game.regret(strategies)


def sb3_solvers(
    env_fn: EnvFn,
    config: SB3SolverConfig | Mapping[str, Any] | None = None,
    seed: int = 0,
    logged_state: int | None = None,
) -> SB3Solvers:
    """The three sampled slots for the parallel env built by ``env_fn`` (picklable, for workers: e.g. a
    ``functools.partial`` of :func:`~sb3_neppo.envs.make_env`), after a check that a solve fits in memory
    (:func:`check_memory`; ``logged_state``: see :func:`memory_sizes`)."""
    if not isinstance(config, SB3SolverConfig):
        config = SB3SolverConfig.from_dict(config)
    env = env_fn()
    check_memory(memory_sizes(env_fn, env, config, logged_state), config)
    cooperative = PPOCooperativeSolver(env_fn, config, seed)
    return SB3Solvers(
        cooperative=cooperative,
        best_response=PPOBestResponseSolver(env_fn, cooperative.view, config, seed + 1),
        evaluator=rollout_evaluator(env_fn, config, cooperative.view, seed + 2),
        exact=False,
        env_fn=env_fn,
        env=env,
        config=config,
        seed=seed,
    )
