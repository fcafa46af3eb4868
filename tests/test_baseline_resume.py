"""Baseline checkpoints: a run killed after a checkpoint and resumed from it, in a fresh object or a new process, ends
with bit-identical weights, optimiser states, random states, replay buffer and per-round logs as the uninterrupted
run (IPPO, MAPPO, MADDPG; mpe2 and VMAS); checkpoint boundaries restart episodes in every run; a checkpoint or model
file that is truncated, corrupt or altered is one ConfigError line (and nothing in it runs)."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sb3_neppo.baselines import baseline_class, load_baseline, saved_algo
from sb3_neppo.baselines.ippo import IPPO
from sb3_neppo.baselines.maddpg import MADDPG
from sb3_neppo.errors import ConfigError

torch.set_num_threads(1)

SMALL_PPO = {"n_steps": 25, "batch_size": 50, "n_epochs": 2, "learning_rate": 7e-4, "policy_kwargs": {"net_arch": [32]}}
SMALL_MADDPG = {"train_freq": 25, "gradient_steps": 2, "batch_size": 32, "buffer_size": 150, "learning_starts": 0}
FREQ, KILL_AT, TOTAL = 100, 300, 400  # 2 copies x 25 steps = 50 env steps a round: boundaries at 100, 200, 300, 400

CASES = {
    "ippo-mpe2": ("ippo", "mpe2.simple_adversary_v3", {}, {"share": "role", "ppo": SMALL_PPO}),
    "mappo-mpe2": ("mappo", "mpe2.simple_adversary_v3", {}, {"ppo": SMALL_PPO}),
    # a buffer of 150 transitions wraps round in the 400 env steps (200 transitions of 2 copies)
    "maddpg-mpe2": ("maddpg", "mpe2.simple_spread_v3", {"max_cycles": 20}, SMALL_MADDPG),
    "ippo-vmas": ("ippo", "vmas:simple_tag", {"max_steps": 20}, {"ppo": SMALL_PPO}),
    "maddpg-vmas": ("maddpg", "vmas:simple_tag", {"max_steps": 20, "continuous_actions": True}, SMALL_MADDPG),
}


def build(case: str, **overrides):
    algo, env, env_kwargs, config = CASES[case]
    return baseline_class(algo)(env, env_kwargs, {"n_envs": 2, "checkpoint_freq": FREQ, **config, **overrides}, seed=7)


def record(logs: list):
    """A callback that keeps each round's log and the SB3 schedule's progress it trained with."""
    return lambda log, model: logs.append({**log, "progress": model._progress_remaining})


def read_zip(path: Path, names: tuple[str, ...]) -> dict:
    """Members of a zip file: JSON, or tensors (``weights_only``)."""
    with zipfile.ZipFile(path) as archive:
        return {
            name: json.loads(archive.read(name))
            if name.endswith(".json")
            else torch.load(io.BytesIO(archive.read(name)), weights_only=True)
            for name in names
        }


def contents(path: Path) -> dict:
    """What a checkpoint holds (its data.json without the wall-clock time)."""
    files = read_zip(path, ("data.json", "weights.pt", "training.pt"))
    files["data.json"].pop("wall_time_s")
    return files


def assert_same(a, b, where="") -> None:
    """Bit-identical nested dicts, lists and tuples of tensors and plain values."""
    assert type(a) is type(b), where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    else:
        assert a == b, where


def scramble_global_random_state() -> None:
    """What a new process would have: other global random states (and VMAS's), not those the last run left."""
    torch.manual_seed(12345)
    np.random.seed(12345)
    random.seed(12345)
    if "vmas" in sys.modules:
        from vmas.simulator.environment.environment import Environment

        Environment.vmas_random_state[0] = torch.Generator().manual_seed(54321).get_state()


def uninterrupted(case: str, tmp_path: Path) -> tuple[list, Path]:
    logs: list = []
    model = build(case).learn(TOTAL, callback=record(logs))
    assert logs[-1]["checkpoint"]  # the run ends at a boundary: its final checkpoint is the whole final state
    model.save_checkpoint(tmp_path / "uninterrupted.zip")
    return logs, tmp_path / "uninterrupted.zip"


def killed(case: str, tmp_path: Path) -> tuple[list, Path]:
    """A run that saves a checkpoint at 200 env steps, trains on to 300 and dies there (its last round is lost)."""
    logs: list = []

    def callback(log, model):
        logs.append({**log, "progress": model._progress_remaining})
        if log["checkpoint"] and log["total_env_steps"] == 200:
            model.save_checkpoint(tmp_path / "checkpoint")  # .zip added, as SB3 does
        return log["total_env_steps"] < KILL_AT

    build(case).learn(TOTAL, callback=callback)
    return [log for log in logs if log["total_env_steps"] <= 200], tmp_path / "checkpoint.zip"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["ippo-mpe2", "mappo-mpe2", "maddpg-mpe2", "ippo-vmas"])
