"""Process-wide configuration: which database, which middleware; and enqueueing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import URL, Engine

from corequeue import registry
from corequeue.core.errors import ConfigError, UnknownJobError
from corequeue.core.params import Codec, encode_params
from corequeue.jobs import (
    Delay,
    Job,
    JobHandle,
    arg_names,
    caller_source,
    enqueue_options,
    resolve_run_at,
)
from corequeue.store.queries import ConnectionLike, Store
from corequeue.store.records import NewJob

#: Called instead of inserting, when set (the pytest plugin's inline and capture modes).
Interceptor = Callable[[Sequence["PreparedJob"], "ConnectionLike | None"], list[JobHandle] | None]


@dataclass(frozen=True, slots=True)
class PreparedJob:
    """A job ready to insert: the Job instance and its row."""

    job: Job
    row: NewJob


@dataclass
class _State:
    store: Store | None = None
    middleware: tuple[str, ...] = ()
    interceptors: list[Interceptor] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


_state = _State()


def configure(
    database: str | URL | Engine | None = None,
    *,
    middleware: Sequence[str] | None = None,
) -> Store:
    """Point corequeue at a database (a URL or a SQLAlchemy Engine) for this process.

    Without arguments, reads ``[tool.corequeue]`` in ./pyproject.toml and COREQUEUE_*
    variables (default ``sqlite:///corequeue.sqlite3``). Returns the store. Raises ConfigError.
    """
    from corequeue.config import load_settings

    settings = None
    if database is None or middleware is None:
        settings = load_settings()
    if database is None:
        assert settings is not None
        database = settings.database_url
    store = Store(database) if isinstance(database, Engine) else Store.from_url(database)
    with _state.lock:
        old, _state.store = _state.store, store
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
    if old is not None:
        old.dispose()


def add_interceptor(interceptor: Interceptor) -> Callable[[], None]:
    """Route enqueues through ``interceptor`` until the returned function is called."""
    _state.interceptors.append(interceptor)
    return lambda: _state.interceptors.remove(interceptor)


def codecs() -> tuple[Codec, ...]:
    """Parameter codecs beyond the built-in ones (ORM instances, when SQLAlchemy ORM is used)."""
    from corequeue.store.orm import ORM_CODEC

    return (ORM_CODEC,)


def prepare(
    job: Job,
    *,
    now: datetime,
    source: str,
    queue: str | None = None,
    delay: Delay | None = None,
    priority: int | None = None,
    retries: int | None = None,
    unique_key: str | None = None,
    timeout: float | None = None,
) -> PreparedJob:
    """Validate and encode one job for insertion. Raises JobParamsError, UnknownJobError."""
    cls = type(job)
    if not isinstance(job, Job):
        raise TypeError(f"expected a Job instance, got {job!r}")
    if not registry.is_registered(cls):
        raise UnknownJobError(
            f"{registry.job_name(cls)} is not registered: decorate the class with "
            "@register_job so workers can find it"
        )
    q, p, max_attempts, u, t = enqueue_options(
        job, queue=queue, priority=priority, retries=retries, unique_key=unique_key, timeout=timeout
    )
    params = encode_params(job._cq_args, job._cq_kwargs, arg_names=arg_names(job), codecs=codecs())
    row = NewJob(
        name=registry.job_name(cls),
        params=params,
        queue=q,
        priority=p,
        run_at=resolve_run_at(delay, now),
        max_attempts=max_attempts,
        timeout=t,
        unique_key=u,
        source=source,
    )
    return PreparedJob(job, row)


def enqueue_many(
    jobs: Iterable[Job],
    *,
    queue: str | None = None,
    delay: Delay | None = None,
    priority: int | None = None,
    retries: int | None = None,
    unique_key: str | None = None,
    timeout: float | None = None,
    connection: ConnectionLike | None = None,
    _source: str | None = None,
) -> list[JobHandle]:
    """Enqueue many jobs in one transaction (multi-row inserts). Options left None take each
    job's class defaults. Returns the handles in order; nothing is inserted if any job's
    parameters cannot be stored (JobParamsError names it)."""
    now = datetime.now(UTC)
    source = _source if _source is not None else caller_source()
    prepared = [
        prepare(
            job,
            now=now,
            source=source,
            queue=queue,
            delay=delay,
            priority=priority,
            retries=retries,
            unique_key=unique_key,
            timeout=timeout,
        )
        for job in jobs
    ]
    for interceptor in reversed(_state.interceptors):
        intercepted = interceptor(prepared, connection)
        if intercepted is not None:
            return intercepted
    store = get_store()
    inserted = store.job_insert_many([p.row for p in prepared], now=now, connection=connection)
    return [JobHandle(i.id, store=store) for i in inserted]


def resolve_setting_path(path: str) -> Any:
    """Import ``package.module.Name`` and return Name. Raises ConfigError."""
    import importlib

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
