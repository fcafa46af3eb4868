"""Normal-form games: a payoff array and the exact quantities NePPO needs from it."""

from __future__ import annotations

import math
import numbers
import os
import string
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sb3_neppo.errors import ConfigError

Strategies = Sequence[np.ndarray]  # one probability vector per player


PAYOFF_BOUND = 1e100
"""Largest |payoff| accepted. NePPO combines differences of payoffs into F_i (about 4 max|u|), the zeroth-order step
divides them by δ and multiplies by the dimension of w, and the gradient's norm squares the result: with |u| ≤ 1e100
that stays below float64's 1.8e308 for any δ ≥ 1e-30 and any w of up to 1e10 values; payoffs near 1e308 overflow at
once. Scaling a game's payoffs changes none of its equilibria."""

LARGE_GAME = 10**6
"""Payoff entries from which a game is announced as large (measured: a 2 × 700 × 700 game takes about 2 s per outer
iteration with the exact solvers, so 500 iterations take a quarter of an hour; cost grows with the entries)."""


def _physical_memory() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def _check_size(shape: tuple[int, ...]) -> None:
    """Refuse a payoff table that cannot fit in memory; warn (before any work) about a large one."""
    entries = math.prod(shape)
    if entries < LARGE_GAME:
        return
    table, memory = 8 * entries, _physical_memory()
    if memory is not None and table > memory:
        raise ConfigError(
            f"payoffs of shape {shape} have {entries:,} entries: {table / 2**30:,.1f} GiB as float64, more than this "
            f"machine's {memory / 2**30:,.1f} GiB of memory; give a smaller game"
        )
    warnings.warn(
        f"a large game: payoffs of shape {shape} have {entries:,} entries ({table / 2**20:,.0f} MiB as float64; the exact "
        f"solvers keep about 4 such tables, {4 * table / 2**30:,.1f} GiB) and every solve reads all of them, so expect "
        "slow iterations (a 2 x 700 x 700 game took about 2 s per outer iteration on a 2-core machine)",
        stacklevel=5,  # the caller of NormalFormGame(...)
    )


def _as_payoff_array(payoffs) -> np.ndarray:
    if isinstance(payoffs, np.ndarray):
        _check_size(payoffs.shape)  # before a float64 copy of a table too big to make
    try:
        array = np.asarray(payoffs, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            "payoffs must be a rectangular nested list of numbers of shape (n_players, k_1, ..., k_n), "
            f"e.g. [[[3,0],[5,1]],[[3,5],[0,1]]] for a 2x2 game ({exc.__class__.__name__}: ragged or non-numeric)"
        ) from None
    except MemoryError:
        raise ConfigError("payoffs do not fit in memory as float64; give a smaller game") from None
    if array.ndim < 2 or array.shape[0] != array.ndim - 1:
        raise ConfigError(
            f"payoffs have shape {array.shape}, but an n-player game needs shape (n, k_1, ..., k_n) with n = number of "
            "action axes; e.g. a 2-player 2x2 game is [[[a,b],[c,d]], [[e,f],[g,h]]] (player 0's table, then player 1's)"
        )
    if array.shape[0] < 2:
        raise ConfigError(f"a game needs at least 2 players, got payoffs of shape {array.shape}")
    if min(array.shape[1:]) < 1:
        raise ConfigError(f"every player needs at least one action, got payoffs of shape {array.shape}")
    if not isinstance(payoffs, np.ndarray):
        _check_size(array.shape)
    largest = np.maximum(array.max(), -array.min())  # NaN if any entry is NaN; no |payoffs| copy of a big table
    if not np.isfinite(largest):
        raise ConfigError("payoffs contain NaN or infinite values; give finite numbers only")
    if largest > PAYOFF_BOUND:
        raise ConfigError(
            f"payoffs reach |u| = {largest:.3g}, but NePPO needs |payoff| <= {PAYOFF_BOUND:.0e}: its F and L_beta combine, "
            "divide and square payoff differences, which overflow float64 beyond that; rescale the payoffs (that keeps "
            "the game's equilibria)"
        )
    return array


