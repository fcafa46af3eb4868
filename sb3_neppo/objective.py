"""The NePPO objective: F_i (the paper's eq. 3) and its log-sum-exp smoothing L_β. Pure functions of estimates."""

from __future__ import annotations

import numpy as np


def f_values(phi_coop, phi_dev, j_coop, j_dev) -> np.ndarray:
    """F_i = [Φ_w(π^Φ) - Φ_w(π_i^J, π^Φ_-i)] - [J_i(π^Φ) - J_i(π_i^J, π^Φ_-i)], elementwise.

    ``phi_coop`` and ``j_coop`` are values at the cooperative solution π^Φ; ``phi_dev`` and ``j_dev`` at player i's
    best-response deviation. With exact solvers F_i ≥ Reg_i(π^Φ) ≥ 0 (Theorem 3.1). Arrays broadcast, so the same
    function turns per-episode paired samples into per-episode F samples.
    """
    return (np.asarray(phi_coop) - np.asarray(phi_dev)) - (np.asarray(j_coop) - np.asarray(j_dev))


def log_sum_exp(f: np.ndarray, beta: float) -> float:
    """L_β(F) = (1/β) log Σ_i exp(β F_i), computed stably; max_i F_i ≤ L_β ≤ max_i F_i + log(N)/β."""
    f = np.asarray(f, dtype=np.float64)
    m = f.max()
    return float(m + np.log(np.exp(beta * (f - m)).sum()) / beta)


def softmax_weights(f: np.ndarray, beta: float) -> np.ndarray:
    """∂L_β/∂F_i = softmax(βF)_i."""
    f = np.asarray(f, dtype=np.float64)
    p = np.exp(beta * (f - f.max()))
    return p / p.sum()


def log_sum_exp_se(f: np.ndarray, se: np.ndarray, beta: float) -> float:
    """Standard error of L_β(F̂) from the F_i's standard errors, by the delta method: ∂L_β/∂F_i = softmax(βF)_i, so
    se(L_β) ≈ √(Σ_i softmax(βF)_i² se_i²) (the agents' estimates taken as independent)."""
    return float(np.sqrt(np.sum((softmax_weights(f, beta) * np.asarray(se, dtype=np.float64)) ** 2)))


def paired_gap_se(plus, minus, beta: float) -> float:
    """Standard error of L_β(F̂⁺) - L_β(F̂⁻) for two estimates on the same episodes (common random numbers), from their
    per-episode F samples (episodes × agents): by the delta method the gap is p · (F⁺ - F⁻) with p the mean of the two
    softmax(βF) weights, so its SE is that of the per-episode p · (f⁺_e - f⁻_e). NaN where either has no samples or
    they are not of the same episodes."""
    a, b = plus.samples, minus.samples
    if a is None or b is None or np.shape(a) != np.shape(b) or len(a) < 2:
        return float("nan")
    p = (softmax_weights(plus.mean, beta) + softmax_weights(minus.mean, beta)) / 2
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) @ p
    return float(d.std(ddof=1) / np.sqrt(len(d)))
