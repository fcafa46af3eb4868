"""What NePPO prints: the cost of an iteration, one line per iteration (``verbose``) and the closing summary."""

from __future__ import annotations

from typing import Any

import numpy as np


def cost_text(cost: dict[str, int], budget: int | None = None) -> str:
    """NePPO's :meth:`~sb3_neppo.neppo.NePPO.iteration_cost` in words (and what a budget allows)."""
    if not cost["iteration"]:
        return "exact solvers, no env steps"
    solves = f"{cost['solves']} solve{'s' if cost['solves'] != 1 else ''}"
    text = (
        f"one outer iteration takes about {cost['iteration']:,} env steps ({solves} of "
        f"{cost['cooperative']:,} cooperative + {cost['best_responses']:,} best-response + "
        f"{cost['evaluation']:,} evaluation)"
    )
    if cost["best_response_every"] > 1:
        text += (
            f", best responses trained once every {cost['best_response_every']} iterations "
            f"(about {cost['iteration_mean']:,} on average)"
        )
    if budget is not None:
        iterations = max((budget - cost["solve"]) // cost["iteration_mean"], 0)
        text += f"; a budget of {budget:,} allows about {iterations} iteration{'s' if iterations != 1 else ''}"
    return text


def iteration_line(log: Any) -> str:
    """One iteration's log (:class:`~sb3_neppo.neppo.IterationLog`) in one line."""
    regret = "" if log.regret is None else f" max_regret={log.regret.max():.5f}"
    w = f"w={np.round(log.w, 4).tolist()}" if log.w.size <= 8 else f"|w|={np.linalg.norm(log.w):.4g}"
    steps = f" env_steps={log.env_steps}" if log.env_steps else ""
    return f"iter {log.iteration:5d} L={log.objective:.5f} max_F={log.F.max():.5f}{regret} {w}{steps}"


def format_summary(summary: dict) -> str:
    """A NePPO run's ``summary.json`` as the lines the command line prints at the end."""
    lines = [
        f"{summary['env']} {summary['env_kwargs'] if summary['env'] != 'matrix' else ''}".rstrip()
        + f": {summary['iterations']} iterations in {summary['wall_time_s']:.2f} s, seed {summary['seed']}",
        f"L_beta = {summary['objective']:.6f} (iterate {summary['selected_iteration']})",
    ]
    if summary["env_steps"]:
        lines[0] += f", {summary['env_steps']} env steps"
    for agent in summary["agents"]:
        line = f"  {agent:>16}: F = {summary['F'][agent]:.6f}"
        if summary["F_se"][agent]:
            line += f" ± {summary['F_se'][agent]:.6f}"
        if summary.get("regret") is not None:
            line += f"  regret = {summary['regret'][agent]:.6f}"
        if "strategies" in summary:
            names = summary["action_names"][agent]
            line += "  strategy = " + ", ".join(f"{n}: {p:.4f}" for n, p in zip(names, summary["strategies"][agent]))
        lines.append(line)
    if summary.get("max_regret") is not None:
        lines.append(f"max regret = {summary['max_regret']:.6f}")
    if summary.get("certificate") == "estimate":
        budget = summary.get("best_response_budget")
        trained = (
            f" ({budget['ppo_updates']} {budget.get('algo', 'PPO')} update(s), {budget['env_steps']} env steps per solve)"
            if budget
            else ""
        )
        lines.append(
            "F is an estimate: it bounds regret only as well as pi^Phi maximises Phi and the best responses are solved"
            f"{trained}; measure regret with python -m sb3_neppo.evaluate"
        )
    lines += [f"warning: {w}" for w in summary.get("warnings", [])]
    return "\n".join(lines)
