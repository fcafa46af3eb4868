"""Journal storage: the cost of recording a solve, Optuna's own journal file against ours.

    python -m sb3_neppo.benchmarks.journal [--trials 2000] [--repeats 3]

Every solve of Algorithm 1 is one ``study.add_trial`` (what :class:`~sb3_neppo.storage.StudyRecorder` does). Optuna's
``JournalFileBackend`` (symlink lock) and ours (:class:`~sb3_neppo.storage.SafeJournalFileBackend`: an ``flock`` that
dies with its holder, and a check for a torn last record before each append) record the same trials into a new file
in a temporary folder; the two are interleaved within each repeat and the medians reported, with their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sb3_neppo.storage import open_journal

ATTRS = {"iteration": 3, "direction": 1, "sign": -1, "w": [0.25, 0.75], "F": [0.01, 0.02], "F_se": [0.0, 0.0]}


def ms_per_trial(make_storage, folder: Path, trials: int) -> float:
    study = optuna.create_study(study_name="bench", storage=make_storage(folder / "study.journal"))
    start = time.perf_counter()
    for k in range(trials):
        study.add_trial(optuna.trial.create_trial(value=float(k), user_attrs=ATTRS))
    return 1000 * (time.perf_counter() - start) / trials


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sb3_neppo.benchmarks.journal", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backends = {
        "optuna JournalFileBackend": lambda path: JournalStorage(JournalFileBackend(str(path))),
        "sb3_neppo SafeJournalFileBackend": open_journal,
    }
    times: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(args.repeats):
        for name, make in backends.items():
            with tempfile.TemporaryDirectory() as folder:
                times[name].append(ms_per_trial(make, Path(folder), args.trials))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"{args.trials} trials, median of {args.repeats} repeats (interleaved)")
    for name, values in times.items():
        print(f"  {name:34s} {medians[name]:.3f} ms/trial  ({', '.join(f'{v:.3f}' for v in values)})")
    ours, theirs = medians["sb3_neppo SafeJournalFileBackend"], medians["optuna JournalFileBackend"]
    print(f"ratio ours / optuna: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