def test_killed_run_resumed_in_a_fresh_object_is_the_uninterrupted_run(case, tmp_path):
    logs, final = uninterrupted(case, tmp_path)
    assert [log["checkpoint"] for log in logs] == [False, True] * 4
    before, checkpoint = killed(case, tmp_path)
    scramble_global_random_state()
    model = baseline_class(CASES[case][0]).load_checkpoint(checkpoint)
    assert (model.num_timesteps, model.num_rounds, model.timesteps_left) == (200, 4, TOTAL - 200)
    after: list = []
    model.learn(model.timesteps_left, callback=record(after))
    assert model.timesteps_left == 0
    assert before + after == logs  # every round: env steps, returns, losses, checkpoint flag, schedule progress
    model.save_checkpoint(tmp_path / "resumed.zip")
    assert_same(contents(tmp_path / "resumed.zip"), contents(final))  # weights, optimisers, random states, buffer


RESUME_IN_A_NEW_PROCESS = """
import json, sys, torch
torch.set_num_threads(1)
from sb3_neppo.baselines import baseline_class
algo, checkpoint, total, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
model = baseline_class(algo).load_checkpoint(checkpoint)
logs = []
assert model.timesteps_left == total - model.num_timesteps
model.learn(model.timesteps_left, callback=lambda log, m: logs.append({**log, "progress": m._progress_remaining}))
model.save_checkpoint(out)
json.dump(logs, open(out + ".json", "w"))
"""


@pytest.mark.slow
def test_maddpg_on_vmas_resumed_in_a_new_process_is_the_uninterrupted_run(tmp_path):
    """VMAS keeps one random state for the whole process (its resets draw from it): the checkpoint carries it."""
    logs, final = uninterrupted("maddpg-vmas", tmp_path)
    before, checkpoint = killed("maddpg-vmas", tmp_path)
    out = tmp_path / "resumed.zip"
    argv = [sys.executable, "-c", RESUME_IN_A_NEW_PROCESS, "maddpg", str(checkpoint), str(TOTAL), str(out)]
    child = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    after = json.loads(Path(f"{out}.json").read_text())
    assert json.loads(json.dumps(before)) + after == json.loads(json.dumps(logs))
    assert_same(contents(out), contents(final))


