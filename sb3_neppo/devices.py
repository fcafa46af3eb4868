"""Where the networks (and VMAS's worlds) run: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked against the machine.

``auto`` is a CUDA GPU where torch sees one, else the CPU (SB3's meaning). Asking for ``cuda`` on a machine without one
is one line, never a silent run on the CPU.
"""

from __future__ import annotations

import re

import torch

from sb3_neppo.errors import ConfigError

DEVICES = "auto, cpu, cuda or cuda:N"


def check_device_name(name: str, where: str = "device") -> None:
    """One line unless ``name`` is one of :data:`DEVICES` (whether the machine has it is :func:`resolve_device`'s)."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?", name):
        raise ConfigError(f"{where} must be {DEVICES}, got {name!r}")


def resolve_device(name: str, where: str = "device") -> str:
    """The torch device ``name`` means on this machine; ``cuda`` where torch sees no CUDA GPU is one line."""
    check_device_name(name, where)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{where} {name}: this machine has no CUDA GPU that torch {torch.__version__} can use "
                f"(torch.cuda.is_available() is False); give cpu or auto as {where} instead"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"{where} {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return name
