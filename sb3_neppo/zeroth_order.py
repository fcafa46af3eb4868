"""Two-point zeroth-order optimisation on the unit sphere, independent of any RL code.

One step of Algorithm 1: draw m directions u_j uniformly on the unit sphere in R^d, evaluate the loss at w ± δ u_j,
estimate g = d/(2δ) · mean_j (L(w + δu_j) - L(w - δu_j)) u_j, clip ‖g‖, and set w ← Proj(w - η_t g). In expectation g
is the gradient of the ball-smoothed loss L_δ(w) = E_{v ~ unit ball} L(w + δ v). With sampled losses each direction's
gap can also be shrunk by its signal-to-noise ratio (``shrink_z``), so that a gap within its noise moves w little.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sb3_neppo.errors import ConfigError

LARGE_DIRECTIONS = 10_000  # more than this, and one outer iteration takes minutes even with the exact solvers

SCHEDULES = ("constant", "inv_sqrt")


def sample_directions(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """``n`` directions drawn uniformly on the unit sphere in R^dim, shape ``(n, dim)``."""
    u = rng.standard_normal((n, dim))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def two_point_gradient(loss_plus: np.ndarray, loss_minus: np.ndarray, directions: np.ndarray, delta: float) -> np.ndarray:
    """The averaged two-point estimate d/(2δ) · mean_j (L⁺_j - L⁻_j) u_j."""
    dim = directions.shape[1]
    diff = np.asarray(loss_plus, dtype=np.float64) - np.asarray(loss_minus, dtype=np.float64)
    return dim / (2.0 * delta) * (diff[:, None] * directions).mean(0)


def shrink_factors(gaps: np.ndarray, gap_se: np.ndarray, z: float) -> np.ndarray:
    """Per direction, max(0, 1 - (z · se / |gap|)²): the positive-part James-Stein factor of a gap measured with standard
    error ``se`` (z = 1), 0 for a gap within z standard errors, near 1 for one far outside them. An unknown (NaN) or zero
    standard error, or z = 0, leaves the gap as it is."""
    gaps = np.abs(np.asarray(gaps, dtype=np.float64))
    se = np.nan_to_num(np.asarray(gap_se, dtype=np.float64), nan=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(se > 0, z * se / gaps, 0.0)
    return np.clip(1.0 - np.square(ratio), 0.0, 1.0)


def clip_norm(g: np.ndarray, max_norm: float | None) -> np.ndarray:
    """Scale g down to norm ``max_norm`` if it is longer (no clipping when ``max_norm`` is None)."""
    if max_norm is None:
        return g
    norm = float(np.linalg.norm(g))
    return g * (max_norm / norm) if norm > max_norm else g


@dataclass
class ZerothOrderOptimizer:
    """Projected two-point zeroth-order descent.

    :param delta: smoothing radius δ > 0.
    :param lr: base step size η ≥ 0 (0: w never moves, the control run that shows how L_β moves without the potential
        learning: the inner solvers still train from one iteration to the next).
    :param lr_schedule: ``"constant"`` (η_t = η) or ``"inv_sqrt"`` (η_t = η / √(t + 1)).
    :param n_directions: directions averaged per step (m ≥ 1).
    :param max_grad_norm: clip ‖g‖ to this (None: no clipping).
    :param shrink_z: scale direction j's part of g by :func:`shrink_factors` of its gap L⁺_j - L⁻_j and the gap's
        standard error (given to :meth:`step`), after clipping, which bounds the unshrunk estimate: a clipped step is
        as long as the noise allows, whatever the gap's size (0: no shrinkage, the paper's step).
    :param project: projection onto the feasible set, applied after each step.
    """

    delta: float
    lr: float
    lr_schedule: str = "inv_sqrt"
    n_directions: int = 1
    max_grad_norm: float | None = None
    shrink_z: float = 0.0
    project: Callable[[np.ndarray], np.ndarray] = staticmethod(lambda w: w)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not 0 < self.delta < np.inf:
            raise ConfigError(f"delta must be a finite number > 0 (got {self.delta}); e.g. -params delta:0.01")
        if not 0 <= self.lr < np.inf:
            raise ConfigError(f"lr must be a finite number >= 0 (got {self.lr}); e.g. -params lr:0.05")
        if self.lr_schedule not in SCHEDULES:
            raise ConfigError(f"lr_schedule must be one of {', '.join(SCHEDULES)} (got {self.lr_schedule!r})")
        if int(self.n_directions) != self.n_directions or self.n_directions < 1:
            raise ConfigError(f"n_directions must be an integer >= 1 (got {self.n_directions})")
        if self.max_grad_norm is not None and not 0 < self.max_grad_norm < np.inf:
            raise ConfigError(f"max_grad_norm must be a finite number > 0, or null (got {self.max_grad_norm})")
        if not 0 <= self.shrink_z < np.inf:
            raise ConfigError(f"shrink_z must be a finite number >= 0 (got {self.shrink_z}); e.g. -params shrink_z:1")
        if self.n_directions > LARGE_DIRECTIONS:
            warnings.warn(
                f"n_directions {self.n_directions}: every outer iteration solves {2 * self.n_directions} branches "
                f"(the paper uses 1 to 10); this will take long",
                stacklevel=2,
            )

    def step_size(self, t: int) -> float:
        """η_t for iteration t (0-based)."""
        return self.lr / np.sqrt(t + 1.0) if self.lr_schedule == "inv_sqrt" else self.lr

    def branches(self, w: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The perturbed points w + δu_j and w - δu_j, each of shape ``(m, d)``."""
        return w + self.delta * directions, w - self.delta * directions

    def step(
        self, w: np.ndarray, t: int, loss_plus, loss_minus, directions: np.ndarray, gap_se=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (new w, the gradient estimate used: clipped, then shrunk by ``gap_se``, the standard errors of the
        gaps L⁺_j - L⁻_j, when ``shrink_z`` > 0)."""
        raw = two_point_gradient(loss_plus, loss_minus, directions, self.delta)
        g = clip_norm(raw, self.max_grad_norm)
        if self.shrink_z > 0 and gap_se is not None:
            gaps = np.subtract(loss_plus, loss_minus, dtype=np.float64)
            kept = shrink_factors(gaps, gap_se, self.shrink_z) * gaps
            shrunk = two_point_gradient(kept, np.zeros_like(kept), directions, self.delta)
            raw_norm = float(np.linalg.norm(raw))
            g = shrunk * (float(np.linalg.norm(g)) / raw_norm if raw_norm > 0 else 1.0)
        return self.project(w - self.step_size(t) * g), g
