"""Agent roles: ``adversary_0..2`` are one role. Networks are shared within a role (``solver_kwargs.share``) and a
potential's weights can be tied within one (``potential_kwargs.tie``)."""

from __future__ import annotations

from collections.abc import Sequence

GROUPINGS = ("agent", "role", "all")  # how agents go together: alone, by role, all in one


def role_of(agent: str) -> str:
    """An agent's role: its name without the trailing ``_<number>`` (``adversary_2`` -> ``adversary``)."""
    head, _, tail = agent.rpartition("_")
    return head if head and tail.isdigit() else agent


def share_groups(agents: Sequence[str], share: str) -> list[list[int]]:
    """The agent indices that go together: each agent alone (``agent``), each role (``role``: ``adversary_0..2``,
    :func:`role_of`) or every agent (``all``); groups in the order of their first agent."""
    keys = {"agent": list(agents), "role": [role_of(a) for a in agents], "all": [""] * len(agents)}[share]
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    return list(members.values())
