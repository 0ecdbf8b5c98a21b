"""Which child each handed-over task goes to (:meth:`ProcessPool.submit`'s choice).

A task whose job is known to be async goes to the child with the most free async slots, any
other to the one with the fewest sync tasks; a task of a chain goes where its chain's earlier
tasks are (:mod:`corequeue.executor.gates`); a task of a capped queue (a share,
:mod:`corequeue.core.shares`) only to a child that holds that queue, or to any while fewer than
its cap do. The slots are a target here, not a limit: the tasks were claimed for slots free
then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corequeue.core import shares
from corequeue.executor import gates
from corequeue.executor.child import ASYNC, SYNC
from corequeue.executor.task import Task


@dataclass
class Placing:
    """What the choice depends on besides the children: the pool's settings and knowledge."""

    concurrency: int  # async tasks per child
    max_jobs_per_process: int  # 0: no limit
    kinds: Mapping[str, int]  # job name -> SYNC or ASYNC, once one of its tasks started
    caps: Mapping[str, int]  # capped queue -> most children holding it


def holders(children: Sequence[Any], caps: Mapping[str, int]) -> dict[str, set[int]]:
    """Capped queue -> ids of the children holding it (a task of it pending there)."""
    held: dict[str, set[int]] = {queue: set() for queue in caps}
    if caps:
        for child in children:
            for task in child.pending.values():
                if task.queue in held:
                    held[task.queue].add(id(child))
    return held


def place(
    children: Sequence[Any], open_: Sequence[Any], tasks: Sequence[Task], how: Placing
) -> tuple[dict[int, list[Task]], list[Task]]:
    """The tasks for each child of ``open_`` (those that accept work), by ``id(child)``, and
    the tasks no child may take now (every child stopping or at its ``max_jobs_per_process``,
    a chain's children busy, a capped queue's children full): the caller gives them back."""
    most = how.max_jobs_per_process
    room = {id(c): (most - c.assigned if most else -1) for c in open_}
    open_ = [c for c in open_ if room[id(c)] != 0]
    n_sync = {id(c): len(c.pending) - len(c.in_async) for c in open_}
    n_async = {id(c): len(c.in_async) for c in open_}
    batches: dict[int, list[Task]] = {id(c): [] for c in open_}
    left: list[Task] = []
    homes = gates.homes(children, tasks)  # a chain's tasks go where its others are
    caps = how.caps
    held = holders(children, caps)
    for task in tasks:
        home = gates.home(task, homes) if task.gates else None
        allowed = open_
        cap = caps.get(task.queue) if caps else None
        if cap is not None:
            inside = held[task.queue]
            allowed = [c for c in open_ if shares.may_take(cap, len(inside), holds=id(c) in inside)]
        if not allowed or home is False or (home and all(c is not home for c in allowed)):
            left.append(task)
            continue
        child = home
        is_async = how.kinds.get(task.name, SYNC) == ASYNC
        if child is None and is_async:
            # Ties go to the child with fewer other tasks: tasks handed over before their
            # job was known to be async count as sync, and may block its event loop's slots.
            child = min(allowed, key=lambda c: (n_async[id(c)], n_sync[id(c)]))
        if child is not None and is_async and n_async[id(child)] < how.concurrency:
            n_async[id(child)] += 1
            child.in_async.add(task.job_id)
        else:
            child = home or min(allowed, key=lambda c: n_sync[id(c)])
            n_sync[id(child)] += 1
        if cap is not None:
            held[task.queue].add(id(child))
        homes.update(dict.fromkeys(task.gates, child))
        batches[id(child)].append(task)
        room[id(child)] -= 1
        if room[id(child)] == 0:
            open_ = [c for c in open_ if c is not child]
    return batches, left
