"""Joint policies built from SB3 policies: what the SB3 solvers pass between the slots of Algorithm 1.

A :class:`PolicyProfile` maps each agent to an SB3 policy (by default the same shared policy for every agent) and acts
for a dict of observations. Sampling uses a caller's ``numpy`` generator rather than torch's global one, so frozen
agents and evaluation rollouts are reproducible and can share random numbers across profiles.

A recurrent policy (sb3-contrib's ``MlpLstmPolicy``, ...) acts on its hidden state too: whoever steps episodes keeps a
:class:`Memory` of the hidden states, one per (row, agent) (a row is an env copy, a world or an episode), and forgets a
row when its episode ends. Without a memory a recurrent policy acts from the zero state, as at an episode's start.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.utils import obs_as_tensor

from sb3_neppo.algorithms import is_recurrent
from sb3_neppo.envs.view import AgentView, stack

Key = tuple[int, str]  # (row, agent)


class Memory:
    """The hidden states of recurrent policies, one per (row, agent), kept by whoever steps the episodes.

    A row with no state (never acted, or forgotten at an episode's end) starts from zeros, as SB3 starts an episode.
    """

    def __init__(self) -> None:
        self._states: dict[Key, tuple[torch.Tensor, torch.Tensor]] = {}

    def forget(self, rows=None) -> None:
        """Drop the states of ``rows`` (an iterable of row indices; None: every row), e.g. when their episodes end."""
        if rows is None:
            self._states.clear()
            return
        gone = set(int(r) for r in rows)
        for key in [k for k in self._states if k[0] in gone]:
            del self._states[key]

    def gather(self, policy: ActorCriticPolicy, keys: Sequence[Key]) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor LSTM states ``(h, c)`` ``[layers, len(keys), hidden]`` of ``keys`` (zeros where none is kept)."""
        lstm = policy.lstm_actor
        zero = torch.zeros(lstm.num_layers, 1, lstm.hidden_size, device=policy.device)
        pairs = [self._states.get(key, (zero, zero)) for key in keys]
        return torch.cat([h for h, _ in pairs], dim=1), torch.cat([c for _, c in pairs], dim=1)

    def keep(self, keys: Sequence[Key], states: tuple[torch.Tensor, torch.Tensor]) -> None:
        h, c = states
        for k, key in enumerate(keys):
            self._states[key] = (h[:, k : k + 1], c[:, k : k + 1])


def is_maskable(policy: ActorCriticPolicy) -> bool:
    """Whether ``policy`` takes action masks (sb3-contrib's ``MaskableActorCriticPolicy``)."""
    return type(policy).__name__.startswith("Maskable")


def _categorical(dist) -> bool:
    """Whether an SB3 action distribution is categorical (sb3-contrib's masked one too)."""
    return isinstance(getattr(dist, "distribution", None), torch.distributions.Categorical)


def distribution(
    policy: ActorCriticPolicy,
    obs: np.ndarray,
    memory: Memory | None = None,
    keys: Sequence[Key] = (),
    masks: np.ndarray | None = None,
):
    """``policy``'s action distribution at a batch of observations; a recurrent policy's from the states ``memory``
    keeps for ``keys`` (one per row of ``obs``), which it then updates (no memory: the zero state); a maskable
    policy's with the action ``masks`` ``[B, n]`` (None: every action allowed)."""
    if isinstance(obs, dict):  # a Dict view's parts, each in its dtype (SB3's preprocessing scales the images)
        obs_t = obs_as_tensor(obs, policy.device)
    else:
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=policy.device)
    with torch.no_grad():
        if is_maskable(policy):
            return policy.get_distribution(obs_t, action_masks=masks)
        if not is_recurrent(policy):
            return policy.get_distribution(obs_t)
        rows = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        keys = list(keys) if memory is not None else [(k, "") for k in range(rows)]
        states = (memory or Memory()).gather(policy, keys)
        starts = torch.zeros(rows, device=policy.device)
        dist, states = policy.get_distribution(obs_t, states, starts)
    if memory is not None:
        memory.keep(keys, states)
    return dist


