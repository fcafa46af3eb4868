"""Typed settings, one dataclass per part: :class:`NePPOConfig` (the run), :class:`SB3SolverConfig` (the sampled
solvers), :class:`BaselineConfig` (what every baseline has). Each checks its values on construction, in one line per
problem; :mod:`sb3_neppo.defaults` fills them from the hyperparameter files and the env."""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sb3_neppo.algorithms import algorithm_class, algorithm_params, check_policy, default_policy, fit_kwargs
from sb3_neppo.arguments import check_arguments
from sb3_neppo.devices import check_device_name, resolve_device
from sb3_neppo.envs.wrapping import parse_wrappers
from sb3_neppo.errors import ConfigError
from sb3_neppo.roles import GROUPINGS

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
# Env seeds of held-out episodes, far from training's (the run's seed + copy): the evaluation monitor's episode e plays
# seed HELD_OUT_SEED + e; the regret evaluator scores deviations on REGRET_EVAL_SEED + e and picks best-response starts
# on REGRET_SELECTION_SEED + e.
HELD_OUT_SEED = 10**6
REGRET_EVAL_SEED, REGRET_SELECTION_SEED = 2_000_000, 3_000_000


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


OUTER_STEPS = ("zeroth_order", "regret_weights")


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
    :param solver_kwargs: settings of the sb3 solvers (see :class:`~sb3_neppo.config.SB3SolverConfig`).
    :param n_iterations: outer iterations of Algorithm 1.
    :param delta: smoothing radius δ of the two-point estimate.
    :param lr: step size η of the zeroth-order step.
    :param lr_schedule: ``inv_sqrt`` (η/√(t+1)) or ``constant``.
    :param n_directions: random directions averaged per step.
    :param beta: temperature β of L_β.
    :param max_grad_norm: clip the gradient estimate to this norm (null: no clipping).
    :param shrink_z: with sampled solvers, scale each direction's step by max(0, 1 - (z · se / |gap|)²), the gap
        L_β(w + δu) - L_β(w - δu) and se its paired standard error: a gap within z standard errors moves w not at all
        (0: the paper's step; :mod:`sb3_neppo.zeroth_order`).
    :param outer_step: how w moves: ``zeroth_order`` (Algorithm 1: two solves at w ± δu per direction, the two-point
        step) or ``regret_weights`` (the convex potential only: one solve at w, then each group's logit moves by η
        times its agents' largest F_i less the mean over groups, clipped to ``max_grad_norm``: weight goes to the
        players who gain most by deviating; half the solves per iteration, ``iterate_solve`` does not apply, and it is
        not the paper's method).
    :param iterate_solve: ``every``: solve at every new iterate w (2m + 1 solves per iteration; the logged F is at w
        and that solve warm-starts the next iteration); ``final``: the paper's 2m solves per iteration (the next
        iteration warm-starts from the branch with the lowest L_β, whose F is logged) and one solve at the final w.
    :param keep_best: return the iterate with the lowest L_β rather than the last one. Only with exact solvers, where
        L_β is exact and so an unbiased certificate (choosing the minimum of noisy estimates would be biased low).
    :param n_starts: candidate starts screened by exact L_β (exact solvers, with keep_best): the descent also runs from
        the best of them, and the result is the lowest certificate of both descents (1: the given start only).
    :param env_wrapper: wrappers applied to the parallel env, in order (:mod:`sb3_neppo.envs.wrapping`).
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
    shrink_z: float = 0.0
    outer_step: str = "zeroth_order"
    iterate_solve: str = "final"
    keep_best: bool = False
    n_starts: int = 1
    env_wrapper: list = field(default_factory=list)

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
            "shrink_z": (int, float),
            "outer_step": (str,),
            "iterate_solve": (str,),
            "keep_best": (bool,),
            "n_starts": (int,),
        }
        for key, types in checks.items():
            value = getattr(self, key)
            if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
                names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise ConfigError(f"hyperparameter {key} must be {names}, got {value!r}")
        parse_wrappers(self.env_wrapper)
        if self.n_iterations < 1:
            raise ConfigError(f"n_iterations must be >= 1 (got {self.n_iterations})")
        if self.n_starts < 1:
            raise ConfigError(f"n_starts must be >= 1 (got {self.n_starts})")
        if self.outer_step not in OUTER_STEPS:
            raise ConfigError(f"outer_step must be one of {', '.join(OUTER_STEPS)} (got {self.outer_step!r})")
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


