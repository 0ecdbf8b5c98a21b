"""SQLAlchemy ORM instances as job parameters: they travel as (model, primary key) and are
loaded again in the worker."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from corequeue.core.errors import JobParamsError
from corequeue.core.params import Codec


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
        with Session(engine(), expire_on_commit=False) as session:
            obj = session.get(model, pk if len(pk) > 1 else pk[0])
            if obj is None:
                raise JobParamsError(f"{value['model']} with primary key {pk!r} no longer exists")
            session.expunge(obj)
            return obj

    return Codec("orm", _is_orm_instance, _encode, decode)


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
