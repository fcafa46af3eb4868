"""Typed NePPO settings and the ``hyperparams/*.yml`` files that feed them. Values are YAML literals, never ``eval``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sb3_neppo.errors import ConfigError

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"


# The paper's PPO for Simple World Comm (10 epochs, entropy 0.02, gamma 0.9851, GAE 0.95, clip 0.2442, Adam 7e-4, one
# hidden layer of 64), 25 steps per env copy and update with a minibatch of 400: the default PPO of the SB3 solvers and
# the baselines on Markov games (n_steps and batch_size are sized from the env: sb3_neppo.defaults).
PAPER_PPO: dict[str, Any] = {
    "n_steps": 25,
    "batch_size": 400,
    "n_epochs": 10,
    "learning_rate": 0.0007,
    "ent_coef": 0.02,
    "gamma": 0.9851,
    "gae_lambda": 0.95,
    "clip_range": 0.2442,
    "policy_kwargs": {"net_arch": [64]},
}

MAX_SEED = 2**31  # copies and episodes get seeds offset from it; numpy and gymnasium take seeds below 2**32


def check_seed(seed) -> int:
    """A run's seed: an integer in [0, 2**31) (drawn when None); anything else is one line."""
    if seed is None:
        return int(np.random.SeedSequence().entropy % MAX_SEED)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < MAX_SEED:
        raise ConfigError(f"seed must be an integer in [0, 2**31), got {seed!r}")
    return int(seed)


def dataclass_from_dict(cls: type, values: Mapping[str, Any] | None, what: str) -> Any:
    """``cls(**values)`` for a settings dataclass; an unknown key is one line naming it and the valid ones."""
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values or {}) - set(known))
    if unknown:
        hint = "; YAML needs a space after each ':' ({key: value})" if any(":" in str(k) for k in unknown) else ""
        raise ConfigError(f"unknown {what} {', '.join(map(str, unknown))}; valid keys: {', '.join(known)}{hint}")
    return cls(**dict(values or {}))


