"""Workers on other machines: the branches of an iteration as jobs in the run's Optuna storage.

With ``--storage`` the process that owns the run folder (the *coordinator*) does not keep the branches w ± δu_j of an
iteration to itself: it enqueues each as a WAITING trial (user attributes ``iteration``, ``direction``, ``sign``, ``w``,
``seed``) and then works through the queue like everyone else. Any process running the same command against the same
storage and study name, on any machine, is a *worker*: it pops jobs (WAITING -> RUNNING is atomic in Optuna's RDB and
journal storages), solves them and completes the trial with the attributes a local solve records (``F``, ``F_se``,
``regret``, ``env_steps``, value L_β) and, when the job asks (``iterate_solve: final``: the next iteration may start
from any branch), the branch's policies. A branch gives the same numbers whoever solves it: its seed travels with it.

Warm start: π^Φ and the best responses that the iteration's branches start from are stored in the study itself (study
system attributes: ``torch.save`` bytes, base64, in chunks under 64 KB), so a worker needs nothing but the storage, no
shared file system or artifact store. Only the current iteration's warm start is kept, and the branches' policies go
to one slot per (direction, sign), overwritten each iteration: the storage does not grow with them.

Liveness: a process bumps a ``heartbeat`` system attribute of each job it holds every ``timeout / 4`` seconds; the
coordinator fails a RUNNING job whose heartbeat has not changed for ``timeout`` seconds (timed on its own clock, so the
machines' clocks need not agree) and enqueues it again. A coordinator that restarts fails the jobs its previous
incarnation held at once. A job completed late by a worker that was taken for dead is ignored (its trial has failed).
"""

from __future__ import annotations

import base64
import io
import os
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np
import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from sb3_neppo.branch import BranchSolver, Job, Key, Solve, Warm, plain
from sb3_neppo.execution import Executor, InProcessExecutor, OnSolve, ProcessExecutor, received, solve_to_send
from sb3_neppo.storage import trial_key

QUEUE = "neppo:queue"  # study system attribute: {"coordinator": owner id}; its presence marks a joinable run
WARM = "neppo:warm"  # {"iteration": t, "chunks": n, "numpy": bool}; the chunks under "neppo:warm:<i>"
FINISHED = "neppo:finished"
STATE = "neppo:state"  # study system attributes "neppo:state:<direction>:<sign>": a branch's policies, when asked for
CHUNK = 60_000  # characters: MySQL's TEXT column holds 64 KB


