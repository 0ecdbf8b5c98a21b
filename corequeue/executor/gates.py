"""Gates: which child a task of a chain must go to.

Tasks that share a gate (the jobs of one chain under a concurrency limit, see
:mod:`corequeue.core.limits`) run one after another, never two at once: the pool hands them
all to the child that has the chain's earlier tasks (which starts them one at a time, in
order), and any child while none of it is pending anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from corequeue.executor.task import Task


class _Holder(Protocol):
    pending: dict[int, Task]


def homes(children: Iterable[_Holder], tasks: Sequence[Task]) -> dict[str, Any]:
    """Gate -> the child with a pending task of that gate, for the gates of ``tasks``
    (empty when none of them has a gate: the usual case, at no cost)."""
    wanted = {gate for task in tasks for gate in task.gates}
    if not wanted:
        return {}
    return {
        gate: child
        for child in children
        for task in child.pending.values()
        for gate in task.gates
        if gate in wanted
    }


def home(task: Task, where: Mapping[str, Any]) -> Any:
    """The child ``task`` must go to; None: any child; False: no child may take it now (its
    gates are pending in two children: it waits until one of them is done)."""
    found = {id(where[gate]): where[gate] for gate in task.gates if gate in where}
    if len(found) > 1:
        return False
    return next(iter(found.values()), None)
