"""One file format for every model and checkpoint: a zip holding ``data.json`` (the algorithm, settings and counters)
and ``.pt`` members of tensors and plain values.

Written atomically (a crash leaves the previous file or the new one, never half of one) and read safely: JSON with
``json`` and tensors with ``torch.load(weights_only=True)``, so a file never makes us run code. A missing, truncated,
corrupt or altered file is one :class:`~sb3_neppo.errors.ConfigError` line.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sb3_neppo.atomic import atomic_open
from sb3_neppo.errors import ConfigError


def zip_path(path: str | os.PathLike) -> Path:
    """``path`` with the ``.zip`` suffix SB3 adds when it has none."""
    path = Path(path)
    return path if path.suffix == ".zip" else path.with_suffix(".zip")


def describe(exc: BaseException) -> str:
    """One line for an error raised while reading a file: never torch's advice to load with ``weights_only=False``."""
    if isinstance(exc, pickle.UnpicklingError):
        return (
            "it holds Python objects: the file holds something other than tensors and plain values (not written by "
            "sb3_neppo, or altered); not loaded"
        )
    text = f"missing entry {exc}" if isinstance(exc, KeyError) else str(exc) or type(exc).__name__
    text = " ".join(text.split())
    if "weights_only" in text:
        return "it is not a plain tensor file (not a file sb3_neppo wrote, or altered); not loaded"
    return text if len(text) <= 300 else text[:297] + "..."


def write_archive(path: str | os.PathLike, data: Mapping[str, Any], members: Mapping[str, Any], stream: bool = False) -> None:
    """Write ``data.json`` and the ``.pt`` ``members`` (``torch.save``-able trees) to ``path`` atomically.

    ``stream``: write each member straight into the zip, uncompressed (large training states: no second copy in
    memory); else compress them."""
    with (
        atomic_open(zip_path(path), "wb") as fh,
        zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED if stream else zipfile.ZIP_DEFLATED) as zf,
    ):
        zf.writestr("data.json", json.dumps(data, indent=2), compress_type=zipfile.ZIP_DEFLATED)
        for name, tree in members.items():
            if stream:
                with zf.open(name, "w", force_zip64=True) as member:
                    torch.save(tree, member)
            else:
                buffer = io.BytesIO()
                torch.save(tree, buffer)
                zf.writestr(name, buffer.getvalue())


def read_archive(
    path: str | os.PathLike, names: tuple[str, ...], optional: tuple[str, ...] = (), kind: str = "model"
) -> dict[str, Any]:
    """Members of a saved zip file, read safely: ``.json`` with ``json``, ``.pt`` with ``torch.load(weights_only=True)``;
    ``optional`` ones only where the file has them. Any error (no such file, not a zip, a missing, truncated, corrupt or
    altered member) is one line ``cannot load <kind> <path>: ...``."""
    out: dict[str, Any] = {}
    name = "the file"
    try:
        with zipfile.ZipFile(path) as archive:
            present = set(archive.namelist())
            for name in (*names, *(n for n in optional if n in present)):
                raw = archive.read(name)  # checks the member's CRC
                out[name] = json.loads(raw) if name.endswith(".json") else torch.load(io.BytesIO(raw), weights_only=True)
    except Exception as exc:  # torch, zipfile, zlib, json and OS errors alike: the file is not what it should be
        where = f"{name}: " if name != "the file" and not isinstance(exc, KeyError) else ""
        raise ConfigError(f"cannot load {kind} {path}: {where}{describe(exc)}") from None
    return out


def read_data(path: str | os.PathLike, kind: str = "model") -> dict[str, Any]:
    """The ``data.json`` of a saved model (settings, env, counters); one line if the file is not one."""
    data = read_archive(path, ("data.json",), kind=kind)["data.json"]
    if not isinstance(data, dict):
        raise ConfigError(f"cannot load {kind} {path}: data.json is not a mapping")
    return data


def saved_algo(path: str | os.PathLike) -> str:
    """The algorithm a saved model's ``data.json`` names (``neppo`` for NePPO models of earlier versions, which do not
    name it)."""
    algo = read_data(path).get("algo", "neppo")
    if not isinstance(algo, str):
        raise ConfigError(f"cannot load model {path}: data.json's algo is {algo!r}")
    return algo
