"""SQLAlchemy ORM instances as job parameters: they travel as (model, primary key) and are
loaded again in the worker.

With the application's session factory (``corequeue.configure(..., session_factory=Session)``)
an attempt's ORM parameters are loaded in one session of the application's
(:class:`AttemptSession`), kept open while the job runs (lazy relationships load) and closed
when the attempt ends; when the job enters its transaction (``current_job().transaction()``)
that session moves onto the transaction's connection. Without one, each instance is loaded in
a throwaway session on corequeue's engine and comes detached: its loaded columns are there,
relationships not loaded yet raise ``DetachedInstanceError``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from corequeue.core.errors import JobParamsError
from corequeue.core.params import Codec

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _is_orm_instance(obj: Any) -> bool:
    if isinstance(obj, type):
        return False
    state = sa.inspect(obj, raiseerr=False)
    return state is not None and hasattr(state, "mapper") and hasattr(state, "identity")


def _encode(obj: Any) -> dict[str, Any]:
    state = sa.inspect(obj)
    if state.identity is None:
        raise JobParamsError(
            f"{type(obj).__qualname__} instance has no primary key yet: flush or commit it "
            "before enqueueing a job that refers to it"
        )
    cls = type(obj)
    return {"model": f"{cls.__module__}.{cls.__qualname__}", "pk": list(state.identity)}


def orm_codec(engine: Callable[[], Engine]) -> Codec:
    """The codec for ORM instances; ``engine()`` gives the engine they are loaded from again
    (the configured store's, looked up at decode time, so reconfiguring is seen)."""

    def decode(value: dict[str, Any]) -> Any:
        module, _, name = value["model"].rpartition(".")
        model = getattr(importlib.import_module(module), name)
        pk = tuple(value["pk"])
        key = pk if len(pk) > 1 else pk[0]
        loading = _LOADING.get()
        if loading is not None:  # in the attempt's session, kept open while the job runs
            return _found(loading.session().get(model, key), value["model"], pk)
        from sqlalchemy.orm import Session  # here: a worker without ORM parameters never needs it

        with Session(engine(), expire_on_commit=False) as session:
            obj = _found(session.get(model, key), value["model"], pk)
            session.expunge(obj)
            return obj

    return Codec("orm", _is_orm_instance, _encode, decode)


def _found(obj: Any, model: str, pk: tuple[Any, ...]) -> Any:
    if obj is None:
        raise JobParamsError(
            f"{model} with primary key {pk!r} no longer exists (deleted since the job was "
            "enqueued): the job cannot run, and is not retried"
        )
    return obj


class AttemptSession:
    """The session one attempt's ORM parameters load in, made by the application's session
    factory when the first one is decoded; closed when the attempt ends (:meth:`close`)."""

    __slots__ = ("_session", "factory", "joined")

    def __init__(self, factory: Callable[[], Session]) -> None:
        self.factory = factory
        self._session: Session | None = None
        self.joined: Any = None  # the bind it had before joining the attempt's transaction

    def session(self) -> Session:
        if self._session is None:
            self._session = self.factory()
        return self._session

    def join(self, conn: Connection) -> None:
        """Move the session onto the attempt's transaction on ``conn``: its own transaction
        is rolled back (changes to the instances not flushed yet are discarded, and every
        instance is expired: its attributes load again, through ``conn``), then it is bound to
        ``conn``. It never commits there: the attempt's commit does (:meth:`flush` first)."""
        session = self._session
        if session is None:
            return
        session.rollback()
        self.joined = (session.bind,)
        session.bind = conn

    def leave(self) -> None:
        """The attempt's transaction rolled back: the session goes back to its own bind (its
        instances expired: they load again from there)."""
        session, joined = self._session, self.joined
        if session is None or joined is None:
            return
        self.joined = None
        with contextlib.suppress(Exception):
            session.rollback()
        session.bind = joined[0]

    def flush(self) -> None:
        """Write what the job changed in its instances into the attempt's transaction."""
        if self._session is not None and self.joined is not None:
            self._session.flush()

    def close(self) -> None:
        """Let the session go: whatever it did not flush into the transaction is discarded."""
        session, self._session = self._session, None
        if session is not None:
            with contextlib.suppress(Exception):  # its connection may be gone with the attempt
                session.close()


_LOADING: ContextVar[AttemptSession | None] = ContextVar("corequeue_orm_loading", default=None)


@contextlib.contextmanager
def loading_in(sessions: AttemptSession) -> Iterator[None]:
    """ORM parameters decoded in this block load in ``sessions``'s session."""
    token = _LOADING.set(sessions)
    try:
        yield
    finally:
        _LOADING.reset(token)


def forget_inherited(factory: Callable[[], Session]) -> None:
    """In a forked child: drop (without closing) the pooled connections the session factory's
    engine inherited from its parent, which the parent may still use."""
    bind = getattr(factory, "kw", {}).get("bind")
    if isinstance(bind, Engine):
        bind.dispose(close=False)


def identity(obj: Any) -> tuple[type, tuple[Any, ...] | None] | None:
    """An ORM instance's model and primary key (None for a key not assigned yet); None for
    anything that is not an ORM instance. Two instances with the same identity are one row."""
    if not _is_orm_instance(obj):
        return None
    state = sa.inspect(obj)
    key = state.identity
    if key is None:  # not loaded nor flushed: the key it was given, if complete
        given = state.mapper.primary_key_from_instance(obj)
        key = None if any(k is None for k in given) else tuple(given)
    return (state.mapper.class_, None if key is None else tuple(key))