def constructor_parameters(policy: ActorCriticPolicy) -> dict:
    """What rebuilds ``policy``'s network: SB3's ``_get_constructor_parameters``, with a recurrent policy's LSTM
    sizes, which sb3-contrib's policies leave out (a copy would get the default 256 units)."""
    params = policy._get_constructor_parameters()
    if is_recurrent(policy):
        params.update(
            lstm_hidden_size=policy.lstm_actor.hidden_size,
            n_lstm_layers=policy.lstm_actor.num_layers,
            shared_lstm=policy.shared_lstm,
            enable_critic_lstm=policy.enable_critic_lstm,
            lstm_kwargs=policy.lstm_kwargs,
        )
    return params


def frozen_copy(policy: ActorCriticPolicy) -> ActorCriticPolicy:
    """A copy in eval mode with gradients off: training the original never changes it.

    Rebuilt from the constructor parameters (``copy.deepcopy`` fails on a policy that holds its last distribution).
    """
    out = type(policy)(**constructor_parameters(policy)).to(policy.device)
    out.load_state_dict(policy.state_dict())
    out.set_training_mode(False)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def draw_noise(rng: np.random.Generator, n: int, space: spaces.Space) -> tuple[np.ndarray, np.ndarray]:
    """The random numbers :func:`policy_actions` samples ``n`` actions from: uniforms ``[n]`` and normals ``[n, D]``."""
    dim = int(np.prod(space.shape)) if isinstance(space, spaces.Box) else 0
    return rng.random(n), rng.standard_normal((n, dim))


def policy_actions(
    policy: ActorCriticPolicy,
    obs: np.ndarray,
    noise: tuple[np.ndarray, np.ndarray] | None = None,
    memory: Memory | None = None,
    keys: Sequence[Key] = (),
    masks: np.ndarray | None = None,
) -> np.ndarray:
    """Actions of ``policy`` for a batch of observations: the most likely ones without ``noise``, else sampled from it
    (see :func:`draw_noise`), never from torch's global generator. Categorical: inverse CDF of a uniform; Gaussian:
    mean + std · normal, clipped to the Box. A recurrent policy acts on (and updates) ``memory``'s states of ``keys``;
    a maskable one never picks an action ``masks`` ``[B, n]`` forbids.
    """
    dist = distribution(policy, obs, memory, keys, masks)
    space = policy.action_space
    deterministic = noise is None
    if _categorical(dist):
        probs = dist.distribution.probs.cpu().numpy().astype(np.float64)
        if deterministic:
            return probs.argmax(axis=1)
        cdf = np.cumsum(probs, axis=1)
        u = noise[0][:, None] * cdf[:, -1:]
        return np.minimum((u >= cdf).sum(axis=1), probs.shape[1] - 1)  # u in [0, 1): never an action of probability 0
    if isinstance(dist, DiagGaussianDistribution):
        mean = dist.distribution.mean.cpu().numpy()
        if deterministic:
            actions = mean
        else:
            actions = mean + dist.distribution.stddev.cpu().numpy() * noise[1].reshape(mean.shape)
        if isinstance(space, spaces.Box):
            actions = np.clip(actions, space.low, space.high)
        return actions.astype(np.float32)
    raise NotImplementedError(f"{type(dist).__name__} is not supported; use a Discrete or Box action space")