def _sequence(value, what: str, example: str) -> tuple:
    """``value`` as a tuple when it is a list (a string or a number is one line, never read as a sequence)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple, np.ndarray)):
        raise ConfigError(f"{what} must be a list, e.g. {example}; got {value!r}")
    return tuple(value)


def _names(value, what: str, example: str) -> tuple[str, ...]:
    """A list of names as a tuple of strings; a string, a number or a name that is no string is one line."""
    names = _sequence(value, what, example)
    for name in names:
        if not isinstance(name, str):
            raise ConfigError(f"{what} must be strings (quote them: {example}); got {name!r} in {list(names)}")
    return names


@dataclass(frozen=True)
class NormalFormGame:
    """An n-player game with ``k_i`` actions for player i.

    :param payoffs: array of shape ``(n, k_1, ..., k_n)``; ``payoffs[i][a_1, ..., a_n]`` is player i's payoff.
    :param agents: player names (default ``player_0, player_1, ...``).
    :param action_names: optional names of each player's actions, used in reports.
    """

    payoffs: np.ndarray
    agents: tuple[str, ...] = ()
    action_names: tuple[tuple[str, ...], ...] = ()
    einsum_spec: str = field(init=False, repr=False, compare=False)  # batched expected payoffs, see __post_init__

    def __post_init__(self) -> None:
        payoffs = _as_payoff_array(self.payoffs)
        payoffs.setflags(write=False)
        object.__setattr__(self, "payoffs", payoffs)
        n = payoffs.shape[0]
        agents = _names(self.agents, "agents", "[row, column]") or tuple(f"player_{i}" for i in range(n))
        if len(agents) != n or len(set(agents)) != n:
            raise ConfigError(f"need {n} distinct agent names for a {n}-player game, got {list(agents)}")
        object.__setattr__(self, "agents", agents)
        example = "[[C, D], [C, D]]"
        names = tuple(
            _names(a, "each player's action_names", example) for a in _sequence(self.action_names, "action_names", example)
        ) or tuple(
            tuple(f"{chr(ord('A') + i) if i < 26 else f'P{i}_'}{j + 1}" for j in range(k))
            for i, k in enumerate(self.n_actions)
        )
        if tuple(len(a) for a in names) != self.n_actions:
            raise ConfigError(f"action_names must give {self.n_actions} names per player, got {[len(a) for a in names]}")
        object.__setattr__(self, "action_names", names)
        if n > 24:
            raise ConfigError(f"at most 24 players are supported by the exact normal-form path, got {n}")
        letters = string.ascii_lowercase[:n]
        # 'z' indexes players, 'Y' indexes a batch of profiles: payoffs[z, a, b, ...] * x_a[Y, a] * x_b[Y, b] -> [Y, z]
        operands = ",".join(f"Y{c}" for c in letters)
        object.__setattr__(self, "einsum_spec", f"z{letters},{operands}->Yz")

    @property
    def n_agents(self) -> int:
        return self.payoffs.shape[0]

    @property
    def n_actions(self) -> tuple[int, ...]:
        return tuple(self.payoffs.shape[1:])

    def expected_payoffs_batch(self, strategies: Sequence[np.ndarray]) -> np.ndarray:
        """Expected payoffs of P mixed profiles: ``strategies[i]`` has shape ``(P, k_i)``; returns ``(P, n)``."""
        return np.einsum(self.einsum_spec, self.payoffs, *strategies)

    def expected_payoffs(self, strategies: Strategies) -> np.ndarray:
        """Expected payoff of each player under a mixed profile (one probability vector per player)."""
        return self.expected_payoffs_batch([np.asarray(x, dtype=np.float64)[None] for x in strategies])[0]

    def deviation_payoffs(self, player: int, strategies: Strategies) -> np.ndarray:
        """Player ``player``'s expected payoff for each of its pure actions while the others play ``strategies``."""
        table = np.moveaxis(self.payoffs[player], player, 0)
        for j in reversed(range(self.n_agents)):
            if j != player:
                table = table @ np.asarray(strategies[j], dtype=np.float64)
        return table

    def best_response(self, player: int, strategies: Strategies) -> int:
        """A best pure action of ``player`` against the others' strategies (lowest index on ties)."""
        return int(np.argmax(self.deviation_payoffs(player, strategies)))

    def regret(self, strategies: Strategies) -> np.ndarray:
        """Exact regret of every player: best pure deviation payoff minus current expected payoff (never negative)."""
        current = self.expected_payoffs(strategies)
        best = np.array([self.deviation_payoffs(i, strategies).max() for i in range(self.n_agents)])
        return best - current

    def pure_profiles(self) -> np.ndarray:
        """All pure action profiles, shape ``(prod k_i, n)``, in C order."""
        return np.stack(np.unravel_index(np.arange(int(np.prod(self.n_actions))), self.n_actions), axis=-1)


def one_hot(action: int, k: int) -> np.ndarray:
    x = np.zeros(k)
    x[action] = 1.0
    return x


# --- the paper's alpha family and a few classics -------------------------------------------------------------------------


def alpha_game(alpha: float) -> NormalFormGame:
    """The paper's eq. 7: alpha = 0 is the toy game with unique NE (A1, B1); alpha = 1 is matching pennies."""
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}; e.g. --env-kwargs alpha:0.4")
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {a}; e.g. --env-kwargs alpha:0.4")
    row = [[1.0, 1 - 2 * a], [(1 - 3 * a) / 2, a]]
    col = [[1 - 2 * a, (a + 1) / 2], [(7 - 3 * a) / 4, 2 - 3 * a]]
    return NormalFormGame(np.array([row, col]), agents=("player_0", "player_1"), action_names=(("A1", "A2"), ("B1", "B2")))


def prisoners_dilemma() -> NormalFormGame:
    """Cooperate/Defect with payoffs T=5 > R=3 > P=1 > S=0; the unique NE is (Defect, Defect)."""
    row = [[3.0, 0.0], [5.0, 1.0]]
    return NormalFormGame(np.array([row, np.transpose(row)]), action_names=(("C", "D"), ("C", "D")))


def stag_hunt() -> NormalFormGame:
    """Stag/Hare: two pure NE, (Stag, Stag) payoff-dominant and (Hare, Hare) risk-dominant."""
    row = [[4.0, 0.0], [3.0, 3.0]]
    return NormalFormGame(np.array([row, np.transpose(row)]), action_names=(("Stag", "Hare"), ("Stag", "Hare")))


def matching_pennies() -> NormalFormGame:
    """Zero-sum Heads/Tails: the unique NE is (1/2, 1/2) for both players."""
    row = np.array([[1.0, -1.0], [-1.0, 1.0]])
    return NormalFormGame(np.array([row, -row]), action_names=(("H", "T"), ("H", "T")))
