"""The ``hyperparams/*.yml`` files and command-line values: YAML literals read safely (never ``eval``), merged key by key.

Light on purpose (``yaml`` only): the plotting and evaluation commands read run folders through it without importing
torch or SB3."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sb3_neppo.errors import ConfigError

HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"


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