BR_WARM_STARTS = ("previous", "cooperative", "scratch")
SHARE = GROUPINGS  # which agents share a network (sb3_neppo.roles.share_groups)


@dataclass
class SB3SolverConfig:
    """Settings of the SB3 solvers (``solver_kwargs`` in ``hyperparams/neppo.yml``).

    :param n_envs: env copies stepped together by each PPO (the cooperative VecEnv has ``n_envs × n_agents`` slots).
    :param coop_updates: K1, PPO updates (rollout + optimisation) per cooperative solve.
    :param br_updates: K2, PPO updates per best response.
    :param br_n_envs: env copies (VMAS: worlds) each best response trains on (null: ``n_envs``). Fewer make a best
        response, which is 1/N of a solve per agent, cheaper per update than the cooperative solve; its minibatch is
        capped at its rollout (:mod:`sb3_neppo.defaults`).
    :param br_every: train the best responses at every k-th outer iteration only (k = 1: every solve); the branches of
        the iterations between (with ``outer_step: regret_weights``, their one solve at w) play the last trained
        ones, frozen, against their new π^Φ, so those iterations cost no best-response env steps (the cooperative
        solve and F's rollouts still run). The solve at the final iterate
        always trains them, so the certificate a run ends with is measured with fresh best responses.
    :param br_warm_start: ``previous`` (the agent's last best response; its cooperative policy the first time),
        ``cooperative`` (always the agent's cooperative policy) or ``scratch``.
    :param eval_episodes: episodes per joint policy in the rollout estimates.
    :param gamma: discount of J_i and Φ_w (and PPO's, unless ``ppo`` sets it).
    :param deterministic: frozen agents and evaluation rollouts play the most likely action instead of sampling.
    :param agent_indicator: one-hot agent id in the shared policy's observation (null: when there are 2+ agents).
    :param squash_actions: reach bounded Box actions through a sigmoid (see :class:`~sb3_neppo.envs.vec.AgentView`).
    :param algo: the cooperative solver's on-policy algorithm (:mod:`sb3_neppo.algorithms`: ``PPO``, ``A2C``, ``TRPO``,
        ``RecurrentPPO``, ``MaskablePPO`` or a ``module.Class`` path).
    :param br_algo: the best responses' algorithm (null: ``algo``); the regret evaluator's best responses use it too.
    :param share: the networks of π^Φ: ``all`` (one, shared by every agent, the agent indicator in its observation),
        ``role`` (one per role: ``adversary_0..2`` share one) or ``agent`` (one per agent), all paid φ_w and trained in
        one rollout; each best response warm-starts from its agent's own network. Feed-forward algorithms only for
        ``role`` and ``agent``.
    :param policy: the SB3 policy of both (null: each algorithm's own, ``MlpLstmPolicy`` for a recurrent one, else
        ``MlpPolicy``; leave it null when ``algo`` and ``br_algo`` are of different kinds).
    :param ppo: keyword arguments of the algorithm (``n_steps`` is per env copy); default: the paper's PPO
        (:data:`~sb3_neppo.config.PAPER_PPO`), with ``n_steps`` and the minibatch sized from the env by
        :mod:`sb3_neppo.defaults`; a default the algorithm does not take is left out.
    :param br_ppo: overrides of ``ppo`` for the best responses (keep the network the same to warm-start from π^Φ);
        with a ``br_algo`` of its own, the keys of ``ppo`` it does not take are left out.
    :param device: where the networks run: auto (a CUDA GPU if torch sees one), cpu, cuda (:mod:`sb3_neppo.devices`).
    :param br_log_std: with Box actions, restart a warm-started best response's exploration at this Gaussian log-std
        (null: keep the warm start's). A warm start whose noise has shrunk around one action cannot see a better one
        far away; fresh noise can.
    """

    n_envs: int = 16
    coop_updates: int = 1
    br_updates: int = 1
    br_n_envs: int | None = None
    br_every: int = 1
    br_warm_start: str = "previous"
    eval_episodes: int = 16
    gamma: float = 0.99
    deterministic: bool = False
    agent_indicator: bool | None = None
    squash_actions: bool = True
    ppo: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(PAPER_PPO))
    br_ppo: dict[str, Any] = field(default_factory=dict)
    br_log_std: float | None = None
    device: str = "auto"
    algo: str = "PPO"
    br_algo: str | None = None
    policy: str | None = None
    share: str = "all"

    def __post_init__(self) -> None:
        check_arguments(inspect.signature(SB3SolverConfig).parameters.values(), vars(self), "solver_kwargs.")
        for key in ("n_envs", "coop_updates", "br_updates", "br_every", "eval_episodes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"solver_kwargs.{key} must be an integer >= 1, got {value!r}")
        if self.br_n_envs is not None and (
            isinstance(self.br_n_envs, bool) or not isinstance(self.br_n_envs, int) or self.br_n_envs < 1
        ):
            raise ConfigError(f"solver_kwargs.br_n_envs must be an integer >= 1 or null (n_envs), got {self.br_n_envs!r}")
        if self.br_warm_start not in BR_WARM_STARTS:
            choices = ", ".join(BR_WARM_STARTS)
            raise ConfigError(f"solver_kwargs.br_warm_start must be one of {choices}, got {self.br_warm_start!r}")
        if not 0.0 < float(self.gamma) <= 1.0:
            raise ConfigError(f"solver_kwargs.gamma must be in (0, 1], got {self.gamma!r}")
        check_device_name(self.device, "solver_kwargs.device")
        for key in ("ppo", "br_ppo"):
            if not isinstance(getattr(self, key), dict):
                raise ConfigError(f"solver_kwargs.{key} must be a mapping of algorithm arguments, got {getattr(self, key)!r}")
        for best_response in (False, True):
            check_policy(self.algorithm(best_response), self.policy_name(best_response), "solver_kwargs.policy")
            self.algo_kwargs(best_response)
        if self.share not in SHARE:
            raise ConfigError(f"solver_kwargs.share must be one of {', '.join(SHARE)}, got {self.share!r}")
        if self.share != "all" and "Lstm" in self.policy_name():
            raise ConfigError(
                f"solver_kwargs.share {self.share}: networks of their own are trained in lockstep, which recurrent policies "
                f"({self.policy_name()}) are not; use share: all or a feed-forward algorithm"
            )

    def algorithm(self, best_response: bool = False) -> type:
        """The algorithm class of the cooperative solver or (``best_response``) of the best responses."""
        if best_response and self.br_algo is not None:
            return algorithm_class(self.br_algo, "solver_kwargs.br_algo")
        return algorithm_class(self.algo, "solver_kwargs.algo")

    def policy_name(self, best_response: bool = False) -> str:
        """The SB3 policy of the cooperative solver or the best responses (``policy``, or the algorithm's default:
        :func:`~sb3_neppo.algorithms.default_policy`)."""
        return self.policy if self.policy is not None else default_policy(self.algorithm(best_response))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> SB3SolverConfig:
        return dataclass_from_dict(cls, values, "solver_kwargs key")

    def algo_kwargs(self, best_response: bool = False) -> dict[str, Any]:
        """Keyword arguments of :meth:`algorithm` for the cooperative solver or (``best_response``) the best responses,
        checked (one line for an argument it does not take or a value of the wrong type)."""
        cls = self.algorithm(best_response)
        ppo = {"gamma": self.gamma, **self.ppo}
        if best_response and self.br_algo is not None and cls is not self.algorithm():
            ppo = {k: v for k, v in ppo.items() if k in algorithm_params(cls)}  # the cooperative algorithm's keys
        kwargs = fit_kwargs(ppo, cls, PAPER_PPO, "solver_kwargs.ppo")
        if best_response:
            kwargs.update(fit_kwargs(self.br_ppo, cls, {}, "solver_kwargs.br_ppo"))
        check_algo_kwargs(cls, kwargs, "solver_kwargs.br_ppo" if best_response else "solver_kwargs.ppo")
        return kwargs

    def n_steps(self, best_response: bool = False) -> int:
        """Env steps per env copy and update of the cooperative solver or the best responses."""
        cls = self.algorithm(best_response)
        return int(self.algo_kwargs(best_response).get("n_steps", algorithm_params(cls)["n_steps"].default))

    def envs(self, best_response: bool = False) -> int:
        """Env copies (VMAS: worlds) of the cooperative solver or of each best response."""
        return self.br_n_envs if best_response and self.br_n_envs is not None else self.n_envs

    def torch_device(self) -> str:
        """The device the networks run on (:func:`~sb3_neppo.devices.resolve_device`: one line for a missing GPU)."""
        return resolve_device(self.device, "solver_kwargs.device")


AT_LEAST_ONE = ("n_steps", "batch_size", "n_epochs")


def check_algo_kwargs(cls: type, kwargs: Mapping[str, Any], where: str) -> None:
    """One line for an argument of the algorithm ``cls`` that SB3 would reject late or with a traceback: an unknown
    name, a value of the wrong type (checked against the algorithm's annotations: ``learning_rate: abc``,
    ``n_epochs: 2.5``), ``n_steps``, ``batch_size`` or ``n_epochs`` below 1 (SB3 fails mid-training on
    ``n_epochs: 0``), or env/policy/seed."""
    if "env" in kwargs or "policy" in kwargs or "seed" in kwargs:
        raise ConfigError(f"{where} may not set env, policy or seed: NePPO sets them (the policy: solver_kwargs.policy)")
    params = algorithm_params(cls)
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ConfigError(
            f"bad {cls.__name__} argument in {where}: {', '.join(map(str, unknown))} is not an argument of "
            f"{cls.__name__}; it takes: {', '.join(params)}"
        )
    check_arguments([params[k] for k in kwargs], kwargs, f"bad {cls.__name__} argument: {where}.")
    for key in AT_LEAST_ONE:
        if key in kwargs and kwargs[key] < 1:
            raise ConfigError(f"bad {cls.__name__} argument: {where}.{key} must be >= 1, got {kwargs[key]!r}")


@dataclass
class BaselineConfig:
    """Settings every baseline has (its ``hyperparams/<algo>.yml`` entry adds its own).

    :param n_envs: env copies (VMAS: worlds) stepped together.
    :param gamma: discount of the agents' returns J_i in reports and in the regret evaluator.
    :param squash_actions: reach bounded Box actions through a sigmoid (see :class:`~sb3_neppo.envs.vec.AgentView`).
    :param ppo: keyword arguments of the algorithm (``algo``): the learners' (PPO baselines) and the regret
        evaluator's best responses' (all baselines); ``n_steps`` is per env copy.
    :param algo: the on-policy algorithm of the IPPO learners and of the regret evaluator's best responses
        (:mod:`sb3_neppo.algorithms`; feed-forward ones: ``PPO``, ``A2C``, ``TRPO``, ``MaskablePPO`` where the env gives
        action masks); MAPPO's learner too (``PPO``, ``A2C`` or ``TRPO``: its centralised critic is theirs); MADDPG
        trains with its own and takes ``PPO`` only (for the evaluator).
    :param policy: the SB3 policy of both (null: ``MlpPolicy``; ``CnnPolicy`` keeps image observations as images, for
        IPPO).
    :param env_wrapper: wrappers applied to the parallel env, in order (:mod:`sb3_neppo.envs.wrapping`).
    :param device: where the networks run: auto (a CUDA GPU if torch sees one), cpu, cuda (:mod:`sb3_neppo.devices`).
    :param checkpoint_freq: env steps between checkpoint boundaries (the first round that ends at or past each
        multiple; 0 or null: none). At a boundary the training envs start new episodes from seeds derived from
        (seed, boundary), and :meth:`MultiAgentAlgorithm.save_checkpoint` may write the training state (see
        :meth:`MultiAgentAlgorithm.learn`). The default, 50 000, costs one early episode start per copy every
        50 000 env steps, and a checkpoint write when the caller saves one.
    """

    n_envs: int = 16
    gamma: float = 0.99
    squash_actions: bool = True
    ppo: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(PAPER_PPO))
    checkpoint_freq: int | None = 50_000
    env_wrapper: list = field(default_factory=list)
    device: str = "auto"
    algo: str = "PPO"
    policy: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n_envs, bool) or not isinstance(self.n_envs, int) or self.n_envs < 1:
            raise ConfigError(f"n_envs must be an integer >= 1, got {self.n_envs!r}")
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"gamma must be a number in (0, 1], got {self.gamma!r}")
        if not isinstance(self.squash_actions, bool):
            raise ConfigError(f"squash_actions must be true or false, got {self.squash_actions!r}")
        if not isinstance(self.ppo, dict) or {"env", "policy", "seed"} & set(self.ppo):
            raise ConfigError(f"ppo must be a mapping of PPO arguments other than env, policy and seed, got {self.ppo!r}")
        freq = self.checkpoint_freq
        if freq is not None and (isinstance(freq, bool) or not isinstance(freq, int) or freq < 0):
            raise ConfigError(f"checkpoint_freq must be an integer >= 0 (env steps; 0 or null: no checkpoints), got {freq!r}")
        parse_wrappers(self.env_wrapper)
        check_device_name(self.device)
        check_policy(self.algorithm(), self.policy_name(), "policy")
        if "Lstm" in self.policy_name():
            raise ConfigError(
                f"algo {self.algo}: the baselines' learners are trained in lockstep, by feed-forward algorithms; use PPO, "
                "A2C, TRPO or MaskablePPO"
            )
        self.algo_kwargs()

    def require_mlp(self, name: str, algorithms: tuple[str, ...]) -> None:
        """One line unless ``policy`` is MlpPolicy and ``algo`` one of ``algorithms``: what ``name`` (MAPPO, MADDPG)
        builds its own networks from."""
        if self.algorithm().__name__ not in algorithms or self.policy_name() != "MlpPolicy":
            raise ConfigError(
                f"{name} trains its own networks on flat observations: algo {' or '.join(algorithms)} and policy MlpPolicy "
                f"only (got {self.algo}, {self.policy_name()}); use IPPO for other algorithms and for CNN policies"
            )

    def algorithm(self) -> type:
        """The algorithm class of the PPO-style learners and the evaluator's best responses."""
        return algorithm_class(self.algo, "algo")

    def policy_name(self) -> str:
        """The SB3 policy (``policy``, or the algorithm's default)."""
        return self.policy if self.policy is not None else default_policy(self.algorithm())

    def algo_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`algorithm` from ``ppo`` and ``gamma`` (a paper default it does not take left
        out), checked: one line for an argument it does not take. A copy: A2C writes its optimizer class into the
        ``policy_kwargs`` it is given (the settings, saved as JSON)."""
        cls = self.algorithm()
        kwargs = fit_kwargs({"gamma": self.gamma, **self.ppo}, cls, PAPER_PPO, "ppo")
        check_algo_kwargs(cls, kwargs, "ppo")
        return copy.deepcopy(kwargs)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None):
        return dataclass_from_dict(cls, values, "hyperparameter")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