def test_boundaries_restart_episodes_in_every_run_and_logs_say_so():
    """A boundary's restart is part of the run: before the first boundary a run with checkpoints is the run without,
    after it they differ; the round that ends at or past each multiple of checkpoint_freq says checkpoint=True."""
    logs = {freq: [] for freq in (0, None, 100, 120)}
    weights = {}
    for freq in logs:
        model = build("maddpg-mpe2", checkpoint_freq=freq).learn(250, callback=lambda log, _, f=freq: logs[f].append(log))
        weights[freq] = model.get_weights()
    assert [log["checkpoint"] for log in logs[0]] == [log["checkpoint"] for log in logs[None]] == [False] * 5
    assert [log["total_env_steps"] for log in logs[100] if log["checkpoint"]] == [100, 200]
    assert [log["total_env_steps"] for log in logs[120] if log["checkpoint"]] == [150, 250]  # the rounds past 120, 240
    assert logs[100][:2] == [{**log, "checkpoint": i == 1} for i, log in enumerate(logs[0][:2])]
    assert logs[100][2:] != logs[0][2:]  # the third round plays the boundary's new episodes
    assert_same(weights[0], weights[None])
    with pytest.raises(AssertionError):
        assert_same(weights[0], weights[100])
    with pytest.raises(ConfigError, match=r"^checkpoint_freq must be an integer >= 0"):
        build("maddpg-mpe2", checkpoint_freq=-5)


def test_random_draws_in_a_checkpoint_rounds_callback_do_not_change_the_run(tmp_path):
    def draw(log, _model):
        if log["checkpoint"]:  # e.g. an evaluation that samples actions
            torch.rand(3), np.random.rand(3), random.random()

    plain = build("mappo-mpe2").learn(300).get_weights()
    drawn = build("mappo-mpe2").learn(300, callback=draw).get_weights()
    assert_same(plain, drawn)


def test_checkpoint_only_at_a_boundary_and_one_before_training(tmp_path):
    model = build("ippo-mpe2")
    model.save_checkpoint(tmp_path / "start.zip")  # before training: boundary 0, the construction
    model.learn(50)
    with pytest.raises(ConfigError, match=r"^save_checkpoint is possible only at a checkpoint boundary"):
        model.save_checkpoint(tmp_path / "mid.zip")
    assert not (tmp_path / "mid.zip").exists()
    resumed = IPPO.load_checkpoint(tmp_path / "start.zip").learn(200)
    assert_same(resumed.get_weights(), build("ippo-mpe2").learn(200).get_weights())
    # a checkpoint is also a model: load() reads its weights and counters
    model.learn(50)
    model.save_checkpoint(tmp_path / "at_100.zip")
    loaded = load_baseline(tmp_path / "at_100.zip")
    assert loaded.num_timesteps == 100 and saved_algo(tmp_path / "at_100.zip") == "ippo"
    assert_same(loaded.get_weights(), model.get_weights())
    # a model that load() read (fresh optimisers, -i) stands at its construction: a checkpoint there resumes it too
    loaded.save_checkpoint(tmp_path / "loaded.zip")
    resumed = IPPO.load_checkpoint(tmp_path / "loaded.zip").learn(100)
    assert_same(resumed.get_weights(), loaded.learn(100).get_weights())


def test_maddpg_checkpoint_stores_the_filled_buffer_once(tmp_path):
    """Only the filled rows; a next observation equal to the copy's next stored observation is not stored again."""
    config = {**SMALL_MADDPG, "n_envs": 2, "buffer_size": 10_000, "checkpoint_freq": 200}
    model = MADDPG("mpe2.simple_spread_v3", {"max_cycles": 25}, config, seed=0)
    model.learn(200)
    model.save_checkpoint(tmp_path / "c.zip")
    buffer = read_zip(tmp_path / "c.zip", ("training.pt",))["training.pt"]["algo"]["buffer"]
    assert buffer["size"] == 200 and buffer["obs"].shape[0] == 200  # a row per copy and step
    assert buffer["next_obs_rows"].tolist() == [48, 49, 98, 99, 148, 149, 198, 199]  # the episodes' last steps
    restored = MADDPG.load_checkpoint(tmp_path / "c.zip").buffer
    for key in ("obs", "next_obs", "actions", "rewards", "terminals"):
        assert np.array_equal(getattr(restored, key), getattr(model.buffer, key)), key


# --- files that are not what they claim ------------------------------------------------------------------------------


