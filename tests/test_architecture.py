"""The package's shape, read from its source: no import cycle, and the parts that must not know each other do not."""

import ast
from pathlib import Path

import numpy as np
import pytest

from sb3_neppo import IPPO, MADDPG, MAPPO, NePPO
from sb3_neppo.errors import ConfigError, NePPODeprecationWarning
from sb3_neppo.solvers.base import Solvers
from sb3_neppo.solvers.exact import ExactBestResponseSolver, ExactCooperativeSolver, ExactEvaluator

PACKAGE = Path(__file__).resolve().parents[1] / "sb3_neppo"


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in it (a function's import counts: it is a cycle too)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("sb3_neppo"):
                deps.add(node.module)
                deps.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph[todo.pop()] - seen:
            seen.add(w)
            todo.append(w)
    return seen


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and "sb3_neppo.neppo" in graph["sb3_neppo"]  # the graph was read
    assert cycles(graph) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check can fail


def test_workers_never_need_the_model_and_the_model_no_solver_family():
    graph = import_graph()
    for module in ("sb3_neppo.execution", "sb3_neppo.distributed", "sb3_neppo.branch"):
        assert "sb3_neppo.neppo" not in reaches(graph, module), module  # workers rebuild from a plain spec
    assert not {"sb3_neppo.solvers.sb3", "sb3_neppo.solvers.exact"} & graph["sb3_neppo.neppo"]


def test_plot_imports_nothing_heavy():
    assert not {"sb3_neppo.neppo", "sb3_neppo.train", "sb3_neppo.config"} & reaches(import_graph(), "sb3_neppo.plot")


def test_every_module_says_what_it_is_for():
    missing = [p.name for p in PACKAGE.rglob("*.py") if not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


def _custom_bundle(model: NePPO) -> Solvers:
    """The exact slots in a bundle of the base class: none of ExactSolvers' own capabilities."""
    game, state = model.game, model.env.state()
    cooperative = ExactCooperativeSolver(game, state)
    return Solvers(cooperative, ExactBestResponseSolver(game), ExactEvaluator(game, state), exact=True)


@pytest.mark.slow
def test_a_custom_solver_bundle_gets_workers_save_and_load(tmp_path):
    probe = NePPO("matrix-alpha", env_kwargs={"alpha": 0.4}, seed=0)
    kwargs = dict(env_kwargs={"alpha": 0.4}, seed=5, n_directions=4, keep_best=False, iterate_solve="final", n_starts=1)
    named = NePPO("matrix-alpha", **kwargs).learn(n_iterations=3)
    one = NePPO("matrix-alpha", solver=_custom_bundle(probe), **kwargs).learn(n_iterations=3)
    two = NePPO("matrix-alpha", solver=_custom_bundle(probe), n_workers=2, **kwargs)
    two.learn(n_iterations=3)
    two.close()
    for model in (one, two):  # the bundle's slots are the exact ones: the same numbers as the named bundle
        np.testing.assert_array_equal(model.result.w, named.result.w)
        np.testing.assert_array_equal(model.result.F.mean, named.result.F.mean)
    assert one.summary()["solver"] == "exact" and one.regret() is None  # the base bundle knows no exact regret
    one.save(tmp_path / "custom.zip")
    with pytest.raises(ConfigError, match="uses the custom solver bundle"):
        NePPO.load(tmp_path / "custom.zip")
    loaded = NePPO.load(tmp_path / "custom.zip", solver=_custom_bundle(probe))
    np.testing.assert_array_equal(loaded.result.w, one.result.w)


def test_every_model_shares_the_base_and_the_sb3_learn_signature():
    import inspect

    from sb3_neppo.model import MultiAgentModel

    for cls in (NePPO, IPPO, MAPPO, MADDPG):
        assert issubclass(cls, MultiAgentModel)
        params = list(inspect.signature(cls.learn).parameters)
        assert params[:4] == ["self", "total_timesteps", "callback", "progress_bar"], cls


def test_learn_with_a_number_first_keeps_meaning_iterations_for_a_release_with_a_warning():
    with pytest.warns(NePPODeprecationWarning, match=r"write learn\(n_iterations=3\)"):
        old = NePPO("matrix-alpha", seed=0).learn(3)
    new = NePPO("matrix-alpha", seed=0).learn(n_iterations=3)
    assert old.num_iterations == new.num_iterations == 3
    np.testing.assert_array_equal(old.result.w, new.result.w)
    with pytest.raises(ConfigError, match="needs the sampled"):  # total_timesteps first is an env-step budget
        NePPO("matrix-alpha", seed=0).learn(total_timesteps=3)


def test_a_baseline_takes_an_env_object_as_neppo_does(tmp_path):
    from mpe2 import simple_spread_v3

    model = IPPO(simple_spread_v3.parallel_env(max_cycles=25), config={"n_envs": 2}, seed=0).learn(200)
    assert model.num_timesteps == 200 and model.summary()["env"] is None
    model.save(tmp_path / "ippo.zip")
    with pytest.raises(ConfigError, match="built from an env object, which is not saved: pass env="):
        IPPO.load(tmp_path / "ippo.zip")
    loaded = IPPO.load(tmp_path / "ippo.zip", env=simple_spread_v3.parallel_env(max_cycles=25))
    observations = loaded.env.reset(seed=1)[0]
    for agent, action in model.predict(observations)[0].items():
        np.testing.assert_array_equal(action, loaded.predict(observations)[0][agent])
