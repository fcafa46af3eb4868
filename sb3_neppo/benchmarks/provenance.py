"""What a benchmark's runs ran: each run keeps its settings, and a resumed benchmark adds no run whose settings differ.

A benchmark's ``--out`` is built over several invocations, possibly at different commits; a changed default
(``hyperparams/*.yml``) would otherwise mix two settings in one table without a word. Each run record keeps the
settings its folder's ``config.yml`` holds (:func:`ran`), and before a benchmark starts runs it compares what they would
run now (:func:`check_same`) with what the runs already in ``--out`` ran, refusing in one line that names the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sb3_neppo.hyperparams_files import parse_key_values

BUDGET_KEYS = ("n_timesteps", "n_iterations")  # set by the benchmark's own budget (-n), which its --out keeps


def would_run(env_id: str, algo: str, params: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings a ``train --algo ALGO --env ENV -params PARAMS`` run has now (the budget's keys left out)."""
    from sb3_neppo.models import settings_for

    settings = settings_for(env_id, algo, given=parse_key_values(list(params), "-params"))
    return {key: value for key, value in settings.items() if key not in BUDGET_KEYS}


def ran(folder: str | Path, env_id: str, algo: str) -> dict[str, Any]:
    """The settings a finished run ran with: its ``config.yml``, on the keys :func:`would_run` gives."""
    config = yaml.safe_load((Path(folder) / "config.yml").read_text())
    return {key: config.get(key) for key in would_run(env_id, algo)}


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first key (dotted) where two settings differ, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    return None if a == b else f"{path} ({a!r} there, {b!r} now)"


def check_same(runs: list[dict], env_id: str, algo: str, params: list[str] | tuple[str, ...], out: str | Path) -> None:
    """SystemExit (one line) if the runs of ``env_id`` and ``algo`` already in ``out`` ran other settings than a run
    would now; runs recorded without settings are not compared."""
    recorded = [r["settings"] for r in runs if r.get("env", env_id) == env_id and r["algo"] == algo and "settings" in r]
    if not recorded:
        return
    now = would_run(env_id, algo, params)
    for settings in recorded:
        found = first_difference(settings, {key: now.get(key) for key in settings})
        if found:
            raise SystemExit(
                f"{out} holds {algo} runs on {env_id} with other settings: {found}; run at the commit that made them "
                "or give another --out"
            )
