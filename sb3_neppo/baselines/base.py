"""The common shape of the baselines: a multi-agent algorithm built from SB3 parts that returns a joint policy.

Every baseline ends in the same currency as NePPO: a :class:`~sb3_neppo.policy.PolicyProfile` of SB3
``ActorCriticPolicy`` actors on the shared :class:`~sb3_neppo.envs.view.AgentView` (padded observations, agent
indicator), with the network of the best responses' PPO. So the regret evaluator scores NePPO and the baselines alike,
and warm-starts each agent's best response from that agent's own actor.
"""

from __future__ import annotations

import os
import random
import time
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pettingzoo import ParallelEnv
from stable_baselines3.common.policies import ActorCriticPolicy
from tqdm.auto import tqdm

from sb3_neppo.archive import describe, read_archive, write_archive
from sb3_neppo.config import SB3SolverConfig
from sb3_neppo.defaults import baseline_settings
from sb3_neppo.envs.backend import backend_for
from sb3_neppo.envs.matrix import strategy_from_action
from sb3_neppo.envs.registry import check_importable
from sb3_neppo.envs.view import AgentView
from sb3_neppo.envs.wrapping import check_wrappers_importable
from sb3_neppo.errors import ConfigError
from sb3_neppo.hyperparams_files import merge_hyperparams
from sb3_neppo.model import Callback, MultiAgentModel
from sb3_neppo.policy import Memory, PolicyProfile, frozen_copy
from sb3_neppo.version import __version__