def encode_state(state: Any) -> tuple[list[str], bool]:
    """``torch.save`` of a warm state as base64 chunks; numpy arrays (the exact solvers' strategies) travel as tensors."""
    has_numpy = False

    def to_torch(x: Any) -> Any:
        nonlocal has_numpy
        if isinstance(x, np.ndarray):
            has_numpy = True
            return torch.from_numpy(x.copy())
        if isinstance(x, Mapping):
            return {k: to_torch(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(to_torch(v) for v in x)
        return x

    buffer = io.BytesIO()
    torch.save(to_torch(state), buffer)
    text = base64.b64encode(buffer.getvalue()).decode("ascii")
    return [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""], has_numpy


def decode_state(chunks: list[str], numpy: bool) -> Any:
    """The inverse of :func:`encode_state` (``weights_only``: a storage cannot make us run code)."""
    state = torch.load(io.BytesIO(base64.b64decode("".join(chunks))), weights_only=True)

    def to_numpy(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.numpy()
        if isinstance(x, Mapping):
            return {k: to_numpy(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(to_numpy(v) for v in x)
        return x

    return to_numpy(state) if numpy else state


class JobQueue:
    """The job queue of one study (see the module doc): used by the coordinator and by workers.

    :param timeout: seconds without a heartbeat after which the coordinator takes a RUNNING job for dead.
    :param poll_interval: seconds between looks at the storage while there is nothing to do.
    """

    def __init__(self, study: optuna.Study, timeout: float = 60.0, poll_interval: float = 0.2):
        self.study = study
        self.storage = study._storage  # the public BaseStorage API: atomic pops, system attributes
        self.study_id = study._study_id
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self._held: set[int] = set()  # trial ids of the jobs this process is solving
        self._lock = threading.Lock()
        self._seen: dict[int, tuple[Any, float]] = {}  # coordinator: trial id -> (last heartbeat, when it changed)
        self._warm_cache: tuple[int, Any] | None = None
        self._stop = threading.Event()
        self._beater = threading.Thread(target=self._beat, daemon=True)
        self._beater.start()
        self.solved = 0  # jobs this process completed
        self.env_steps = 0

    # --- study attributes -----------------------------------------------------------------------------------------------

    def _attrs(self) -> dict[str, Any]:
        return self.storage.get_study_system_attrs(self.study_id)

    def wait_joinable(self, timeout: float = 30.0) -> bool:
        """Whether a coordinator runs this study through the queue and has not finished (waiting up to ``timeout``
        seconds for a coordinator that has just created the study to say so)."""
        deadline = time.monotonic() + timeout
        while True:
            attrs = self._attrs()
            if QUEUE in attrs or attrs.get(FINISHED, False) or time.monotonic() > deadline:
                return attrs.get(QUEUE) is not None and not attrs.get(FINISHED, False)
            time.sleep(self.poll_interval)

    @property
    def finished(self) -> bool:
        return bool(self._attrs().get(FINISHED, False))

    # --- coordinator ----------------------------------------------------------------------------------------------------

    def claim(self) -> None:
        """Become the study's coordinator; jobs that a previous coordinator process held are failed (and re-enqueued)."""
        previous = (self._attrs().get(QUEUE) or {}).get("coordinator")
        if previous is not None:
            for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if trial.system_attrs.get("worker") == previous:
                    self._fail(trial._trial_id)
        self.storage.set_study_system_attr(self.study_id, QUEUE, {"coordinator": self.owner})

    @staticmethod
    def refuse_workers(study: optuna.Study) -> None:
        """Mark a run that solves its branches in one place (the exact solvers): processes that try to join are told."""
        study._storage.set_study_system_attr(study._study_id, QUEUE, None)

    def finish(self) -> None:
        """Tell the workers the run is over."""
        self.storage.set_study_system_attr(self.study_id, FINISHED, True)

    def _put(self, key: str, state: Any, **header: Any) -> None:
        """Store ``state`` under study system attribute ``key``: the chunks first, then the header that names them."""
        chunks, has_numpy = encode_state(state)
        for i, chunk in enumerate(chunks):
            self.storage.set_study_system_attr(self.study_id, f"{key}:{i}", chunk)
        self.storage.set_study_system_attr(self.study_id, key, {**header, "chunks": len(chunks), "numpy": has_numpy})

    @staticmethod
    def _get(attrs: dict[str, Any], key: str) -> Any:
        """The state :meth:`_put` stored under ``key`` (``attrs``: the study system attributes, header included)."""
        header = attrs[key]
        return decode_state([attrs[f"{key}:{i}"] for i in range(header["chunks"])], header["numpy"])

    def publish(self, iteration: int, state: Any) -> None:
        """Store the warm start of ``iteration``'s jobs."""
        self._put(WARM, state, iteration=iteration)

    def enqueue(self, jobs: list[Job], keep_state: bool, trials: list[FrozenTrial] | None = None) -> None:
        """Add a WAITING trial for every job that has no waiting, running or completed trial yet.

        ``keep_state``: whoever solves a job also stores the branch's policies (the next iteration may start there)."""
        live = {trial_key(t) for t in (self._jobs() if trials is None else trials) if t.state != TrialState.FAIL}
        for job in jobs:
            if job.key not in live:
                iteration, direction, sign = job.key
                attrs = {"iteration": iteration, "direction": direction, "sign": sign, "w": job.w, "seed": job.seed}
                attrs["keep_state"] = keep_state
                self.study.enqueue_trial({}, user_attrs=plain(attrs))

    def collect(self, jobs: list[Job], keep_state: bool) -> dict[Key, FrozenTrial]:
        """The completed trials of ``jobs`` so far; jobs whose worker went silent are failed and enqueued again."""
        now, failed = time.monotonic(), set()
        trials = self._jobs()
        for trial in trials:
            if trial.state != TrialState.RUNNING:
                continue
            beat = trial.system_attrs.get("heartbeat")
            last = self._seen.get(trial._trial_id)
            if last is None or last[0] != beat:
                self._seen[trial._trial_id] = (beat, now)
            elif now - last[1] > self.timeout and trial._trial_id not in self._held:
                self._fail(trial._trial_id)
                failed.add(trial._trial_id)
        self.enqueue(jobs, keep_state, [t for t in trials if t._trial_id not in failed])
        wanted = {job.key for job in jobs}
        return {trial_key(t): t for t in trials if t.state == TrialState.COMPLETE and trial_key(t) in wanted}

    def state_of(self, trial: FrozenTrial) -> Any:
        """The policies a completed job stored (None if its slot now holds another trial's: NePPO then solves the
        branch again, which gives the same policies)."""
        _, direction, sign = trial_key(trial)
        slot = f"{STATE}:{direction}:{sign}"
        attrs = self._attrs()
        if attrs.get(slot, {}).get("trial") != trial._trial_id:
            return None
        return self._get(attrs, slot)

    # --- any process ----------------------------------------------------------------------------------------------------

    def _jobs(self, *states: TrialState) -> list[FrozenTrial]:
        trials = self.study.get_trials(deepcopy=False, states=states or None)
        return [t for t in trials if "seed" in t.user_attrs and "iteration" in t.user_attrs]

    def warm(self, iteration: int) -> Any:
        """The warm start of ``iteration``'s jobs (None if another iteration's is stored)."""
        if self._warm_cache is not None and self._warm_cache[0] == iteration:
            return self._warm_cache[1]
        attrs = self._attrs()
        header = attrs.get(WARM)
        if header is None or header["iteration"] != iteration:
            return None
        state = self._get(attrs, WARM)
        self._warm_cache = (iteration, state)
        return state

    def current_iteration(self) -> int | None:
        header = self._attrs().get(WARM)
        return None if header is None else int(header["iteration"])

    def pop(self, iteration: int | None) -> FrozenTrial | None:
        """Take a WAITING job (of ``iteration``, when given), or None if there is none."""
        for trial in self._jobs(TrialState.WAITING):
            if iteration is not None and int(trial.user_attrs["iteration"]) != iteration:
                continue
            try:
                if not self.storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                    continue  # another process popped it first
            except UpdateFinishedTrialError:
                continue
            with self._lock:
                self._held.add(trial._trial_id)
            self.storage.set_trial_system_attr(trial._trial_id, "worker", self.owner)
            return trial
        return None

    def complete(self, trial: FrozenTrial, solve: Solve, kept: Any = None) -> None:
        """Store a solved job's record (and ``kept``, its encoded policies) and complete its trial (ignored if it was
        failed meanwhile)."""
        attrs = {k: v for k, v in solve.attrs().items() if k not in ("iteration", "direction", "sign", "w")}
        try:
            if kept is not None:  # in the branch's slot of the study: one iteration's states are kept, not all
                _, direction, sign = trial_key(trial)
                self._put(f"{STATE}:{direction}:{sign}", kept, trial=trial._trial_id)
            for name, value in attrs.items():
                self.storage.set_trial_user_attr(trial._trial_id, name, value)
            self.storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [float(solve.objective)])
            self.solved += 1
            self.env_steps += solve.env_steps
        except UpdateFinishedTrialError:
            pass  # taken for dead and solved again elsewhere: that copy counts
        finally:
            with self._lock:
                self._held.discard(trial._trial_id)

    def release(self) -> None:
        """Fail the jobs this process holds (it is stopping), so that others take them at once."""
        with self._lock:
            held = list(self._held)
        for trial_id in held:
            self._fail(trial_id)

    def close(self) -> None:
        self._stop.set()
        self._beater.join(timeout=self.timeout)  # no heartbeat left inside a storage call while the interpreter exits
        self.release()

    def _fail(self, trial_id: int) -> None:
        try:
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass
        with self._lock:
            self._held.discard(trial_id)

    def _beat(self) -> None:
        count = 0
        while not self._stop.wait(self.timeout / 4):
            count += 1
            with self._lock:
                held = list(self._held)
            for trial_id in held:
                try:
                    self.storage.set_trial_system_attr(trial_id, "heartbeat", count)
                except Exception:  # the trial was failed as stale, or the storage hiccuped: the next beat retries
                    pass


class JobRunner:
    """Pops jobs and solves them with ``solver``, in this process (``pool`` None) or in a pool of K worker processes.

    :param warm: the coordinator's warm start (objects) and its encoding; a worker reads each iteration's from the study.
    """

    def __init__(
        self, queue: JobQueue, solver: BranchSolver, pool: ProcessExecutor | None, warm: tuple[Warm, Any] | None = None
    ):
        self.queue, self.solver, self.pool, self.coordinator = queue, solver, pool, warm is not None
        self._running: dict[Future, FrozenTrial] = {}
        self._warm: tuple[int | None, tuple[Warm, Any] | None] = (None, warm)

    def _warm_start(self, iteration: int) -> tuple[Warm, Any] | None:
        """(objects, encoding) of ``iteration``'s warm start; None while it is not published."""
        if self.coordinator or self._warm[0] == iteration:
            return self._warm[1]
        state = self.queue.warm(iteration)
        if state is None:
            return None
        self._warm = (iteration, (self.solver.solvers.decode(state) if self.pool is None else None, state))
        return self._warm[1]

    def step(self) -> bool:
        """Start what fits and finish what is done; False when nothing happened."""
        progressed = False
        for future in [f for f in self._running if f.done()]:
            self.queue.complete(self._running.pop(future), *future.result())
            progressed = True
        capacity = 1 if self.pool is None else self.pool.n_workers
        while len(self._running) < capacity:
            iteration = self.queue.current_iteration()
            warm = None if iteration is None else self._warm_start(iteration)
            if warm is None:
                break  # no jobs published yet
            trial = self.queue.pop(iteration)
            if trial is None:
                break
            progressed = True
            attrs = trial.user_attrs
            job = Job(trial_key(trial), np.asarray(attrs["w"]), int(attrs["seed"]))
            keep = bool(attrs.get("keep_state", False))
            if self.pool is not None:
                self._running[self.pool.submit(job, warm[1], keep)] = trial
                continue
            self.queue.complete(trial, *solve_to_send(self.solver, job, warm[0], keep))
        return progressed

    def drain(self) -> None:
        """Wait for the jobs in the pool to finish and complete them."""
        while self._running:
            if not self.step():
                time.sleep(self.queue.poll_interval)


class QueueExecutor(Executor):
    """The coordinator's executor: an iteration's jobs go to the study's queue, which this process works through like
    every worker (in ``local``'s worker processes when it has them); the records come back from the completed trials,
    marked stored (each is a trial already).

    :param queue: the study's queue; :meth:`JobQueue.claim` is called when the executor is bound to a model.
    :param local: how this process solves the jobs it pops (default: in this process)."""

    def __init__(self, queue: JobQueue, local: Executor | None = None):
        self.queue, self.local = queue, local or InProcessExecutor()
        self.n_workers = self.local.n_workers

    def bind(self, solver: BranchSolver) -> None:
        super().bind(solver)
        self.local.bind(solver)
        self.queue.claim()

    def solve(self, jobs: list[Job], warm: Warm, keep: bool, on_solve: OnSolve | None = None) -> list[Solve]:
        state = self.solver.solvers.encode(*warm)
        self.queue.publish(jobs[0].key[0], state)
        pool = self.local if isinstance(self.local, ProcessExecutor) else None
        runner = JobRunner(self.queue, self.solver, pool, warm=(warm, state))
        while True:
            done = self.queue.collect(jobs, keep)
            if len(done) == len(jobs):
                break
            if not runner.step():
                time.sleep(self.queue.poll_interval)
        solves = []
        for job in jobs:
            kept = self.queue.state_of(done[job.key]) if keep else None
            solves.append(received(self.solver, Solve.from_trial(done[job.key]), kept))
            if on_solve is not None:
                on_solve(solves[-1])
        return solves

    def close(self) -> None:
        self.local.close()
        self.queue.close()


def serve(queue: JobQueue, solver: BranchSolver, pool: ProcessExecutor | None = None, verbose: int = 0) -> None:
    """Worker: solve the study's jobs with ``solver`` until the coordinator says the run is over (Ctrl-C hands held
    jobs back)."""
    runner = JobRunner(queue, solver, pool)
    try:
        while not queue.finished:
            before = queue.solved
            if not runner.step():
                time.sleep(queue.poll_interval)
            elif verbose and queue.solved > before:
                print(f"solved {queue.solved} branches ({queue.env_steps} env steps)", flush=True)
        runner.drain()
    finally:
        queue.close()
