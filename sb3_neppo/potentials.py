"""Potentials Φ_w: torch modules whose parameters w the zeroth-order loop tunes.

The small interface a potential follows (subclass :class:`Potential`):

* ``forward(state, actions, rewards) -> phi``: the per-step shared reward, batched. ``state`` is ``[B, S]`` (the global
  state), ``actions`` is ``[B, N, A]`` (each agent's action, zero-padded to the widest agent; in a normal-form game's
  mixed mode an action is the agent's mixed strategy over its k actions), ``rewards`` is ``[B, N]`` (each agent's true
  reward). Returns ``[B]``. Φ_w(π) is the discounted sum of φ along π's trajectories.
* ``project_flat(w)``: the projection applied after each zeroth-order step (identity by default).
* ``get_config()``: constructor keyword arguments, so that :meth:`NePPO.load` can rebuild it.
* optionally ``encode_state(state)`` / ``forward_encoded(features, actions, rewards)``: a fixed (w-independent)
  encoding of the state and φ from encoded states, so logs can keep the small encoding instead of a large state
  (:class:`StateMixerPotential` with ``state_features``). By default the encoding is the identity.

The flat parameter view (:meth:`Potential.get_flat_params` / :meth:`Potential.set_flat_params`) is what the
zeroth-order step perturbs. Nothing here knows about environments or RL libraries.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from sb3_neppo.errors import ConfigError
from sb3_neppo.roles import GROUPINGS, role_of, share_groups


class Potential(nn.Module, ABC):
    """Base class of all potentials (see the module docstring for the interface)."""

    @abstractmethod
    def forward(self, state: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """Per-step potential reward φ_w(s, a, r) for a batch: ``[B, S], [B, N, A], [B, N] -> [B]``."""

    def get_config(self) -> dict:
        """Constructor keyword arguments (JSON-serialisable)."""
        return {}

    def encode_state(self, state: torch.Tensor) -> torch.Tensor:
        """The fixed (w-independent) features of the state that φ reads, ``[B, S] -> [B, F]``: the identity here."""
        return state

    def forward_encoded(self, features: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """φ from states already encoded by :meth:`encode_state` (``forward`` itself when the encoding is the identity)."""
        return self.forward(features, actions, rewards)

    @property
    def state_encoding(self) -> tuple | None:
        """What identifies :meth:`encode_state` (None: the identity): logs of encoded states fit potentials with the same."""
        return None

    @property
    def dim(self) -> int:
        """dim(w): the number of tunable parameters."""
        return sum(p.numel() for p in self.parameters())

    def get_flat_params(self) -> np.ndarray:
        """w as a flat float64 numpy vector."""
        return parameters_to_vector(self.parameters()).detach().cpu().to(torch.float64).numpy()

    def set_flat_params(self, flat: np.ndarray) -> None:
        """Overwrite w from a flat vector of length :attr:`dim`."""
        flat = np.asarray(flat, dtype=np.float64)
        if flat.shape != (self.dim,):
            raise ValueError(f"{type(self).__name__} has {self.dim} parameters, got a vector of shape {flat.shape}")
        first = next(self.parameters())
        with torch.no_grad():
            vector_to_parameters(torch.as_tensor(flat, dtype=first.dtype, device=first.device), self.parameters())

    def project_flat(self, flat: np.ndarray) -> np.ndarray:
        """Projection onto the feasible parameter set (identity unless a family constrains w)."""
        return flat

    def describe(self) -> dict:
        """A readable view of w for reports (e.g. the mixing weights)."""
        return {}

    def start_points(self, n: int, rng: np.random.Generator, game=None) -> list[np.ndarray]:
        """Up to ``n`` other values of w to start a descent from (``n_starts``, exact solvers); ``game`` is the
        normal-form game when there is one. None by default: a family says what a meaningful spread of starts is."""
        return []


class RewardMixturePotential(Potential):
    """φ_w(s, a, r) = Σ_i λ_w(s)_i r_i with λ on the simplex: a state-dependent convex combination of rewards.

    A subclass computes one logit per group of agents (:meth:`group_logits`); λ is the softmax over agents of their
    group's logit. With ``tie = "agent"`` every agent is a group of its own; with ``tie = "role"`` the agents of a role
    (``adversary_0..2``, :func:`sb3_neppo.roles.role_of`) share one logit, so they get equal weights and w is smaller
    (what the zeroth-order step estimates better: its error grows with dim(w)); ``"all"`` ties every agent (λ stays
    uniform: nothing to tune, the lr-0 control of a run). Zero logits are the uniform average whatever the tie.
    """

    def __init__(self, n_agents: int, agents: Sequence[str] | None = None, tie: str = "agent"):
        super().__init__()
        self.n_agents = int(n_agents)
        if tie not in GROUPINGS:
            raise ConfigError(f"potential_kwargs.tie must be one of {', '.join(GROUPINGS)}, got {tie!r}")
        if agents is not None and len(agents) != self.n_agents:
            raise ConfigError(f"the potential was given {len(agents)} agent names for {self.n_agents} agents")
        if tie == "role" and agents is None:
            raise ConfigError("potential_kwargs.tie: role needs the agents' names (give agents: [...])")
        self.agents = None if agents is None else [str(a) for a in agents]
        self.tie = tie
        self.groups = share_groups(self.agents or [str(i) for i in range(self.n_agents)], tie)
        if tie == "role" and len(self.groups) == 1 and self.n_agents > 1:
            warnings.warn(
                f"potential_kwargs.tie: role puts all {self.n_agents} agents in one role ({role_of(self.agents[0])}): the "
                "weights stay uniform and w has nothing to tune; use tie: agent",
                stacklevel=2,
            )
        index = torch.empty(self.n_agents, dtype=torch.long)
        for g, members in enumerate(self.groups):
            index[members] = g
        self.register_buffer("group_index", index, persistent=False)  # moves with .to(device); not part of w

    @abstractmethod
    def group_logits(self, state: torch.Tensor) -> torch.Tensor:
        """One logit per group of agents, ``[B, S] -> [B, G]``."""

    def weights(self, state: torch.Tensor) -> torch.Tensor:
        """Mixing weights λ_w(s), ``[B, S] -> [B, N]``, each row on the simplex."""
        return self.spread(self.group_logits(state))

    def spread(self, group_logits: torch.Tensor) -> torch.Tensor:
        """Per-agent weights from per-group logits: each agent gets its group's logit, then the softmax over agents."""
        return torch.softmax(group_logits[:, self.group_index], -1)

    def forward(self, state: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        return (self.weights(state) * rewards).sum(-1)

    def tie_config(self) -> dict:
        """The constructor arguments of the tie (none for the default, untied)."""
        return {} if self.tie == "agent" else {"agents": self.agents, "tie": self.tie}


class ConvexCombinationPotential(RewardMixturePotential):
    """φ = Σ_i λ_i r_i with λ = softmax(ℓ), logits ℓ ∈ R^N (R^G with ``tie``), zero init (uniform weights). For 2 players
    this is the paper's Φ_w = w J_1 + (1 - w) J_2 with w = softmax(ℓ)_1.

    :param n_agents: number of agents N.
    :param agents: the agents' names (needed by ``tie: role``; filled from the env by :func:`build_potential`).
    :param tie: ``agent`` (a weight per agent), ``role`` (one per role, equal within it) or ``all``.
    :param weights: the starting λ, one positive value per agent summing to 1 (equal within a tied group); None: uniform.
    """

    def __init__(
        self, n_agents: int, agents: Sequence[str] | None = None, tie: str = "agent", weights: Sequence[float] | None = None
    ):
        super().__init__(n_agents, agents, tie)
        self.logits = nn.Parameter(torch.zeros(len(self.groups)))
        self.initial_weights = None if weights is None else self._check_weights(weights)
        if self.initial_weights is not None:
            with torch.no_grad():
                self.logits.copy_(torch.tensor([np.log(self.initial_weights[m[0]]) for m in self.groups]))

    def _check_weights(self, weights: Sequence[float]) -> list[float]:
        values = np.asarray(weights, dtype=np.float64)
        if values.shape != (self.n_agents,) or not np.all(values > 0) or abs(values.sum() - 1.0) > 1e-6:
            raise ConfigError(
                f"potential_kwargs.weights must be {self.n_agents} positive numbers summing to 1 (one per agent), "
                f"got {list(weights)!r}"
            )
        for members in self.groups:
            if not np.allclose(values[members], values[members[0]]):
                names = [self.agents[i] if self.agents else str(i) for i in members]
                raise ConfigError(f"potential_kwargs.weights must be equal within a tied group ({', '.join(names)})")
        return values.tolist()

    def group_logits(self, state: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(state.shape[0], -1)

    def get_config(self) -> dict:
        config = {"n_agents": self.n_agents, **self.tie_config()}
        return config if self.initial_weights is None else {**config, "weights": self.initial_weights}

    def describe(self) -> dict:
        return {"weights": self.spread(self.logits.detach()[None])[0].tolist()}

    def regret_direction(self, F: np.ndarray) -> np.ndarray:
        """Per group logit, its agents' largest F_i less the mean of that over the groups: the direction that moves
        weight to the groups whose players gain most by deviating (``outer_step: regret_weights``)."""
        worst = np.array([np.max(np.asarray(F, dtype=np.float64)[members]) for members in self.groups])
        return worst - worst.mean()

    def start_points(self, n: int, rng: np.random.Generator, game=None) -> list[np.ndarray]:
        """Each group's own reward weighted 0.9 (its logit log(9 (N - |g|) / |g|) above the others' 0), then weights
        drawn uniformly from the simplex of groups (logits of a flat Dirichlet draw, shared within a group)."""
        sizes = np.array([len(m) for m in self.groups], dtype=np.float64)
        lifted = [np.eye(len(sizes))[g] * np.log(9.0 * (self.n_agents - size) / size) for g, size in enumerate(sizes)]
        points = lifted if len(sizes) > 1 else []  # one group: no other group to lift it above
        while len(points) < n:
            points.append(np.log(rng.dirichlet(np.ones(len(sizes))) / sizes + 1e-12))
        return points[:n]


LARGE_STATE = 1024  # states with more values get the state mixer a small encoding by default (build_potential)
DEFAULT_STATE_FEATURES = 32
LARGE_POTENTIAL = 10_000  # more parameters than this and the zeroth-order step hardly moves (warn_if_large)


class StateMixerPotential(RewardMixturePotential):
    """The paper's eq. 9: φ = Σ_i softmax(W s + b)_i r_i, zero init (uniform average at start).

    With ``state_features = k``, the mixer reads a fixed k-value encoding of the state instead of s itself: the
    average of each of k equal consecutive blocks of the flattened state (``torch.nn.functional.adaptive_avg_pool1d``),
    so w has (k + 1) N values instead of (S + 1) N. Why this encoding: a zeroth-order step estimates the gradient from
    a few random directions, so its error grows with dim(w), and a potential on a raw 560×880×3 frame (pistonball's
    ``state()``) would have millions of parameters; pooling is fixed (nothing to store or seed: ``state_dim`` and k
    rebuild it exactly), needs no memory (a random projection matrix would take S × k floats, 189 MB for that frame),
    costs one pass over the state, and keeps what a linear mixer can use of an image, the average intensity of each
    band of rows (of neighbouring entries, for a vector state). :func:`build_potential` chooses 32 features by default
    for states of more than 1,024 values. The rollout evaluator then logs the k features, not the state.

    With ``tie = "role"`` the mixer has one output per role (G of them), its weight shared by the role's agents:
    w has (S + 1) G values.

    :param n_agents: number of agents N.
    :param state_dim: values in the global state S.
    :param state_features: k, the size of the state's encoding (None: the mixer reads the state itself).
    :param agents: the agents' names (needed by ``tie: role``; filled from the env by :func:`build_potential`).
    :param tie: ``agent`` (a mixer output per agent), ``role`` (one per role) or ``all``.
    """

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        state_features: int | None = None,
        agents: Sequence[str] | None = None,
        tie: str = "agent",
    ):
        super().__init__(n_agents, agents, tie)
        self.state_dim = int(state_dim)
        if state_features is not None and (
            isinstance(state_features, bool) or not isinstance(state_features, int) or not 1 <= state_features < state_dim
        ):
            raise ConfigError(
                f"potential_kwargs.state_features must be an integer in [1, {self.state_dim}) (the state has "
                f"{self.state_dim} values) or null, got {state_features!r}"
            )
        self.state_features = state_features
        self.mixer = nn.Linear(self.state_dim if state_features is None else state_features, len(self.groups))
        nn.init.zeros_(self.mixer.weight)
        nn.init.zeros_(self.mixer.bias)

    def encode_state(self, state: torch.Tensor) -> torch.Tensor:
        if state.shape[-1] != self.state_dim:
            raise ConfigError(
                f"the state has {state.shape[-1]} values but the state-mixer potential was built for {self.state_dim}; "
                "build the potential for this env's global state"
            )
        if self.state_features is None:
            return state
        return functional.adaptive_avg_pool1d(state[:, None, :], self.state_features)[:, 0]

    def group_logits(self, state: torch.Tensor) -> torch.Tensor:
        return self.mixer(self.encode_state(state))

    def forward_encoded(self, features: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        return (self.spread(self.mixer(features)) * rewards).sum(-1)

    @property
    def state_encoding(self) -> tuple | None:
        return None if self.state_features is None else ("adaptive_avg_pool1d", self.state_dim, self.state_features)

    def get_config(self) -> dict:
        config = {"n_agents": self.n_agents, "state_dim": self.state_dim, **self.tie_config()}
        return config if self.state_features is None else {**config, "state_features": self.state_features}


_WARNED: set[tuple[str, int]] = set()  # (class, dim) of the potentials warn_if_large has warned about


def warn_if_large(potential: Potential) -> None:
    """One warning (once per process and kind of potential) for a potential whose w is too large for the zeroth-order
    step to tune (> 10,000 parameters)."""
    key = (type(potential).__qualname__, potential.dim)
    if potential.dim <= LARGE_POTENTIAL or key in _WARNED:
        return
    _WARNED.add(key)
    hint = "a potential with fewer parameters"
    if "state_features" in inspect.signature(type(potential)).parameters:
        k = DEFAULT_STATE_FEATURES
        hint = f"potential_kwargs state_features: {k} (a fixed {k}-value encoding of the state)"
    warnings.warn(
        f"the potential has {potential.dim:,} parameters, more than the {LARGE_POTENTIAL:,} a zeroth-order step can tune "
        f"(it estimates the gradient from a few random directions, so w would hardly move); use {hint}",
        stacklevel=2,
    )


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex along the last axis (sort-based, exact, batched)."""
    v = np.asarray(v, dtype=np.float64)
    u = np.sort(v, axis=-1)[..., ::-1]
    css = np.cumsum(u, axis=-1) - 1.0
    idx = np.arange(1, v.shape[-1] + 1)
    rho = (u - css / idx > 0).sum(-1, keepdims=True)  # the positive entries form a prefix of the sorted vector
    theta = np.take_along_axis(css, rho - 1, axis=-1) / rho
    return np.maximum(v - theta, 0.0)


class QuadraticPotential(Potential):
    """Φ_w(x) = -½ Σ_i ||x_i - p_i||² over mixed strategies x_i, with targets p_i on the simplex.

    w holds, for each player, the probabilities of its actions 2..k (action 1 gets the rest): for a 2-action player
    that is one number, the probability of its second action, so for 2×2 games w = (p, q) and
    Φ = -(x - p)² - (y - q)² exactly as in the paper. After each step w is projected back (onto [0, 1] per player for 2
    actions). Its cooperative optimum is the projection of p onto the strategy simplices.

    :param n_actions: number of actions of each player.
    :param init: starting targets: ``None`` (uniform), one number for every 2-action player (probability of the
        second action, e.g. the paper's 0.75), or one entry per player (a number for a 2-action player, a k-vector of
        probabilities otherwise).
    """

    def __init__(self, n_actions: Sequence[int], init=None):
        super().__init__()
        self.n_actions = [int(k) for k in n_actions]
        if min(self.n_actions) < 2:
            raise ConfigError(f"the quadratic potential needs at least 2 actions per player, got {self.n_actions}")
        self.targets = nn.Parameter(torch.as_tensor(self._initial_flat(init)))
        self._slices = np.cumsum([0] + [k - 1 for k in self.n_actions])

    def _initial_flat(self, init) -> np.ndarray:
        ks = self.n_actions
        if init is None:
            fulls = [np.full(k, 1.0 / k) for k in ks]
        elif np.ndim(init) == 0:
            if any(k != 2 for k in ks):
                raise ConfigError("a single number as init of the quadratic potential needs 2 actions per player")
            fulls = [np.array([1.0 - float(init), float(init)]) for _ in ks]
        else:
            if len(init) != len(ks):
                raise ConfigError(f"init of the quadratic potential needs one entry per player ({len(ks)}), got {init}")
            fulls = []
            for k, value in zip(ks, init):
                value = np.asarray(value, dtype=np.float64).reshape(-1)
                if value.shape == (1,) and k == 2:
                    value = np.array([1.0 - value[0], value[0]])
                if value.shape != (k,):
                    raise ConfigError(f"init entry {value.tolist()} does not fit a player with {k} actions")
                fulls.append(value)
        for full in fulls:
            if np.any(full < 0) or not np.isclose(full.sum(), 1.0):
                raise ConfigError(f"init of the quadratic potential must be probabilities, got {full.tolist()}")
        return np.concatenate([full[1:] for full in fulls])

    def target_strategies(self, flat: np.ndarray | None = None) -> list[np.ndarray]:
        """The full targets p_i (length k_i each) of w (default: the current parameters)."""
        flat = self.get_flat_params() if flat is None else np.asarray(flat, dtype=np.float64)
        out = []
        for i in range(len(self.n_actions)):
            q = flat[self._slices[i] : self._slices[i + 1]]
            out.append(np.concatenate([[1.0 - q.sum()], q]))
        return out

    def forward(self, state: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        kmax = max(self.n_actions)
        rows = []
        for i, k in enumerate(self.n_actions):
            q = self.targets[self._slices[i] : self._slices[i + 1]]
            rows.append(nn.functional.pad(torch.cat([1.0 - q.sum(0, keepdim=True), q]), (0, kmax - k)))
        p = torch.stack(rows)  # [N, kmax], zero-padded like the actions
        x = actions[..., :kmax]
        return -0.5 * ((x - p) ** 2).sum((-1, -2))

    def project_flat(self, flat: np.ndarray) -> np.ndarray:
        return np.concatenate([project_simplex(p)[1:] for p in self.target_strategies(flat)])

    def start_points(self, n: int, rng: np.random.Generator, game=None) -> list[np.ndarray]:
        """Targets at the pure profiles of ``game``, lowest max regret first (a pure equilibrium, if there is one, is
        first, and its F is 0), then targets drawn uniformly from each player's simplex."""
        points = []
        if game is not None:
            payoffs = np.asarray(game.payoffs, dtype=np.float64)  # (n, k_1, ..., k_n)
            regret = np.max([payoffs[i].max(axis=i, keepdims=True) - payoffs[i] for i in range(len(payoffs))], axis=0)
            for flat in np.argsort(regret, axis=None, kind="stable")[:n]:
                profile = np.unravel_index(flat, regret.shape)
                points.append(np.concatenate([np.eye(k)[a][1:] for k, a in zip(self.n_actions, profile)]))
        while len(points) < n:
            points.append(np.concatenate([rng.dirichlet(np.ones(k))[1:] for k in self.n_actions]))
        return points[:n]

    def get_config(self) -> dict:
        return {"n_actions": list(self.n_actions)}

    def describe(self) -> dict:
        return {"targets": [p.tolist() for p in self.target_strategies()]}


POTENTIALS: dict[str, type[Potential]] = {
    "quadratic": QuadraticPotential,
    "convex": ConvexCombinationPotential,
    "state_mixer": StateMixerPotential,
}


def potential_class(name: str) -> type[Potential]:
    """Resolve a potential name (``quadratic``, ``convex``, ``state_mixer``) or a ``package.module:Class`` path."""
    if name in POTENTIALS:
        return POTENTIALS[name]
    if ":" not in name:
        raise ConfigError(f"unknown potential '{name}': use one of {', '.join(POTENTIALS)} or a 'package.module:Class' path")
    module_name, _, class_name = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load potential '{name}' ({exc}); check the module path and class name") from None
    if not (isinstance(cls, type) and issubclass(cls, Potential)):
        raise ConfigError(f"'{name}' is not a subclass of sb3_neppo.potentials.Potential")
    return cls


def potential_name(potential: Potential) -> str:
    """The inverse of :func:`potential_class`: a name that resolves back to the potential's class."""
    for name, cls in POTENTIALS.items():
        if type(potential) is cls:
            return name
    return f"{type(potential).__module__}:{type(potential).__qualname__}"


def build_potential(
    name: str,
    *,
    n_agents: int,
    state_dim: int,
    n_actions: Sequence[int] | None = None,
    agents: Sequence[str] | None = None,
    **kwargs,
) -> Potential:
    """Build a potential by name, filling the sizes it needs from the game's (n_agents, state_dim, n_actions, agent
    names).

    A potential that takes ``state_features`` (the state mixer) gets 32 when the state has more than 1,024 values and
    ``potential_kwargs`` do not set it (``state_features: null`` keeps the raw state)."""
    cls = potential_class(name)
    sizes = {"n_agents": n_agents, "state_dim": state_dim, "n_actions": n_actions, "agents": agents}
    params = inspect.signature(cls).parameters
    if "state_features" in params and "state_features" not in kwargs and state_dim > LARGE_STATE:
        kwargs["state_features"] = DEFAULT_STATE_FEATURES
    for key, value in sizes.items():
        if key in params and key not in kwargs:
            if value is None and params[key].default is inspect.Parameter.empty:
                raise ConfigError(f"the {name} potential needs {key}, which this env does not define")
            if value is not None:
                kwargs[key] = list(value) if key == "agents" else value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad potential_kwargs for '{name}': {exc}") from None