class MultiAgentAlgorithm(MultiAgentModel):
    """A baseline multi-agent algorithm on a PettingZoo parallel env or VMAS scenario (SB3-style API).

    Subclasses set ``algo`` and ``config_class`` and implement :meth:`_setup`, :meth:`_train_round` (one round of
    training: an update or a batch of updates), :meth:`actors`, the weights they save, and for checkpoints
    :meth:`_restart_envs` and their training state (:meth:`_get_training_state`).

    **Checkpoints** (:meth:`save_checkpoint`, :meth:`load_checkpoint`): a run killed at any moment and resumed from its
    last checkpoint ends with the same numbers as an uninterrupted run (same seed, same machine: bit-identical weights
    and logged returns). A checkpoint holds every network, every optimiser's state, every random generator that later
    numbers depend on (torch, numpy's and Python's global ones, which SB3 draws from, the algorithm's own and VMAS's),
    the counters and schedule, and MADDPG's replay buffer (its filled part). What it cannot hold is the envs' state:
    a PettingZoo env is arbitrary Python, and only pickle could write it (never used here: loading a file must not run
    code). So checkpoints are taken at deterministic *boundaries* instead: the first round that ends at or past each
    multiple of ``checkpoint_freq`` env steps. There the training envs start new episodes from seeds derived from
    (seed, boundary index), in every run, checkpointed or not; a resumed run starts the same episodes, so both runs see
    the same env streams. For the PPO learners such a restart is a time-limit cut (the round just collected already
    bootstrapped from the last observations' values); MADDPG's stored transitions stay true ones (the last of them
    ends at the observation that followed it). This needs only that ``env.reset(seed=s)`` makes an episode a function
    of s, as PettingZoo asks of every env. The random state at a boundary is kept: the callback of that round (and
    anything done between two ``learn`` calls) cannot change the numbers training goes on with.

    :param env: env id (see :func:`sb3_neppo.envs.make_env`) or a PettingZoo parallel env.
    :param env_kwargs: the env's keyword arguments.
    :param config: the algorithm's settings (a mapping of its config dataclass's keys, or the dataclass).
    :param seed: random seed (None: drawn, and recorded).
    :param verbose: 1: one line per logged round.
    """

    config_class: ClassVar[type]

    def __init__(
        self, env: ParallelEnv | str, env_kwargs: Mapping | None = None, config: Any = None, seed: int | None = None, verbose=0
    ):
        self._set_env(env, dict(env_kwargs or {}), seed)
        self.verbose = verbose
        self.default_timesteps: int | None = None  # the hyperparameter file's n_timesteps: what learn() runs by default
        if not isinstance(config, self.config_class):  # the settings the command line would give (sb3_neppo.defaults)
            settings = baseline_settings(self.algo, self.config_class, self.env, self.env_id, config or {})
            if settings.get("env_wrapper"):  # sized again on the env as the learners see it
                self._wrap_env(settings["env_wrapper"])
                settings = baseline_settings(self.algo, self.config_class, self.env, self.env_id, config or {})
            self.default_timesteps = settings.pop("n_timesteps", None)  # the command line's budget, not a setting
            config = self.config_class.from_dict(settings)
        else:
            self._wrap_env(config.env_wrapper)
        self.config = config
        self.view = AgentView.for_policy(self.env, self.config.policy_name(), squash=self.config.squash_actions)
        self.num_timesteps = 0
        self.num_rounds = 0
        self.wall_time_s = 0.0
        self.returns: dict[str, float] = {}  # mean true episode return per agent, last logged round
        self._progress_remaining = 1.0
        self._schedule: tuple[int, int] | None = None  # (first, end) env step of the last learn() call's schedule
        self._learn_clock: float | None = None  # perf_counter() when the learn() call in progress started
        self._setup()
        self._boundary: int | None = None  # the checkpoint boundary the run stands at (None: between two)
        self._boundary_rng: dict[str, Any] = {}
        self._mark_boundary(0)  # a model that has not trained stands at boundary 0 (its construction)

    # --- what a baseline provides ------------------------------------------------------------------------------------

    @abstractmethod
    def _setup(self) -> None:
        """Build the env(s), networks and optimisers (called once by ``__init__``)."""

    @abstractmethod
    def _train_round(self) -> dict[str, Any]:
        """Collect and learn one round; return a log with at least ``env_steps`` (this round's) and ``returns``
        (agent -> mean true return of the episodes that ended in it; may be empty)."""

    @abstractmethod
    def actors(self) -> dict[str, ActorCriticPolicy]:
        """Each agent's current actor (the same object for agents that share one), as a policy on ``self.view``."""

    @abstractmethod
    def get_weights(self) -> dict[str, Any]:
        """Every trained tensor, as nested dicts of tensors (what :meth:`save` writes)."""

    @abstractmethod
    def set_weights(self, weights: dict[str, Any]) -> None:
        """Restore :meth:`get_weights`' output."""

    @abstractmethod
    def _restart_envs(self, seed: int) -> None:
        """Start new episodes in every training env copy: seed the training VecEnv with ``seed``, reset it, and forget
        what the current episodes left (episode starts, agents gone)."""

    @abstractmethod
    def _get_training_state(self) -> dict[str, Any]:
        """What a continued run needs besides :meth:`get_weights` and the global random state: nested dicts, lists and
        tuples of tensors and plain values (``torch.save``-able and ``weights_only``-loadable)."""

    @abstractmethod
    def _set_training_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`_get_training_state`'s output; a malformed one raises (any exception: the loader reports it
        in one line)."""

    # --- the shared machinery ----------------------------------------------------------------------------------------

    def _on_vmas(self) -> bool:
        return backend_for(self.env, self.env_fn).vmas_random_state

    def _boundary_seed(self, index: int) -> int:
        """The seed the training envs restart from at checkpoint boundary ``index`` (0: the construction's, ``seed``)."""
        if index == 0:
            return self.seed
        return int(np.random.SeedSequence([self.seed % 2**64, index]).generate_state(1)[0] % 2**31)

    def _mark_boundary(self, index: int) -> None:
        self._boundary, self._boundary_rng = index, rng_snapshot(self._on_vmas(), self.view.action_space)

    def learn(
        self,
        total_timesteps: int | None = None,
        callback: Callback | Sequence[Callback] | None = None,
        progress_bar: bool = False,
    ):
        """Train for ``total_timesteps`` more env steps (every copy's step counts; stops after the round that crosses
        it; None: the hyperparameter file's ``n_timesteps``). ``callback(log, model)`` (or each of a list) is called after
        every round; returning False stops training.

        A round's ``log`` has ``env_steps`` (the round's), ``total_env_steps``, ``round``, ``returns`` (agent -> mean
        true return of the episodes that ended in the round), the algorithm's own entries (losses) and ``checkpoint``:
        True when the round ended at a checkpoint boundary (``config.checkpoint_freq``), i.e. the training envs have
        just started new episodes and :meth:`save_checkpoint` may write the state, from the callback or after
        ``learn`` returned. The random state of such a round is restored after its callback, so what the callback
        draws does not change the run.

        SB3 schedules (``progress_remaining``) run from 1 to 0 over the call. Asked for the env steps the last call
        had left when it stopped (:attr:`timesteps_left`: after a callback stopped it, or in a model that
        :meth:`load_checkpoint` read), the call continues that call's schedule, so a resumed run is the same run.
        """
        if total_timesteps is None:
            if self.default_timesteps is None:
                raise ConfigError(
                    f"{type(self).__name__}.learn needs total_timesteps (env steps): this env has no n_timesteps setting"
                )
            total_timesteps = self.default_timesteps
        callbacks = self._callbacks(callback)
        if isinstance(total_timesteps, bool) or int(total_timesteps) != total_timesteps or total_timesteps < 1:
            raise ConfigError(f"total_timesteps must be an integer >= 1 (got {total_timesteps})")
        first, end = self.num_timesteps, self.num_timesteps + int(total_timesteps)
        if self._schedule is not None and self._schedule[0] <= first < self._schedule[1] == end:
            first = self._schedule[0]  # the rest of a checkpointed call: its schedule goes on
        self._schedule = (first, end)
        if self._boundary is not None:  # nothing done since the boundary changes the numbers
            restore_rng(self._boundary_rng, self.view.action_space)
        start, start_steps = time.perf_counter(), self.num_timesteps
        self._learn_clock = start
        bar = tqdm(total=int(total_timesteps), desc=self.algo.upper(), unit="env-step", disable=not progress_bar)
        freq = self.config.checkpoint_freq
        try:
            while self.num_timesteps < end:
                self._progress_remaining = 1.0 - (self.num_timesteps - first) / (end - first)  # SB3 schedules
                self._boundary = None
                log = self._train_round()
                before = self.num_timesteps
                self.num_timesteps += int(log["env_steps"])
                self.num_rounds += 1
                checkpoint = bool(freq) and self.num_timesteps // freq > before // freq
                if checkpoint:
                    self._restart_envs(self._boundary_seed(self.num_timesteps // freq))
                    self._mark_boundary(self.num_timesteps // freq)
                if log["returns"]:
                    self.returns = {a: float(r) for a, r in log["returns"].items()}
                log = {**log, "round": self.num_rounds, "total_env_steps": self.num_timesteps, "checkpoint": checkpoint}
                bar.update(min(self.num_timesteps - start_steps, int(total_timesteps)) - bar.n)
                if self.returns:
                    bar.set_postfix({a: f"{r:.3g}" for a, r in list(self.returns.items())[:4]})
                if self.verbose:
                    tqdm.write(self._format(log))
                try:
                    stop = not self._call(callbacks, log, self)
                finally:
                    if checkpoint:
                        restore_rng(self._boundary_rng, self.view.action_space)
                if stop:
                    break
        finally:
            bar.close()
            self.wall_time_s += time.perf_counter() - start
            self._learn_clock = None
        return self

    @property
    def timesteps_left(self) -> int:
        """Env steps the last ``learn`` call (for a model from :meth:`load_checkpoint`: the call its checkpoint was
        written in) had left when it stopped: ``learn(model.timesteps_left)`` finishes it, schedule included; 0 when
        it ran to its end or there was none."""
        return 0 if self._schedule is None else max(self._schedule[1] - self.num_timesteps, 0)

    def _format(self, log: dict) -> str:
        returns = " ".join(f"{a}={r:.3f}" for a, r in log["returns"].items())
        return f"{self.algo} round {log['round']}: {log['total_env_steps']} env steps  {returns}"

    def joint_policy(self) -> PolicyProfile:
        """The trained joint policy, frozen (training on never changes it)."""
        copies: dict[int, ActorCriticPolicy] = {}  # one copy per distinct actor: agents that share one still do
        for policy in self.actors().values():
            if id(policy) not in copies:
                copies[id(policy)] = frozen_copy(policy)
        return PolicyProfile(self.view, {a: copies[id(p)] for a, p in self.actors().items()})

    def _act(self, observation: dict, deterministic: bool, memory: Memory | None = None, masks=None) -> dict[str, Any]:
        rng = None if deterministic else np.random.default_rng(self.seed)
        return PolicyProfile(self.view, self.actors()).act(observation, deterministic, rng, memory, masks=masks)

    def strategies(self) -> list[np.ndarray] | None:
        """In a normal-form game, each agent's mixed strategy (its action probabilities, or in mixed mode the strategy
        its most likely action plays); None in a Markov game."""
        game = self.game
        if game is None:
            return None
        profile = PolicyProfile(self.view, self.actors())
        obs = self.env.reset(seed=self.seed)[0]
        if not self.env.unwrapped.mixed:
            return [profile.action_probabilities(a, obs[a]) for a in self.agents]
        actions = profile.act(obs, deterministic=True)
        return [strategy_from_action(actions[a], k) for a, k in zip(self.agents, game.n_actions)]

    def regret_solver_config(self) -> SB3SolverConfig:
        """The best responses' algorithm for the regret evaluator: this baseline's (``algo``, ``policy``, ``ppo``), so a
        best response can start from an agent's actor."""
        c = self.config
        return SB3SolverConfig(n_envs=c.n_envs, gamma=c.gamma, ppo=dict(c.ppo), device=c.device, algo=c.algo, policy=c.policy)

    def summary(self) -> dict[str, Any]:
        """The run summary (the schema of NePPO's ``summary.json`` where the fields mean the same)."""
        out = self._summary_head(self.num_rounds)
        out.update(returns=self.returns, **self._regret_fields(None, None), hyperparams=self.config.to_dict())
        strategies = self.strategies()
        if strategies is not None:
            out.update(self._regret_fields(self.game.regret(strategies), "exact"))
        out.update(self._strategy_fields(strategies))
        return out

    def _data(self) -> dict[str, Any]:
        """``data.json``: the settings and counters."""
        wall = self.wall_time_s + (time.perf_counter() - self._learn_clock if self._learn_clock is not None else 0.0)
        return {
            "algo": self.algo,
            "version": __version__,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs,
            "config": self.config.to_dict(),
            "seed": self.seed,
            "num_timesteps": self.num_timesteps,
            "num_rounds": self.num_rounds,
            "wall_time_s": wall,
            "returns": self.returns,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the model to a zip file atomically: ``data.json`` (settings, counters) and ``weights.pt``.

        A model is what is needed to act and to train on (``-i``), with fresh optimiser state and an empty replay
        buffer; :meth:`save_checkpoint` writes the full training state."""
        write_archive(path, self._data(), {"weights.pt": self.get_weights()})

    @classmethod
    def load(cls, path: str | os.PathLike, env: ParallelEnv | str | None = None, config: Mapping[str, Any] | None = None):
        """Load a saved model (weights only, read safely: ``torch.load(weights_only=True)``); a file that is not one
        (truncated, corrupt, altered) is one :class:`~sb3_neppo.errors.ConfigError` line. A checkpoint loads too (as
        a model: its weights and counters).

        :param config: settings to change (merged key by key into the saved ones, as ``-params`` does); the networks
            must stay the same.
        :param env: the saved env id, to allow importing its module (see
            :func:`~sb3_neppo.envs.registry.check_importable`), or the env itself for a model built from an instance."""
        files = read_archive(path, ("data.json", "weights.pt"))
        data, weights = files["data.json"], files["weights.pt"]
        if config and isinstance(data, dict) and isinstance(data.get("config"), dict):
            data = {**data, "config": merge_hyperparams(data["config"], dict(config))}
        model = cls._from_data(path, data, "model", env)
        try:
            model.set_weights(weights)
        except Exception as exc:
            message = f"weights.pt does not fit a {cls.algo} model ({describe(exc)})"
            raise ConfigError(f"cannot load model {path}: {message}") from None
        model._restore_counters(data)
        return model

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write the full training state to a zip file atomically (a kill leaves the previous file or this one):
        ``data.json`` (settings, counters, boundary, schedule), ``weights.pt`` (as :meth:`save`) and ``training.pt``
        (optimisers, random generators, the replay buffer). :meth:`load_checkpoint` continues from it exactly.

        Only at a checkpoint boundary (see the class docstring): from the callback of a round whose log has
        ``checkpoint`` True, after ``learn`` returned from such a round, or before training."""
        if self._boundary is None:
            raise ConfigError(
                "save_checkpoint is possible only at a checkpoint boundary: in the callback of a round whose log has "
                f"checkpoint=True (every checkpoint_freq={self.config.checkpoint_freq} env steps), or before training"
            )
        data = {**self._data(), "checkpoint": {"format": CHECKPOINT_FORMAT, "boundary": self._boundary}}
        data["checkpoint"]["schedule"] = None if self._schedule is None else list(self._schedule)
        state = {"rng": self._boundary_rng, "algo": self._get_training_state()}
        write_archive(path, data, {"weights.pt": self.get_weights(), "training.pt": state}, stream=True)

    @classmethod
    def load_checkpoint(cls, path: str | os.PathLike, env: ParallelEnv | str | None = None):
        """Load a checkpoint that :meth:`save_checkpoint` wrote, in this process or a new one, ready to ``learn`` on
        exactly as the run that wrote it would have: the training envs restart the boundary's episodes, every random
        generator, optimiser and counter is as it was. ``learn(model.timesteps_left)`` finishes the interrupted run.

        Read safely (JSON and ``torch.load(weights_only=True)``, never pickle); a file that is not a checkpoint
        (a model, truncated, corrupt, altered) is one :class:`~sb3_neppo.errors.ConfigError` line."""
        data = read_archive(path, ("data.json",), kind="checkpoint")["data.json"]
        if isinstance(data, dict) and data.get("algo", "neppo") != cls.algo:
            raise ConfigError(f"{path} holds a {data.get('algo', 'neppo')} model, not {cls.algo}")
        if isinstance(data, dict) and "checkpoint" not in data:
            raise ConfigError(f"{path} is a saved model, not a training checkpoint (load() reads models)")
        files = read_archive(path, ("weights.pt", "training.pt"), kind="checkpoint")
        model = cls._from_data(path, data, "checkpoint", env)
        checkpoint = data.get("checkpoint")
        freq = model.config.checkpoint_freq
        try:
            if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"data.json has no checkpoint entry of format {CHECKPOINT_FORMAT}")
            boundary, schedule = checkpoint.get("boundary"), checkpoint.get("schedule")
            # the boundary the run last crossed, or 0: a model that has not trained since its construction or load()
            if boundary not in (0, data["num_timesteps"] // freq if freq else 0) or not _is_count(boundary):
                raise ValueError(f"boundary {boundary!r} is not the run's at {data['num_timesteps']} env steps")
            if schedule is not None and not (
                isinstance(schedule, list) and len(schedule) == 2 and all(_is_count(x) for x in schedule)
            ):
                raise ValueError(f"bad schedule {schedule!r}")
            state = files["training.pt"]
            if not isinstance(state, dict):
                raise ValueError("training.pt is not a mapping")
            model.set_weights(files["weights.pt"])
            model._set_training_state(state["algo"])
            model._restart_envs(model._boundary_seed(boundary))
            restore_rng(state["rng"], model.view.action_space)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"cannot load checkpoint {path}: {describe(exc)}") from None
        model._restore_counters(data)
        model._boundary, model._boundary_rng = boundary, state["rng"]
        model._schedule = None if schedule is None else (schedule[0], schedule[1])
        return model

    @classmethod
    def _from_data(cls, path: str | os.PathLike, data: Any, kind: str, env: ParallelEnv | str | None = None):
        """A model built from a saved ``data.json`` (checked first: one line if it is not one of this algorithm); its
        env module is imported only if ``env`` names it or :func:`~sb3_neppo.envs.registry.check_importable` allows."""
        if not isinstance(data, dict):
            raise ConfigError(f"cannot load {kind} {path}: data.json is not a mapping")
        if data.get("algo", "neppo") != cls.algo:
            raise ConfigError(f"{path} holds a {data.get('algo', 'neppo')} model, not {cls.algo}")
        for key, types in DATA_FIELDS.items():
            value = data.get(key)
            if key not in data or not isinstance(value, types) or isinstance(value, bool) or (types is int and value < 0):
                raise ConfigError(f"cannot load {kind} {path}: data.json's {key} is {value!r}")
        if not all(isinstance(r, (int, float)) for r in data["returns"].values()):
            raise ConfigError(f"cannot load {kind} {path}: data.json's returns are not numbers")
        if env is None and data["env_id"] is None:
            raise ConfigError(f"{path} was built from an env object, which is not saved: pass env=<the env> to load")
        if env is None:
            check_importable(data["env_id"], path)
            check_wrappers_importable(data["config"].get("env_wrapper"), path)
        elif isinstance(env, str) and env != data["env_id"]:
            raise ConfigError(f"{path} was trained on {data['env_id']}, not {env}")
        by_id = env is None or isinstance(env, str)
        try:
            return cls(data["env_id"] if by_id else env, data["env_kwargs"] if by_id else None, data["config"], data["seed"])
        except Exception as exc:  # a ConfigError too: say which file
            message = f"its settings do not build a {cls.algo} model ({describe(exc)})"
            raise ConfigError(f"cannot load {kind} {path}: {message}") from None

    def _restore_counters(self, data: dict) -> None:
        self.num_timesteps, self.num_rounds = int(data["num_timesteps"]), int(data["num_rounds"])
        self.wall_time_s, self.returns = float(data["wall_time_s"]), {a: float(r) for a, r in data["returns"].items()}

    def close(self) -> None:
        """Release the env this model reads its spaces from (subclasses also close their training envs)."""
        self.env.close()


CHECKPOINT_FORMAT = 1
DATA_FIELDS: dict[str, type | tuple[type, ...]] = {
    "env_id": (str, type(None)),
    "env_kwargs": dict,
    "config": dict,
    "seed": int,
    "num_timesteps": int,
    "num_rounds": int,
    "wall_time_s": (int, float),
    "returns": dict,
}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- the global random state ------------------------------------------------------------------------------------------


def rng_snapshot(vmas: bool = False, space: Any = None) -> dict[str, Any]:
    """The random generators outside a model that training draws from, as tensors and plain values (what
    ``training.pt`` holds): torch's, numpy's legacy global one and Python's (SB3 seeds and draws from these: action
    sampling, minibatch order), the generator of ``space`` (SB3 seeds the learners' action space) and, with ``vmas``,
    VMAS's process-wide random state (its resets draw from it)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "random": random.getstate(),
        "space": None,
    }
    generator = getattr(space, "_np_random", None)
    if generator is not None:
        state["space"] = generator.bit_generator.state
    if vmas:
        from vmas.simulator.environment.environment import Environment

        torch_state, (name, keys, pos, has_gauss, cached), python_state = Environment.vmas_random_state
        numpy_state = (name, torch.from_numpy(np.asarray(keys).astype(np.int64)), int(pos), int(has_gauss), float(cached))
        state["vmas"] = (torch_state.clone(), numpy_state, python_state)
    return state


def _numpy_state(saved: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = saved
    return name, keys.numpy().astype(np.uint32), pos, has_gauss, cached


def restore_rng(state: dict[str, Any], space: Any = None) -> None:
    """Set the generators :func:`rng_snapshot` read back to ``state``."""
    torch.set_rng_state(state["torch"].clone())
    np.random.set_state(_numpy_state(state["numpy"]))
    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal), gauss))
    if state["space"] is not None and space is not None:
        if getattr(space, "_np_random", None) is None:
            space.seed(0)
        space.np_random.bit_generator.state = state["space"]
    if "vmas" in state:
        from vmas.simulator.environment.environment import Environment

        torch_state, numpy_state, (version, internal, gauss) = state["vmas"]
        vmas_state = [torch_state.clone(), _numpy_state(numpy_state), (version, tuple(internal), gauss)]
        torch.Generator().set_state(vmas_state[0])  # check each before it goes in: VMAS would fail later, mid-run
        np.random.RandomState().set_state(vmas_state[1])
        random.Random().setstate(vmas_state[2])
        Environment.vmas_random_state[:] = vmas_state  # in place: VMAS's reset/step decorators hold this very list
