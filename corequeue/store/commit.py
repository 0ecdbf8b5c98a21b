"""Acting once a caller's transaction has committed, strictly after its COMMIT reached the
database: the ``job_enqueued`` hooks of a ``connection=`` enqueue, and the pytest plugin's
inline and captured jobs.

- A Session: its outermost transaction's ``after_commit`` event (after the COMMIT of each of its
  connections) marks it committed; the actions run when that transaction ends
  (``after_transaction_end``), so the Session is usable again if one of them raises. A
  Session joined to an outer transaction (``join_transaction_mode``) counts its own commit.
- A Connection: SQLAlchemy's ``commit`` event fires *before* the COMMIT is sent, and none
  fires after it (an ``after_commit`` for Core was declined: sqlalchemy/sqlalchemy#4943), so
  the engine's dialect gets a ``do_commit`` that runs the actions armed by that event once the
  database has answered. An action that raises there leaves the Connection as a failed commit
  would: roll it back before using it again (``engine.begin()`` blocks do).
- Savepoints: only the outermost commit counts. A rolled-back savepoint drops what was
  registered since it began; a released one keeps it for the outer transaction to decide.
- A rollback (or a failed COMMIT) drops every action waiting on that transaction.

Actions run in the order they were registered; when several raise, the first exception is
raised once all have run.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Dialect

from corequeue.store.rows import is_session

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, SessionTransaction

Action = Callable[[], Any]

_order = itertools.count(1)
_lock = threading.Lock()


class _Savepoints:
    """When each savepoint of a connection began, in registration order. SQLAlchemy names a
    savepoint only after its ``savepoint`` event, so the savepoint is known by its
    NestedTransaction, the connection's current one at the next event (``settle``)."""

    def __init__(self) -> None:
        self.began: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self.pending: int | None = None  # a savepoint begun, its transaction not seen yet

    def settle(self, conn: Connection) -> Any:
        """The connection's current savepoint (None outside one), its beginning recorded."""
        current = conn.get_nested_transaction()
        if self.pending is not None and current is not None:
            self.began.setdefault(current, self.pending)
        self.pending = None
        return current

    def clear(self) -> None:
        self.began.clear()
        self.pending = None


@dataclass
class _Waiting:
    """The actions waiting on one Connection or Session, each with its registration order."""

    actions: list[tuple[int, Action]] = field(default_factory=list)
    savepoints: _Savepoints = field(default_factory=_Savepoints)
    committed: bool = False  # a Session's outermost transaction committed


_WAITING: weakref.WeakKeyDictionary[Any, _Waiting] = weakref.WeakKeyDictionary()
#: A Connection's actions between its ``commit`` event and its dialect's COMMIT, by the id of
#: the pooled DB-API connection the dialect receives.
_ARMED: dict[int, list[tuple[int, Action]]] = {}


def after_commit(connection: Connection | Session | None, action: Action) -> None:
    """Run ``action`` once the enqueue is committed: now without ``connection`` (the store
    committed it), else once the caller's transaction on ``connection`` (a SQLAlchemy
    Connection or Session) has committed (see the module docstring); never after a rollback.
    A transaction is begun on ``connection`` if none is (as the enqueue's INSERT would).
    """
    if connection is None:
        action()
        return
    with _lock:
        waiting = _WAITING.get(connection)
        if waiting is None:
            waiting = _WAITING[connection] = _Waiting()
            _listen(connection)
    if is_session(connection):
        conn = connection.connection()  # begins the Session's transaction if none is under way
        if conn not in _WAITING:
            _WAITING[conn] = _Waiting()
            _listen_savepoints(conn)
        waiting.savepoints = _WAITING[conn].savepoints
        waiting.savepoints.settle(conn)
    else:
        if not connection.in_transaction():
            connection.begin()
        waiting.savepoints.settle(connection)
    waiting.actions.append((next(_order), action))


def _listen(connection: Connection | Session) -> None:
    if is_session(connection):
        event.listen(connection, "after_commit", _session_committed)
        event.listen(connection, "after_transaction_end", _session_ended)
        return
    _patch_dialect(connection.engine.dialect)
    event.listen(connection, "commit", _connection_committing)
    event.listen(connection, "rollback", _connection_rolled_back)
    _listen_savepoints(connection)


def _listen_savepoints(connection: Connection) -> None:
    event.listen(connection, "savepoint", _savepoint)
    event.listen(connection, "rollback_savepoint", _savepoint_rolled_back)
    event.listen(connection, "release_savepoint", _savepoint_released)


# -- sessions -------------------------------------------------------------------------------


def _session_committed(session: Session) -> None:
    waiting = _WAITING.get(session)
    if waiting is not None and session.get_nested_transaction() is None:
        waiting.committed = True  # the outermost transaction (a savepoint's commit: not yet)


def _session_ended(session: Session, transaction: SessionTransaction) -> None:
    waiting = _WAITING.get(session)
    if waiting is None or transaction.parent is not None:
        return  # a savepoint ended: its rollback is seen on the connection
    actions, waiting.actions = waiting.actions, []
    committed, waiting.committed = waiting.committed, False
    if committed:
        _run(actions)


# -- connections ----------------------------------------------------------------------------


def _patch_dialect(dialect: Dialect) -> None:
    """Give ``dialect`` a ``do_commit`` that runs the armed actions after the COMMIT."""
    if getattr(dialect, "_corequeue_after_commit", False):
        return
    original = dialect.do_commit

    def do_commit(dbapi_connection: Any) -> None:
        try:
            original(dbapi_connection)
        except BaseException:
            _ARMED.pop(id(dbapi_connection), None)
            raise
        actions = _ARMED.pop(id(dbapi_connection), None)
        if actions:
            _run(actions)

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect._corequeue_after_commit = True  # type: ignore[attr-defined]


def _connection_committing(conn: Connection) -> None:
    waiting = _WAITING.get(conn)
    if waiting is not None and waiting.actions:
        _ARMED[id(conn.connection)] = waiting.actions
        waiting.actions = []
    if waiting is not None:
        waiting.savepoints.clear()


def _connection_rolled_back(conn: Connection) -> None:
    waiting = _WAITING.get(conn)
    if waiting is not None:
        waiting.actions = []
        waiting.savepoints.clear()


def _savepoint(conn: Connection, name: str | None) -> None:
    waiting = _WAITING.get(conn)
    if waiting is not None:
        waiting.savepoints.settle(conn)  # the enclosing savepoint, if it was just begun
        waiting.savepoints.pending = next(_order)


def _savepoint_rolled_back(conn: Connection, name: str, context: Any) -> None:
    waiting = _WAITING.get(conn)
    if waiting is None:
        return
    rolled_back = waiting.savepoints.settle(conn)
    # A savepoint begun before we listened began before every action registered here.
    began = waiting.savepoints.began.get(rolled_back, 0) if rolled_back is not None else 0
    for target in _sharing(waiting):
        target.actions = [(n, a) for n, a in target.actions if n < began]


def _savepoint_released(conn: Connection, name: str, context: Any) -> None:
    waiting = _WAITING.get(conn)
    if waiting is not None:
        waiting.savepoints.settle(conn)


def _sharing(waiting: _Waiting) -> list[_Waiting]:
    """The waiting lists that follow ``conn``'s savepoints: its own, and its Sessions'."""
    return [w for w in list(_WAITING.values()) if w.savepoints is waiting.savepoints]


def _run(actions: list[tuple[int, Action]]) -> None:
    first: BaseException | None = None
    for _, action in actions:
        try:
            action()
        except BaseException as exc:
            if first is None:
                first = exc
    if first is not None:
        raise first