class Evil:
    """Unpickling this would run code (writes a file)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def rewrite(source: Path, target: Path, member: str, content: bytes) -> Path:
    """A copy of a zip file with one member's bytes replaced (a consistent zip: only what sb3_neppo reads is wrong)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as out:
        for item in src.infolist():
            out.writestr(item.filename, content if item.filename == member else src.read(item.filename))
    return target


def saved(tree) -> bytes:
    buffer = io.BytesIO()
    torch.save(tree, buffer)
    return buffer.getvalue()


def assert_one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "weights_only" not in message and "Traceback" not in message, message
    return message


class Files(dict):
    """A MADDPG model file and a checkpoint, both of a short run, each written when first asked for."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def __missing__(self, kind: str) -> Path:
        path = self.folder / f"{kind}.zip"
        if kind == "model":
            model = MADDPG("mpe2.simple_spread_v3", {"max_cycles": 20}, {**SMALL_MADDPG, "n_envs": 2}, seed=0)
            model.learn(100).save(path)
        else:
            build("maddpg-mpe2").learn(100).save_checkpoint(path)
        self[kind] = path
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    return Files(tmp_path_factory.mktemp("files"))


def test_truncated_or_corrupt_checkpoint_is_one_line(files, tmp_path):
    raw = files["checkpoint"].read_bytes()
    (tmp_path / "truncated.zip").write_bytes(raw[: len(raw) // 2])
    corrupt = bytearray(raw)
    offset = raw.index(b"training.pt") + 2000  # inside the training state's data: the zip's CRC catches it
    corrupt[offset] ^= 0xFF
    (tmp_path / "corrupt.zip").write_bytes(bytes(corrupt))
    (tmp_path / "empty.zip").write_bytes(b"")
    for name in ("truncated", "corrupt", "empty"):
        with pytest.raises(ConfigError, match=rf"^cannot load checkpoint .*{name}\.zip") as info:
            MADDPG.load_checkpoint(tmp_path / f"{name}.zip")
        assert_one_line(info)
    with pytest.raises(ConfigError, match="No such file") as info:
        MADDPG.load_checkpoint(tmp_path / "missing.zip")
    assert_one_line(info)


@pytest.mark.parametrize("kind", ["model", "checkpoint"])
def test_a_pickle_that_would_run_code_is_refused_in_one_line(files, tmp_path, kind):
    """torch's own message would suggest ``weights_only=False``: never passed on."""
    marker = tmp_path / "ran.txt"
    member = "training.pt" if kind == "checkpoint" else "weights.pt"
    evil = rewrite(files[kind], tmp_path / "evil.zip", member, saved({"x": Evil(marker)}))
    loads = [MADDPG.load_checkpoint] if kind == "checkpoint" else [MADDPG.load, load_baseline]
    for load in loads:
        with pytest.raises(ConfigError, match=rf"^cannot load {kind} .*evil\.zip: {member}: it holds Python objects") as info:
            load(evil)
        assert_one_line(info)
    assert not marker.exists()


def wrong_shape(weights: dict) -> dict:
    weights["critics"]["agent_0"]["0.weight"] = torch.zeros(2, 2)
    return weights


@pytest.mark.parametrize(
    "member, change, message",
    [
        ("weights.pt", wrong_shape, r"weights.pt does not fit a maddpg model \(.*size mismatch for 0.weight"),
        ("data.json", lambda data: {k: v for k, v in data.items() if k != "env_id"}, "data.json's env_id is None"),
        ("data.json", lambda data: {**data, "seed": "7"}, "data.json's seed is '7'"),
        ("data.json", lambda data: [data], "data.json is not a mapping"),
    ],
)
def test_altered_model_file_is_one_line(files, tmp_path, member, change, message):
    tree = change(read_zip(files["model"], (member,))[member])
    content = json.dumps(tree).encode() if member == "data.json" else saved(tree)
    path = rewrite(files["model"], tmp_path / "altered.zip", member, content)
    for load in (MADDPG.load, load_baseline):
        with pytest.raises(ConfigError, match=rf"^cannot load model .*altered\.zip: {message}") as info:
            load(path)
        assert_one_line(info)


