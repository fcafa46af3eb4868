"""MADDPG: deterministic actors trained by centralised critics (Lowe et al., 2017, "Multi-Agent Actor-Critic for Mixed
Cooperative-Competitive Environments").

Each agent i has an actor μ_i on its own observation (the :class:`~sb3_neppo.envs.view.AgentView` observation: padded,
with the agent indicator) and a critic Q_i(s, a_1, ..., a_N) on the state s (every agent's padded observation, without
the indicator, concatenated) and every agent's action. Q_i learns by TD from a shared replay buffer of joint
transitions, against target networks of all actors and of Q_i; μ_i ascends Q_i in its own action with the others'
actions taken from the buffer; the targets follow by Polyak averaging. Each actor is an SB3 ``ActorCriticPolicy`` built
with the network of the best responses' PPO (``ppo.policy_kwargs``), of which only the actor path is trained (its
value head is unused), so the regret evaluator can warm-start a best response from it with ``load_state_dict``.

Where this departs from the paper (and from its code):

* Discrete actions (mpe2 and VMAS here): the actor outputs logits. Training uses the straight-through Gumbel-softmax
  (``gumbel_softmax(hard=True)``: a one-hot action forward, the relaxed sample's gradient backward), where the paper's
  code feeds the soft relaxed sample to the env and the critics; the envs here take an action index. Collection
  samples from the Gumbel-softmax (the Gumbel-max trick: a draw from softmax(logits)); the deterministic action, and
  the exported policy (a Categorical head on the same logits), is the argmax. The paper's code also penalises the
  squared logits (1e-3); this does not.
* Box actions: the deterministic action is the ``action_net`` mean clipped to the view's bounds, explored with
  Gaussian noise of std ``noise_std`` (the exported policy's ``log_std`` is log(noise_std)).
* Updates come in rounds: ``train_freq`` steps of every env copy, then ``gradient_steps`` updates (the paper's code:
  one update every 100 env steps, from 1024 × 25 stored transitions on, which the ``default`` settings in
  ``hyperparams/maddpg.yml`` reproduce with 16 copies). Gradients are clipped to ``max_grad_norm`` (0.5 in the
  paper's code). One minibatch per update serves every agent (the paper's Algorithm 1 draws one per agent), so the
  target actions are computed once. No policy ensembles and no inferring of the others' policies (the paper's optional
  extensions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.utils import polyak_update, set_random_seed
from torch import nn

from sb3_neppo.baselines.base import MultiAgentAlgorithm
from sb3_neppo.config import BaselineConfig
from sb3_neppo.devices import resolve_device
from sb3_neppo.envs.backend import make_vec_env
from sb3_neppo.errors import ConfigError
from sb3_neppo.policy import frozen_copy
from sb3_neppo.solvers.lockstep import load_optimizer


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class MADDPGConfig(BaselineConfig):
    """MADDPG settings (``hyperparams/maddpg.yml``); see :class:`~sb3_neppo.config.BaselineConfig`.

    :param buffer_size: joint transitions (one per env copy and step) the replay buffer holds.
    :param batch_size: joint transitions per minibatch (one minibatch per update, shared by the agents).
    :param lr: Adam learning rate of the actors and the critics.
    :param tau: Polyak coefficient of the target networks (1: copy).
    :param maddpg_gamma: discount of the critics' TD targets (``gamma`` stays the discount of the reported returns and
        of the regret evaluator).
    :param train_freq: env steps of every copy between updates (25: one MPE episode).
    :param gradient_steps: updates (a critic and an actor step of every agent, then the targets) per round.
    :param learning_starts: transitions (env steps of all copies) in the replay buffer before the first update (a
        model file does not hold the buffer: a loaded model collects them again; a checkpoint does).
    :param noise_std: std of the Gaussian exploration noise of Box actions (and the exported policy's std).
    :param gumbel_temperature: temperature of the Gumbel-softmax relaxation of Discrete actions in the updates.
    :param critic_net_arch: hidden layer sizes of each critic (ReLU MLP).
    :param max_grad_norm: clip each actor's and critic's gradient to this norm (null: no clipping).
    """

    buffer_size: int = 1_000_000
    batch_size: int = 1024
    lr: float = 1e-2
    tau: float = 0.01
    maddpg_gamma: float = 0.95
    train_freq: int = 25
    gradient_steps: int = 4
    learning_starts: int = 25_600
    noise_std: float = 0.1
    gumbel_temperature: float = 1.0
    critic_net_arch: list[int] = field(default_factory=lambda: [64, 64])
    max_grad_norm: float | None = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.require_mlp("MADDPG", ("PPO",))
        for key, minimum in (("buffer_size", 1), ("batch_size", 1), ("train_freq", 1), ("gradient_steps", 1)):
            value = getattr(self, key)
            if not _is_int(value) or value < minimum:
                raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
        if not _is_int(self.learning_starts) or self.learning_starts < 0:
            raise ConfigError(f"learning_starts must be an integer >= 0, got {self.learning_starts!r}")
        if self.buffer_size < self.n_envs:
            raise ConfigError(
                f"buffer_size must be >= n_envs ({self.n_envs}: one transition per copy and step), got {self.buffer_size}"
            )
        for key in ("lr", "noise_std", "gumbel_temperature"):
            value = getattr(self, key)
            if not _is_real(value) or value <= 0:
                raise ConfigError(f"{key} must be a number > 0, got {value!r}")
        if not _is_real(self.tau) or not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"tau must be in (0, 1], got {self.tau!r}")
        if not _is_real(self.maddpg_gamma) or not 0.0 <= self.maddpg_gamma <= 1.0:
            raise ConfigError(f"maddpg_gamma must be in [0, 1], got {self.maddpg_gamma!r}")
        if self.max_grad_norm is not None and (not _is_real(self.max_grad_norm) or self.max_grad_norm <= 0):
            raise ConfigError(f"max_grad_norm must be a number > 0 or null, got {self.max_grad_norm!r}")
        arch = self.critic_net_arch
        if not isinstance(arch, (list, tuple)) or not all(_is_int(n) and n >= 1 for n in arch):
            raise ConfigError(f"critic_net_arch must be a list of layer sizes >= 1 (e.g. [64, 64]), got {arch!r}")
        self.critic_net_arch = list(arch)


class JointReplayBuffer:
    """A ring buffer of joint transitions: every agent's observation (without the indicator), action, reward,
    next observation and terminal flag of one env copy and step.

    Not SB3's ``ReplayBuffer``: it keeps one scalar reward and done flag per env and samples each env slot on its own,
    whereas a MADDPG critic needs a reward and a terminal flag per agent, of one transition sampled as a whole.

    :param capacity: transitions held (the oldest are overwritten).
    :param n_agents: agents N.
    :param obs_dim: width of one agent's padded observation.
    :param action_shape: shape of one agent's stored action (``()``: a Discrete index).
    :param action_dtype: its dtype.
    """

    def __init__(self, capacity: int, n_agents: int, obs_dim: int, action_shape: tuple[int, ...], action_dtype: type):
        self.capacity = int(capacity)
        self.obs = np.zeros((self.capacity, n_agents, obs_dim), np.float32)
        self.next_obs = np.zeros((self.capacity, n_agents, obs_dim), np.float32)
        self.actions = np.zeros((self.capacity, n_agents, *action_shape), action_dtype)
        self.rewards = np.zeros((self.capacity, n_agents), np.float32)
        self.terminals = np.zeros((self.capacity, n_agents), np.float32)
        self.pos = 0
        self.size = 0

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray, terminals: np.ndarray):
        """Store a batch of transitions (leading axis: env copies)."""
        rows = (self.pos + np.arange(len(obs))) % self.capacity
        self.obs[rows], self.actions[rows], self.rewards[rows] = obs, actions, rewards
        self.next_obs[rows], self.terminals[rows] = next_obs, terminals
        self.pos = int((self.pos + len(obs)) % self.capacity)
        self.size = min(self.size + len(obs), self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int) -> tuple[torch.Tensor, ...]:
        """``batch_size`` transitions drawn uniformly with replacement: (obs, actions, rewards, next_obs, terminals)."""
        rows = rng.integers(0, self.size, batch_size)
        arrays = (self.obs, self.actions, self.rewards, self.next_obs, self.terminals)
        return tuple(torch.as_tensor(x[rows]) for x in arrays)

    def _successors(self, size: int, stride: int) -> np.ndarray:
        """For each of ``size`` filled rows, the row ``stride`` further on (where the same env copy's next step went),
        or -1 where that row is not filled."""
        rows = np.arange(size) + stride
        if size == self.capacity:
            return rows % self.capacity
        return np.where(rows < size, rows, -1)

    def get_state(self, stride: int) -> dict[str, Any]:
        """The filled part, as tensors (no copies of the arrays). A next observation that is bit for bit the
        observation ``stride`` rows on (the env copy's next step: every transition but an episode's last) is not
        stored twice, which halves the size.

        :param stride: rows per step (the env copies ``add`` stores at a time).
        """
        n = self.size
        successors = self._successors(n, stride)
        same = np.zeros(n, dtype=bool)
        bits = self.obs.view(np.uint32)
        for lo in range(0, n, 65_536):  # in chunks: the comparison's gather would copy the whole array at once
            hi = min(lo + 65_536, n)
            succ = successors[lo:hi]
            ok = succ >= 0
            equal = (self.next_obs[lo:hi][ok].view(np.uint32) == bits[succ[ok]]).reshape(int(ok.sum()), -1).all(axis=1)
            same[lo:hi][ok] = equal
        kept = np.flatnonzero(~same)
        return {
            "pos": self.pos,
            "size": n,
            "stride": int(stride),
            "obs": torch.from_numpy(self.obs[:n]),
            "actions": torch.from_numpy(self.actions[:n]),
            "rewards": torch.from_numpy(self.rewards[:n]),
            "terminals": torch.from_numpy(self.terminals[:n]),
            "next_obs_rows": torch.from_numpy(kept),
            "next_obs": torch.from_numpy(self.next_obs[kept]),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`get_state`'s output (checked: an altered one raises ``ValueError``)."""
        n, pos, stride = state["size"], state["pos"], state["stride"]
        if not all(_is_int(x) for x in (n, pos, stride)) or not 0 <= n <= self.capacity or stride < 1:
            raise ValueError(f"replay buffer of size {n!r} (stride {stride!r}) in one of capacity {self.capacity}")
        if not (0 <= pos < self.capacity and (n == self.capacity or pos == n % self.capacity)):
            raise ValueError(f"replay buffer position {pos!r} does not fit its size {n}")
        arrays = {"obs": self.obs, "actions": self.actions, "rewards": self.rewards, "terminals": self.terminals}
        for key, array in arrays.items():
            _check_tensor(state[key], key, (n, *array.shape[1:]), array.dtype)
        rows = state["next_obs_rows"]
        _check_tensor(rows, "next_obs_rows", (rows.shape[0],) if isinstance(rows, torch.Tensor) else (), np.int64)
        _check_tensor(state["next_obs"], "next_obs", (rows.shape[0], *self.next_obs.shape[1:]), self.next_obs.dtype)
        rows = rows.numpy()
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise ValueError("replay buffer next_obs_rows outside its filled part")
        successors = self._successors(n, stride)
        stored = np.zeros(n, dtype=bool)
        stored[rows] = True
        if (successors[~stored] < 0).any():
            raise ValueError("replay buffer next observations missing")
        for key, array in arrays.items():
            array[:n] = state[key].numpy()
        for lo in range(0, n, 65_536):
            hi = min(lo + 65_536, n)
            self.next_obs[lo:hi] = self.obs[np.maximum(successors[lo:hi], 0)]
        self.next_obs[rows] = state["next_obs"].numpy()
        self.pos, self.size = pos, n


def _check_tensor(value: Any, name: str, shape: tuple[int, ...], dtype: Any) -> None:
    if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(shape) or value.numpy().dtype != np.dtype(dtype):
        got = f"{tuple(value.shape)} {value.dtype}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"replay buffer {name} is {got}, not {tuple(shape)} {np.dtype(dtype)}")


def actor_output(policy: ActorCriticPolicy, obs: torch.Tensor) -> torch.Tensor:
    """The actor path of an SB3 ``ActorCriticPolicy``: its ``action_net`` output (logits, or the Gaussian mean)."""
    features = BasePolicy.extract_features(policy, obs, policy.pi_features_extractor)
    return policy.action_net(policy.mlp_extractor.forward_actor(features))


class MADDPG(MultiAgentAlgorithm):
    """MADDPG with per-agent actors and centralised critics (see the module docstring).

    :param env: env id (see :func:`sb3_neppo.envs.make_env`).
    :param env_kwargs: the env's keyword arguments.
    :param config: the settings (:class:`MADDPGConfig` or a mapping of its keys).
    :param seed: random seed (None: drawn, and recorded).
    :param verbose: 1: one line per logged round.
    """

    algo = "maddpg"
    config_class = MADDPGConfig
    config: MADDPGConfig

    def _setup(self) -> None:
        cfg = self.config
        if cfg.device != "auto" and resolve_device(cfg.device) != "cpu":  # its networks and buffer live on the CPU
            raise ConfigError(f"MADDPG runs on the CPU (its networks are not moved to {cfg.device}); use device: cpu")
        self.venv = make_vec_env(self.env_fn, cfg.n_envs, self.view, env=self.env)
        set_random_seed(self.seed)
        self._rng = np.random.default_rng(self.seed)
        space = self.view.action_space
        self.discrete = isinstance(space, spaces.Discrete)
        self.action_dim = int(space.n) if self.discrete else int(np.prod(space.shape))
        if not self.discrete:
            self._low = np.asarray(space.low, np.float32).reshape(-1)
            self._high = np.asarray(space.high, np.float32).reshape(-1)
            self._low_t, self._high_t = torch.as_tensor(self._low), torch.as_tensor(self._high)
        n, obs_dim = len(self.agents), self.view.obs_dim
        policy_kwargs = dict(cfg.ppo.get("policy_kwargs") or {})
        self._actors: dict[str, ActorCriticPolicy] = {}
        self._critics: dict[str, nn.Sequential] = {}
        for agent in self.agents:
            try:
                actor = ActorCriticPolicy(self.view.observation_space, space, lambda _: cfg.lr, **policy_kwargs)
            except TypeError as exc:
                raise ConfigError(f"bad ppo.policy_kwargs for the MADDPG actors: {exc}") from None
            if not self.discrete:
                with torch.no_grad():
                    actor.log_std.fill_(math.log(cfg.noise_std))
            self._actors[agent] = actor
            self._critics[agent] = nn.Sequential(*create_mlp(n * (obs_dim + self.action_dim), 1, cfg.critic_net_arch))
        self._target_actors = {a: frozen_copy(p) for a, p in self._actors.items()}
        self._target_critics: dict[str, nn.Sequential] = {}
        for agent, critic in self._critics.items():
            target = nn.Sequential(*create_mlp(n * (obs_dim + self.action_dim), 1, cfg.critic_net_arch))
            target.load_state_dict(critic.state_dict())
            self._target_critics[agent] = target.requires_grad_(False)
        self._actor_params = {a: self._actor_parameters(p) for a, p in self._actors.items()}
        self._actor_optimizers = {a: torch.optim.Adam(self._actor_params[a], lr=cfg.lr) for a in self.agents}
        self._critic_optimizers = {a: torch.optim.Adam(c.parameters(), lr=cfg.lr) for a, c in self._critics.items()}
        action_shape = () if self.discrete else (self.action_dim,)
        self.buffer = JointReplayBuffer(cfg.buffer_size, n, obs_dim, action_shape, np.int64 if self.discrete else np.float32)
        self._indicator = torch.eye(n) if self.view.agent_indicator else torch.zeros(n, 0)
        self.venv.seed(self.seed)
        self._last_obs = self.venv.reset()
        self._gone = np.zeros(self.venv.num_envs, dtype=bool)  # slots whose agent left before its copy's episode ended

    @staticmethod
    def _actor_parameters(policy: ActorCriticPolicy) -> list[nn.Parameter]:
        """The parameters on the actor path (the value head and ``log_std`` are not trained)."""
        modules = (policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net)
        params = {id(p): p for m in modules for p in m.parameters()}
        return list(params.values())

    # --- acting -----------------------------------------------------------------------------------------------------

    def _deterministic(self, policy: ActorCriticPolicy, obs: torch.Tensor) -> torch.Tensor:
        """Logits (Discrete) or the clipped mean action (Box) of ``policy`` at view observations ``obs``."""
        out = actor_output(policy, obs)
        return out if self.discrete else torch.clamp(out, self._low_t, self._high_t)

    def _relaxed(self, policy: ActorCriticPolicy, obs: torch.Tensor) -> torch.Tensor:
        """The action the critics read: a straight-through Gumbel-softmax one-hot (Discrete) or the clipped mean."""
        out = self._deterministic(policy, obs)
        return F.gumbel_softmax(out, tau=self.config.gumbel_temperature, hard=True) if self.discrete else out

    def _explore(self, obs: np.ndarray) -> np.ndarray:
        """Exploration actions for every slot from the slots' observations ``[C·N, W]``."""
        n = len(self.agents)
        batch = torch.as_tensor(obs.reshape(-1, n, obs.shape[-1]))
        with torch.no_grad():
            out = torch.stack([self._deterministic(self._actors[a], batch[:, i]) for i, a in enumerate(self.agents)], 1)
        out = out.numpy().astype(np.float64)
        if self.discrete:  # a Gumbel-softmax sample: Gumbel-max, i.e. a draw from softmax(logits)
            return (out + self._rng.gumbel(size=out.shape)).argmax(-1).reshape(-1)
        noisy = out + self.config.noise_std * self._rng.standard_normal(out.shape)
        return np.clip(noisy, self._low, self._high).astype(np.float32).reshape(-1, self.action_dim)

    # --- training ---------------------------------------------------------------------------------------------------

    def _train_round(self) -> dict[str, Any]:
        cfg, n, obs_dim = self.config, len(self.agents), self.view.obs_dim
        copies = self.venv.num_envs // n
        finished: dict[str, list[float]] = {a: [] for a in self.agents}
        for _ in range(cfg.train_freq):
            obs = self._last_obs
            actions = self._explore(obs)
            new_obs, rewards, dones, infos = self.venv.step(actions)
            next_obs = new_obs.copy()
            truncated = np.zeros_like(dones)
            for k in np.flatnonzero(dones):
                next_obs[k] = infos[k]["terminal_observation"]  # new_obs[k] is already the next episode's
                truncated[k] = bool(infos[k].get("TimeLimit.truncated", False))
                if "episode" in infos[k]:
                    finished[self.agents[k % n]].append(float(infos[k]["episode"]["true_r"]))
            # a time-limit cut bootstraps from the terminal observation; a true end, or an agent already gone, does not
            terminals = (dones & ~truncated) | self._gone
            self.buffer.add(
                obs[:, :obs_dim].reshape(copies, n, obs_dim),
                actions.reshape(copies, n, *actions.shape[1:]),
                rewards.reshape(copies, n),
                next_obs[:, :obs_dim].reshape(copies, n, obs_dim),
                terminals.reshape(copies, n),
            )
            copy_over = np.repeat(dones.reshape(copies, n).all(axis=1), n)
            self._gone = (self._gone | dones) & ~copy_over
            self._last_obs = new_obs
        steps = copies * cfg.train_freq
        log: dict[str, Any] = {"env_steps": steps, "critic_loss": None, "actor_loss": None}
        if self.buffer.size >= min(cfg.learning_starts, self.buffer.capacity):  # a loaded model refills its buffer first
            losses = np.array([self._update() for _ in range(cfg.gradient_steps)])
            log["critic_loss"], log["actor_loss"] = float(losses[:, 0].mean()), float(losses[:, 1].mean())
        log["returns"] = {a: float(np.mean(r)) for a, r in finished.items() if r}
        return log

    def _actor_inputs(self, obs: torch.Tensor) -> torch.Tensor:
        """Stored observations ``[B, N, obs_dim]`` as the actors see them (with the agent indicator)."""
        return torch.cat([obs, self._indicator.expand(obs.shape[0], -1, -1)], dim=2)

    def _clip(self, params) -> None:
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)

    def _update(self) -> tuple[float, float]:
        """One MADDPG update (the paper's Algorithm 1, inner loop) on one minibatch: for each agent a critic step and an
        actor step; then every target network. Returns the mean critic and actor losses."""
        cfg = self.config
        obs, actions, rewards, next_obs, terminals = self.buffer.sample(self._rng, cfg.batch_size)
        batch = obs.shape[0]
        state, next_state = obs.reshape(batch, -1), next_obs.reshape(batch, -1)
        actor_obs, next_actor_obs = self._actor_inputs(obs), self._actor_inputs(next_obs)
        joint = (F.one_hot(actions, self.action_dim).float() if self.discrete else actions).reshape(batch, -1)
        with torch.no_grad():
            next_joint = [self._relaxed(self._target_actors[a], next_actor_obs[:, j]) for j, a in enumerate(self.agents)]
            next_input = torch.cat([next_state, *next_joint], dim=1)
        critic_losses, actor_losses = [], []
        for i, agent in enumerate(self.agents):
            critic = self._critics[agent]
            with torch.no_grad():
                next_q = self._target_critics[agent](next_input).squeeze(1)
                target = rewards[:, i] + cfg.maddpg_gamma * (1.0 - terminals[:, i]) * next_q
            critic_loss = F.mse_loss(critic(torch.cat([state, joint], dim=1)).squeeze(1), target)
            self._critic_optimizers[agent].zero_grad()
            critic_loss.backward()
            self._clip(critic.parameters())
            self._critic_optimizers[agent].step()

            own = self._relaxed(self._actors[agent], actor_obs[:, i])  # the others' actions stay the buffer's
            width = self.action_dim
            acted = torch.cat([state, joint[:, : i * width], own, joint[:, (i + 1) * width :]], dim=1)
            actor_loss = -critic(acted).mean()
            self._actor_optimizers[agent].zero_grad()
            actor_loss.backward()
            self._clip(self._actor_params[agent])
            self._actor_optimizers[agent].step()
            critic_losses.append(critic_loss.item())
            actor_losses.append(actor_loss.item())
        for agent in self.agents:
            polyak_update(self._critics[agent].parameters(), self._target_critics[agent].parameters(), cfg.tau)
            polyak_update(self._actors[agent].parameters(), self._target_actors[agent].parameters(), cfg.tau)
        return float(np.mean(critic_losses)), float(np.mean(actor_losses))

    # --- the joint policy and its weights -----------------------------------------------------------------------------

    def actors(self) -> dict[str, ActorCriticPolicy]:
        return dict(self._actors)

    def critics(self) -> dict[str, nn.Module]:
        """Each agent's centralised critic Q_i(s, a_1, ..., a_N)."""
        return dict(self._critics)

    def get_weights(self) -> dict[str, Any]:
        nets = {
            "actors": self._actors,
            "target_actors": self._target_actors,
            "critics": self._critics,
            "target_critics": self._target_critics,
        }
        return {key: {a: net.state_dict() for a, net in group.items()} for key, group in nets.items()}

    def set_weights(self, weights: dict[str, Any]) -> None:
        groups = (self._actors, self._target_actors, self._critics, self._target_critics)
        for key, group in zip(("actors", "target_actors", "critics", "target_critics"), groups):
            for agent, net in group.items():
                net.load_state_dict(weights[key][agent])

    # --- checkpoints --------------------------------------------------------------------------------------------------

    def _restart_envs(self, seed: int) -> None:
        self.venv.seed(seed)
        self._last_obs = self.venv.reset()
        self._gone[:] = False

    def _get_training_state(self) -> dict[str, Any]:
        return {
            "actor_optimizers": {a: o.state_dict() for a, o in self._actor_optimizers.items()},
            "critic_optimizers": {a: o.state_dict() for a, o in self._critic_optimizers.items()},
            "rng": self._rng.bit_generator.state,
            "buffer": self.buffer.get_state(self.venv.num_envs // len(self.agents)),
        }

    def _set_training_state(self, state: dict[str, Any]) -> None:
        for key, optimizers in (("actor_optimizers", self._actor_optimizers), ("critic_optimizers", self._critic_optimizers)):
            for agent, optimizer in optimizers.items():
                load_optimizer(optimizer, state[key][agent])
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]  # checked on a scratch generator first
        self._rng.bit_generator.state = state["rng"]
        self.buffer.set_state(state["buffer"])

    def close(self) -> None:
        self.venv.close()
        super().close()