@dataclass
class NePPOConfig:
    """Settings of one NePPO run (the keys of ``hyperparams/neppo.yml``). The defaults are the paper's Markov-game
    settings (Simple World Comm); a normal-form game gets the file's ``normal-form`` entry on top (the paper's Table 1
    settings), and :mod:`sb3_neppo.defaults` sizes what depends on the env.

    :param potential: ``auto`` (quadratic for normal-form games, state mixer otherwise), ``quadratic``, ``convex``,
        ``state_mixer`` or a ``package.module:Class`` path to a :class:`~sb3_neppo.potentials.Potential` subclass.
    :param potential_kwargs: extra constructor arguments of the potential (e.g. ``init`` for the quadratic one).
    :param solver: ``auto`` (exact for normal-form games, sb3 otherwise), ``exact`` (closed forms; normal-form games
        only) or ``sb3`` (SB3 PPO cooperative solver and best responses, rollout estimates).
    :param solver_kwargs: settings of the sb3 solvers (see :class:`~sb3_neppo.solvers.sb3.SB3SolverConfig`).
    :param n_iterations: outer iterations of Algorithm 1.
    :param delta: smoothing radius δ of the two-point estimate.
    :param lr: step size η of the zeroth-order step.
    :param lr_schedule: ``inv_sqrt`` (η/√(t+1)) or ``constant``.
    :param n_directions: random directions averaged per step.
    :param beta: temperature β of L_β.
    :param max_grad_norm: clip the gradient estimate to this norm (null: no clipping).
    :param iterate_solve: ``every``: solve at every new iterate w (2m + 1 solves per iteration; the logged F is at w
        and that solve warm-starts the next iteration); ``final``: the paper's 2m solves per iteration (the next
        iteration warm-starts from the branch with the lowest L_β, whose F is logged) and one solve at the final w.
    :param keep_best: return the iterate with the lowest L_β rather than the last one. Only with exact solvers, where
        L_β is exact and so an unbiased certificate (choosing the minimum of noisy estimates would be biased low).
    :param n_starts: candidate starts screened by exact L_β (exact solvers, with keep_best): the descent also runs from
        the best of them, and the result is the lowest certificate of both descents (1: the given start only).
    """

    potential: str = "auto"
    potential_kwargs: dict[str, Any] = field(default_factory=dict)
    solver: str = "auto"
    solver_kwargs: dict[str, Any] = field(default_factory=dict)
    n_iterations: int = 10
    delta: float = 5e-4
    lr: float = 0.01
    lr_schedule: str = "constant"
    n_directions: int = 1
    beta: float = 1.0
    max_grad_norm: float | None = 10.0
    iterate_solve: str = "final"
    keep_best: bool = False
    n_starts: int = 1

    def __post_init__(self) -> None:
        checks = {
            "potential": (str,),
            "potential_kwargs": (dict,),
            "solver": (str,),
            "solver_kwargs": (dict,),
            "n_iterations": (int,),
            "n_directions": (int,),
            "delta": (int, float),
            "lr": (int, float),
            "lr_schedule": (str,),
            "beta": (int, float),
            "max_grad_norm": (int, float, type(None)),
            "iterate_solve": (str,),
            "keep_best": (bool,),
            "n_starts": (int,),
        }
        for key, types in checks.items():
            value = getattr(self, key)
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise ConfigError(f"hyperparameter {key} must be {names}, got {value!r}")
        if self.n_iterations < 1:
            raise ConfigError(f"n_iterations must be >= 1 (got {self.n_iterations})")
        if self.n_starts < 1:
            raise ConfigError(f"n_starts must be >= 1 (got {self.n_starts})")
        if self.iterate_solve not in ("every", "final"):
            raise ConfigError(f"iterate_solve must be every or final (got {self.iterate_solve!r})")
        if not 0 < self.beta < np.inf:
            raise ConfigError(f"beta must be a finite number > 0 (got {self.beta}); e.g. -params beta:10000")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> NePPOConfig:
        """Build from a mapping, rejecting unknown keys with the list of valid ones."""
        return dataclass_from_dict(cls, values, "hyperparameter")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~sb3_neppo.NePPO` (everything but ``n_iterations``, which ``learn`` takes)."""
        kwargs = self.to_dict()
        del kwargs["n_iterations"]
        return kwargs


class YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-3`` and ``1e300`` as numbers, as YAML 1.2 and JSON do (PyYAML's YAML 1.1
    resolver wants a dot, ``1.0e-3``, and reads ``1e-3`` as a string)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse YAML safely (no object construction), numbers as YAML 1.2 reads them (:class:`YamlLoader`)."""
    return yaml.load(text, Loader=YamlLoader)  # a SafeLoader: no Python object is ever constructed


def parse_value(text: str) -> Any:
    """A command-line value as a YAML/JSON literal (``0.4`` -> 0.4, ``1e-3`` -> 0.001, ``[1, 2]`` -> list, ``abc`` ->
    'abc')."""
    try:
        return yaml_load(text)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML/JSON"
        raise ConfigError(f"cannot parse value {text!r}: {problem}; quote strings and check brackets") from None


def parse_key_values(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["alpha:0.4", "mixed:false"]`` -> ``{"alpha": 0.4, "mixed": False}``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ConfigError(f"{what} entries are key:value, got {item!r} (e.g. alpha:0.4)")
        out[key.strip()] = parse_value(value)
    return out


def merge_hyperparams(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``; mappings merge key by key (``solver_kwargs:{eval_episodes:4}`` keeps the rest)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_hyperparams(out[key], value)
        else:
            out[key] = value
    return out


def read_hyperparams_file(path: Path) -> dict[str, dict[str, Any]]:
    """A hyperparameter file: a mapping of entries (env ids, ``normal-form``, ``default``) to mappings of settings."""
    try:
        data = yaml_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read hyperparameter file {path}: {exc.strerror}") from None
    except yaml.YAMLError:
        raise ConfigError(f"hyperparameter file {path} is not valid YAML") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"hyperparameter file {path} must map env ids (and 'default') to mappings of settings")
    return data
