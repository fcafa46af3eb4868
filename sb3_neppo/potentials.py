"""Potentials Φ_w: torch modules whose parameters w the zeroth-order loop tunes.

The small interface a potential follows (subclass :class:`Potential`):

* ``forward(state, actions, rewards) -> phi``: the per-step shared reward, batched. ``state`` is ``[B, S]`` (the global
  state), ``actions`` is ``[B, N, A]`` (each agent's action, zero-padded to the widest agent; in a normal-form game's
  mixed mode an action is the agent's mixed strategy over its k actions), ``rewards`` is ``[B, N]`` (each agent's true
  reward). Returns ``[B]``. Φ_w(π) is the discounted sum of φ along π's trajectories.
* ``project_flat(w)``: the projection applied after each zeroth-order step (identity by default).
* ``get_config()``: constructor keyword arguments, so that :meth:`NePPO.load` can rebuild it.

The flat parameter view (:meth:`Potential.get_flat_params` / :meth:`Potential.set_flat_params`) is what the
zeroth-order step perturbs. Nothing here knows about environments or RL libraries.
"""

from __future__ import annotations

import importlib
import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from sb3_neppo.errors import ConfigError


class Potential(nn.Module, ABC):
    """Base class of all potentials (see the module docstring for the interface)."""

    @abstractmethod
    def forward(self, state: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        """Per-step potential reward φ_w(s, a, r) for a batch: ``[B, S], [B, N, A], [B, N] -> [B]``."""

    def get_config(self) -> dict:
        """Constructor keyword arguments (JSON-serialisable)."""
        return {}

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


class RewardMixturePotential(Potential):
    """φ_w(s, a, r) = Σ_i λ_w(s)_i r_i with λ on the simplex: a state-dependent convex combination of rewards."""

    @abstractmethod
    def weights(self, state: torch.Tensor) -> torch.Tensor:
        """Mixing weights λ_w(s), ``[B, S] -> [B, N]``, each row on the simplex."""

    def forward(self, state: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        return (self.weights(state) * rewards).sum(-1)


class ConvexCombinationPotential(RewardMixturePotential):
    """φ = Σ_i softmax(ℓ)_i r_i with logits ℓ ∈ R^N, zero init (uniform weights). For 2 players this is the paper's
    Φ_w = w J_1 + (1 - w) J_2 with w = softmax(ℓ)_1."""

    def __init__(self, n_agents: int):
        super().__init__()
        self.n_agents = int(n_agents)
        self.logits = nn.Parameter(torch.zeros(self.n_agents))

    def weights(self, state: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits, -1).expand(state.shape[0], -1)

    def get_config(self) -> dict:
        return {"n_agents": self.n_agents}

    def describe(self) -> dict:
        return {"weights": torch.softmax(self.logits.detach(), -1).tolist()}


class StateMixerPotential(RewardMixturePotential):
    """The paper's eq. 9: φ = Σ_i softmax(W s + b)_i r_i, zero init (uniform average at start)."""

    def __init__(self, n_agents: int, state_dim: int):
        super().__init__()
        self.n_agents, self.state_dim = int(n_agents), int(state_dim)
        self.mixer = nn.Linear(self.state_dim, self.n_agents)
        nn.init.zeros_(self.mixer.weight)
        nn.init.zeros_(self.mixer.bias)

    def weights(self, state: torch.Tensor) -> torch.Tensor:
        if state.shape[-1] != self.state_dim:
            raise ConfigError(
                f"the state has {state.shape[-1]} values but the state-mixer potential was built for {self.state_dim}; "
                "build the potential for this env's global state"
            )
        return torch.softmax(self.mixer(state), -1)

    def get_config(self) -> dict:
        return {"n_agents": self.n_agents, "state_dim": self.state_dim}


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
    name: str, *, n_agents: int, state_dim: int, n_actions: Sequence[int] | None = None, **kwargs
) -> Potential:
    """Build a potential by name, filling the sizes it needs from the game's (n_agents, state_dim, n_actions)."""
    cls = potential_class(name)
    sizes = {"n_agents": n_agents, "state_dim": state_dim, "n_actions": n_actions}
    params = inspect.signature(cls).parameters
    for key, value in sizes.items():
        if key in params and key not in kwargs:
            if value is None:
                raise ConfigError(f"the {name} potential needs {key}, which this env does not define")
            kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad potential_kwargs for '{name}': {exc}") from None
