"""Same numbers before and after a change: short runs whose ``summary.json`` must not move.

    python -m sb3_neppo.benchmarks.same_numbers record [--out docs/data/same-numbers.json]
    python -m sb3_neppo.benchmarks.same_numbers check [--against docs/data/same-numbers.json]

A behaviour-preserving change (a refactoring) must leave every number of a run with a fixed seed as it was. Each case
below is one ``python -m sb3_neppo.train`` command of the tree this runs in (NePPO on a normal-form game, an mpe2 game
and a VMAS scenario on default settings, an IPPO and a MADDPG run), into a temporary folder. ``record`` keeps their
summaries, less what is not a result (wall time, version, the study's location), in a JSON file; ``check`` runs them
again and prints every field that differs, exiting 1 if any does. Floats are compared exactly: record and check on the
same machine (torch's float rounding differs between CPUs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sb3_neppo.atomic import write_json_atomic

CASES: dict[str, list[str]] = {
    "neppo-matrix-alpha": ["--env", "matrix-alpha", "--env-kwargs", "alpha:0.4", "-params", "n_iterations:50"],
    "neppo-mpe2-simple_tag": ["--env", "mpe2.simple_tag_v3", "-n", "20000"],
    "neppo-vmas-simple_tag": ["--env", "vmas:simple_tag", "-params", "n_iterations:1"],
    "ippo-mpe2-simple_tag": ["--algo", "ippo", "--env", "mpe2.simple_tag_v3", "-n", "4000"],
    "maddpg-prisoners-dilemma": ["--algo", "maddpg", "--env", "prisoners-dilemma"],
}
NOT_RESULTS = ("wall_time_s", "version", "study")
DEFAULT_FILE = Path("docs/data/same-numbers.json")


def run_case(argv: list[str], seed: int = 0) -> dict[str, Any]:
    """The summary of one training command (seed ``seed``), less :data:`NOT_RESULTS`."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "sb3_neppo.train", *argv, "--seed", str(seed), "-f", folder]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
        (summary,) = Path(folder).rglob("summary.json")
        data = json.loads(summary.read_text())
    return {k: v for k, v in data.items() if k not in NOT_RESULTS}


def differences(expected: Any, got: Any, where: str = "") -> list[str]:
    """Every path at which ``got`` differs from ``expected`` (exact comparison)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for key in sorted(set(expected) | set(got)):
            if key not in got or key not in expected:
                out.append(f"{where}.{key}: {'missing' if key not in got else 'new'}")
            else:
                out += differences(expected[key], got[key], f"{where}.{key}")
        return out
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        return [d for i, (e, g) in enumerate(zip(expected, got)) for d in differences(e, g, f"{where}[{i}]")]
    return [] if expected == got else [f"{where}: {expected!r} -> {got!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.same_numbers", description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["record", "check"])
    parser.add_argument("--file", "--out", "--against", dest="file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args(argv)
    if args.mode == "record":
        recorded = {name: run_case(CASES[name]) for name in args.cases}
        write_json_atomic(args.file, recorded)
        print(f"recorded {len(recorded)} runs in {args.file}")
        return 0
    expected = json.loads(args.file.read_text())
    failed = 0
    for name in args.cases:
        found = differences(expected[name], run_case(CASES[name]))
        failed += bool(found)
        print(f"{name}: {'same numbers' if not found else f'{len(found)} differences'}")
        for line in found[:20]:
            print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
