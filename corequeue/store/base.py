"""The connections every part of :class:`~corequeue.store.queries.Store` runs its statements on:
the engine, its kinds of connection, the error translation, and the driver fast path."""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Self

from sqlalchemy.engine import URL, Connection, Engine

from corequeue.store import driver
from corequeue.store.engine import READ_ONLY, create_engine, translate_errors

#: Statements compiled per key (queue lists, name filters) a cache keeps before it starts over:
#: the lists come and go (pauses, full queues, shares), so a cache is bounded.
COMPILED_PER_CACHE = 64


class StoreBase:
    """corequeue's tables in one database, reached through a SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect: str = engine.dialect.name
        self.url: URL = engine.url
        # By queue list and name filter (store.claims.ClaimKey).
        self._claim_statements: dict[tuple[tuple[str, ...], bool | None], Any] = {}
        self._driver_claims: dict[tuple[tuple[str, ...], bool | None], driver.Compiled] = {}
        self._driver_inserts: dict[tuple[str, ...], driver.Compiled] = {}
        self._driver_next_run: dict[tuple[tuple[str, ...], bool | None], driver.Compiled] = {}

    @classmethod
    def from_url(cls, url: str | URL, **engine_kwargs: Any) -> Self:
        return cls(create_engine(url, **engine_kwargs))

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def dispose(self) -> None:
        self.engine.dispose()

    def _begin(self) -> Any:
        return self.engine.begin()

    def _autocommit(self) -> Connection:
        """A connection whose statements each commit by themselves: one round trip for a
        statement that is atomic alone (no BEGIN and COMMIT round trips around it)."""
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    def _atomic(self) -> Any:
        """A connection for one statement that is atomic by itself: autocommit on PostgreSQL
        (one round trip), a write transaction on SQLite."""
        return self._autocommit() if self.is_postgresql else self._begin()

    def read(self) -> Connection:
        """A connection for reads only (use it as a context manager). On SQLite its
        transactions are deferred, so a read never waits behind a writer; write through
        ``engine.begin()``, which takes the write lock up front."""
        return self.engine.connect().execution_options(**{READ_ONLY: True})

    def _errors(self) -> AbstractContextManager[None]:
        return translate_errors(self.url)

    @functools.cached_property
    def _driver(self) -> driver.Driver | None:
        """The psycopg fast path (:mod:`corequeue.store.driver`), or None for other drivers."""
        return driver.make_driver(self.engine)

    def _compiled(self, stmt: Any, keys: Any = None) -> driver.Compiled:
        return driver.compile_statement(self.engine.dialect, stmt, keys)

    def _compiled_in(
        self, cache: dict[Any, driver.Compiled], key: Any, build: Callable[[], Any]
    ) -> driver.Compiled:
        """The statement ``build()`` makes for ``key``, compiled once and kept in ``cache``
        (emptied when it holds :data:`COMPILED_PER_CACHE` keys)."""
        compiled = cache.get(key)
        if compiled is None:
            if len(cache) >= COMPILED_PER_CACHE:
                cache.clear()
            compiled = cache[key] = self._compiled(build())
        return compiled

    def _driver_run(
        self, compiled: driver.Compiled, params: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        """Run a statement compiled by :meth:`_compiled` through :attr:`_driver`."""
        assert self._driver is not None
        return driver.run(self._driver, self.engine.dialect, compiled, params)
