"""Process-wide state: which database, which middleware, and who intercepts enqueues.

The lowest module of the public API: :mod:`corequeue.jobs` (the Job class and enqueueing) reads
the configured store from here, and nothing here knows about Job classes.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, Engine

from corequeue.config import load_settings
from corequeue.core.errors import ConfigError
from corequeue.core.params import Codec
from corequeue.store.queries import ConnectionLike, Store

if TYPE_CHECKING:
    from corequeue.jobs import JobHandle, PreparedJob
    from corequeue.store.orm import AttemptSession

#: Called instead of inserting, when set (the pytest plugin's inline and capture modes): given
#: the prepared jobs and the caller's connection, returns their handles (or None: not mine).
Interceptor = Callable[[Sequence["PreparedJob"], "ConnectionLike | None"], "list[JobHandle] | None"]


@dataclass
class _State:
    store: Store | None = None
    middleware: tuple[str, ...] = ()
    interceptors: list[Interceptor] = field(default_factory=list)
    codecs: tuple[Codec, ...] | None = None
    session_factory: Callable[[], Any] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def configure(
    database: str | URL | Engine | None = None,
    *,
    middleware: Sequence[str] | None = None,
    session_factory: Callable[[], Any] | None = None,
) -> Store:
    """Point corequeue at a database (a URL or a SQLAlchemy Engine) for this process.

    Without arguments, reads ``[tool.corequeue]`` in ./pyproject.toml and COREQUEUE_*
    variables (default ``sqlite:///corequeue.sqlite3``). Returns the store. Raises ConfigError.

    ``session_factory`` (the application's ``sessionmaker``): ORM instances passed as job
    parameters load in a session it makes, open while the job runs; None keeps the one set
    before (a worker's child configures its database after importing the application, whose
    own ``configure()`` call set it). Raises TypeError for something that is not callable.
    """
    if session_factory is not None and not callable(session_factory):
        raise TypeError(
            f"session_factory must be a callable that makes a Session (a sessionmaker), "
            f"not {session_factory!r}"
        )
    settings = None
    if database is None or middleware is None:
        settings = load_settings()
    if database is None:
        assert settings is not None
        database = settings.database_url
    store = Store(database) if isinstance(database, Engine) else Store.from_url(database)
    with _state.lock:
        old, _state.store = _state.store, store
        if session_factory is not None:
            _state.session_factory = session_factory
        if middleware is not None:
            _state.middleware = tuple(middleware)
        elif settings is not None:
            _state.middleware = tuple(settings.middleware)
    if old is not None and old is not store and old.engine is not store.engine:
        old.dispose()
    return store


def get_store() -> Store:
    """The configured store, configuring from pyproject.toml/environment on first use."""
    store = _state.store
    return store if store is not None else configure()


def configured_middleware() -> tuple[str, ...]:
    return _state.middleware


def reset() -> None:
    """Forget the configured database (tests)."""
    with _state.lock:
        old, _state.store = _state.store, None
        _state.middleware = ()
        _state.session_factory = None
    if old is not None:
        old.dispose()


def add_interceptor(interceptor: Interceptor) -> Callable[[], None]:
    """Route enqueues through ``interceptor`` until the returned function is called."""
    _state.interceptors.append(interceptor)
    return lambda: _state.interceptors.remove(interceptor)


def interceptors() -> tuple[Interceptor, ...]:
    """The active interceptors, the most recently added last."""
    return tuple(_state.interceptors)


def codecs() -> tuple[Codec, ...]:
    """Parameter codecs beyond the built-in ones: ORM instances, loaded again through the
    configured store's engine. Built once; the ORM module is imported only when first asked."""
    found = _state.codecs
    if found is None:
        from corequeue.store.orm import orm_codec

        found = _state.codecs = (orm_codec(lambda: get_store().engine),)
    return found


def session_factory() -> Callable[[], Any] | None:
    """The application's session factory given to :func:`configure`, if any."""
    return _state.session_factory


def attempt_session() -> AttemptSession | None:
    """A session holder for one attempt's ORM parameters (corequeue.store.orm), or None
    without a session factory (they load detached, as before)."""
    factory = _state.session_factory
    if factory is None:
        return None
    from corequeue.store.orm import AttemptSession

    return AttemptSession(factory)


def resolve_setting_path(path: str) -> Any:
    """Import ``package.module.Name`` and return Name. Raises ConfigError."""
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ConfigError(f"{path!r} is not a dotted path (package.module.Name)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for {path!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
