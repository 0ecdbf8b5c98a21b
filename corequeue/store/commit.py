"""Acting once a caller's transaction commits: SQLAlchemy's commit events on one Connection or
Session (``job_enqueued`` hooks of a ``connection=`` enqueue fire there)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

#: Actions waiting for the commit of each Connection or Session's transaction under way.
_PENDING: weakref.WeakKeyDictionary[Any, list[Callable[[], Any]]] = weakref.WeakKeyDictionary()


def after_commit(connection: Any, action: Callable[[], Any]) -> None:
    """Run ``action`` once the enqueue is committed: now without ``connection`` (the store
    committed it), else when the caller's transaction on ``connection`` (a SQLAlchemy
    Connection or Session) commits (for a Connection: as it commits); never after a rollback.
    """
    if connection is None:
        action()
        return
    pending = _PENDING.get(connection)
    if pending is None:
        pending = _PENDING[connection] = []
        if isinstance(connection, Session):
            event.listen(connection, "after_commit", _committed)
            event.listen(connection, "after_rollback", _rolled_back)
        else:
            event.listen(connection, "commit", _committed)
            event.listen(connection, "rollback", _rolled_back)
    pending.append(action)


def _committed(target: Any) -> None:
    actions = _PENDING.get(target)
    if actions:
        taken = list(actions)
        actions.clear()
        for action in taken:
            action()


def _rolled_back(target: Any) -> None:
    actions = _PENDING.get(target)
    if actions:
        actions.clear()