class PolicyProfile:
    """A joint policy: agent -> SB3 policy, acting through an :class:`AgentView`.

    :param view: how the policies see observations and drive actions.
    :param policies: one policy per agent (the same object for agents sharing a policy).
    """

    def __init__(self, view: AgentView, policies: Mapping[str, ActorCriticPolicy]):
        self.view = view
        self.policies = dict(policies)

    @classmethod
    def shared(cls, view: AgentView, policy: ActorCriticPolicy) -> PolicyProfile:
        return cls(view, {a: policy for a in view.agents})

    def with_agent(self, agent: str, policy: ActorCriticPolicy) -> PolicyProfile:
        """The unilateral deviation (policy for ``agent``, this profile for everyone else)."""
        return PolicyProfile(self.view, {**self.policies, agent: policy})

    def action_probabilities(self, agent: str, observation) -> np.ndarray:
        """``agent``'s action probabilities (Discrete action spaces) at one observation."""
        policy = self.policies[agent]
        dist = distribution(policy, stack([self.view.observe(agent, observation)]))
        if not _categorical(dist):
            raise TypeError("action probabilities exist for Discrete action spaces only")
        return dist.distribution.probs[0].cpu().numpy().astype(np.float64)

    def policy_actions(
        self,
        obs: np.ndarray,
        agents: Sequence[str],
        noise: tuple[np.ndarray, np.ndarray] | None = None,
        memory: Memory | None = None,
    ) -> np.ndarray:
        """The policies' own actions (before :meth:`AgentView.env_action`) for a batch ``[B, K, *shape]`` of view
        observations of ``agents`` (K names), one forward pass per distinct policy; ``noise`` ``([B, K], [B, K, D])``
        (see :func:`draw_noise`) or None for the most likely actions; recurrent policies keep their states in
        ``memory`` under (b, agent). Returns ``[B, K, ...]``."""
        groups: dict[int, list[int]] = {}
        for k, agent in enumerate(agents):
            groups.setdefault(id(self.policies[agent]), []).append(k)
        out = None
        n = obs.shape[0]
        for members in groups.values():
            rows = n * len(members)  # world-major, agent-minor
            batch_noise = (
                None if noise is None else (noise[0][:, members].reshape(rows), noise[1][:, members].reshape(rows, -1))
            )
            keys = [(b, agents[k]) for b in range(n) for k in members]
            policy = self.policies[agents[members[0]]]
            chosen = policy_actions(policy, obs[:, members].reshape(rows, *obs.shape[2:]), batch_noise, memory, keys)
            if out is None:
                out = np.zeros((n, len(agents), *chosen.shape[1:]), dtype=chosen.dtype)
            out[:, members] = chosen.reshape(n, len(members), *chosen.shape[1:])
        return out

    def act(
        self,
        observations: Mapping[str, np.ndarray],
        deterministic: bool,
        rng: np.random.Generator | None = None,
        memory: Memory | None = None,
        row: int = 0,
        masks: Mapping[str, np.ndarray] | None = None,
    ):
        """Env actions for the agents in ``observations``; one forward pass per distinct policy (recurrent policies:
        their states in ``memory`` under ``row``; maskable ones: the agents' own action ``masks``, where given)."""
        return self.act_batch([observations], deterministic, rng, memory, [row], None if masks is None else [masks])[0]

    def act_batch(
        self,
        batch: list[Mapping[str, np.ndarray]],
        deterministic: bool,
        rng: np.random.Generator | Sequence[np.random.Generator] | None = None,
        memory: Memory | None = None,
        rows: Sequence[int] | None = None,
        masks: Sequence[Mapping[str, np.ndarray]] | None = None,
    ) -> list[dict]:
        """:meth:`act` for several envs at once (one forward pass per distinct policy over all of them).

        The random numbers are drawn per (env, agent) in order before grouping, so swapping one agent's policy (a
        deviation) leaves every other agent's random numbers unchanged: common random numbers across profiles. With one
        generator per env, each env's numbers also stay the same whatever the other envs do. Recurrent policies keep
        their states in ``memory`` under (``rows[e]``, agent) (default rows: 0, 1, ...). ``masks[e]``: env e's
        agents' own action masks (:mod:`sb3_neppo.envs.masks`), which maskable policies respect.
        """
        rows = list(range(len(batch))) if rows is None else list(rows)
        slots = [(e, agent) for e, observations in enumerate(batch) for agent in observations]
        sample = not deterministic and rng is not None
        u = z = None
        if sample and isinstance(rng, np.random.Generator):
            u, z = draw_noise(rng, len(slots), self.view.action_space)
        elif sample:
            parts = [draw_noise(rng[e], len(observations), self.view.action_space) for e, observations in enumerate(batch)]
            u, z = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        groups: dict[int, list[int]] = {}
        for k, (_, agent) in enumerate(slots):
            groups.setdefault(id(self.policies[agent]), []).append(k)
        out: list[dict] = [{} for _ in batch]
        for members in groups.values():
            policy = self.policies[slots[members[0]][1]]
            obs = stack([self.view.observe(slots[k][1], batch[slots[k][0]][slots[k][1]]) for k in members])
            noise = (u[members], z[members]) if sample else None
            keys = [(rows[slots[k][0]], slots[k][1]) for k in members]
            allowed = None
            if masks is not None and is_maskable(policy):
                allowed = np.stack([self.view.joint_mask(a, masks[e].get(a)) for e, a in (slots[k] for k in members)])
            for k, action in zip(members, policy_actions(policy, obs, noise, memory, keys, allowed)):
                e, agent = slots[k]
                out[e][agent] = self.view.env_action(agent, action)
        return out