def altered(files, tmp_path, change) -> Path:
    """A copy of the checkpoint whose training.pt went through ``change`` (well-formed, but wrong)."""
    state = read_zip(files["checkpoint"], ("training.pt",))["training.pt"]
    change(state)
    return rewrite(files["checkpoint"], tmp_path / "altered.zip", "training.pt", saved(state))


def drop_last_next_obs(buffer: dict) -> dict:
    """The newest transition's next observation (it has no successor to restore it from) left out."""
    return {**buffer, "next_obs_rows": buffer["next_obs_rows"][:-1], "next_obs": buffer["next_obs"][:-1]}


def _set(path: str, value):
    def change(tree):
        *head, last = path.split("/")
        for key in head:
            tree = tree[int(key) if key.isdigit() else key]
        tree[last] = value(tree[last]) if callable(value) else value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_set("algo/buffer/obs", lambda t: t[:, :, :-1]), "replay buffer obs is"),
        (_set("algo/buffer/size", 10**9), "replay buffer of size"),
        (lambda tree: tree["algo"].update(buffer=drop_last_next_obs(tree["algo"]["buffer"])), "next observations missing"),
        (_set("algo/actor_optimizers/agent_0/state/0/exp_avg", lambda t: t[:1]), "optimiser state exp_avg"),
        (_set("algo/rng", {"bit_generator": "PCG64"}), "cannot load checkpoint"),
        (_set("rng/torch", torch.zeros(3, dtype=torch.uint8)), "cannot load checkpoint"),
        (_set("rng/numpy", ("MT19937", torch.zeros(5, dtype=torch.int64), 0, 0, 0.0)), "cannot load checkpoint"),
        (lambda tree: tree.pop("algo"), "missing entry 'algo'"),
    ],
)
def test_altered_training_state_is_one_line(files, tmp_path, change, message):
    with pytest.raises(ConfigError, match=rf"^cannot load checkpoint .*altered\.zip: .*{message}|^{message}") as info:
        MADDPG.load_checkpoint(altered(files, tmp_path, change))
    assert_one_line(info)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("num_timesteps", "lots", "data.json's num_timesteps is 'lots'"),
        ("env_kwargs", None, "data.json's env_kwargs is None"),
        ("config", {"tau": 7}, "tau must be in"),
        ("checkpoint", {"format": 1, "boundary": 5, "schedule": None}, "boundary 5 is not the run's"),
        ("checkpoint", None, "no checkpoint entry"),
    ],
)
def test_altered_data_json_is_one_line(files, tmp_path, key, value, message):
    data = read_zip(files["checkpoint"], ("data.json",))["data.json"]
    data[key] = value
    path = rewrite(files["checkpoint"], tmp_path / "altered.zip", "data.json", json.dumps(data).encode())
    with pytest.raises(ConfigError, match=message) as info:
        MADDPG.load_checkpoint(path)
    assert_one_line(info)
    (tmp_path / "bad_json.zip").unlink(missing_ok=True)
    not_json = rewrite(files["checkpoint"], tmp_path / "bad_json.zip", "data.json", b"{not json")
    with pytest.raises(ConfigError, match="data.json: Expecting property name") as info:
        MADDPG.load_checkpoint(not_json)
    assert_one_line(info)


def test_a_model_or_another_algorithms_file_is_not_a_checkpoint(files):
    with pytest.raises(ConfigError, match="is a saved model, not a training checkpoint") as info:
        MADDPG.load_checkpoint(files["model"])
    assert_one_line(info)
    with pytest.raises(ConfigError, match="holds a maddpg model, not ippo"):
        IPPO.load_checkpoint(files["checkpoint"])
