"""Typed job arguments: a job's annotated parameters checked, and converted where the
conversion loses nothing, before the job is stored.

Types checked: int, float, str, bool, Decimal, datetime, date, time, timedelta, UUID, enums,
lists, tuples and dicts of those, dataclasses of those, and ``X | None`` of any of them.
Conversions: what JSON (the command line's ``--args``) cannot carry, from its text form
(``"7.00"`` to Decimal, ISO text to datetime/date/time, text to UUID), an int to float or
Decimal, seconds to timedelta, an enum's value to the enum, a list to a tuple, a dict to a
dataclass. Anything else that does not match is refused with an error naming the parameter
and both types. Unannotated parameters, and types not listed here, pass unchanged.
Pure: reads annotations, runs no job code.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from corequeue.core.errors import JobParamsError


class _Mismatch(Exception):
    def __init__(self, expected: str, value: object, where: str = "") -> None:
        self.expected, self.value, self.where = expected, value, where


def hints(func: Callable[..., Any]) -> dict[str, Any]:
    """The resolvable annotations of ``func``'s parameters ({} when they cannot be resolved)."""
    try:
        found = typing.get_type_hints(func)
    except Exception:  # a forward reference this process cannot resolve: unchecked
        return {}
    found.pop("return", None)
    return found


def bind_and_convert(
    func: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    job: str,
    skip_first: bool = False,
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args`` and ``kwargs`` for ``func`` with each annotated argument checked and converted.
    ``skip_first``: ``func`` is an ``__init__`` (its ``self`` is not an argument).

    Raises JobParamsError when the arguments do not fit the signature, or when an argument
    does not match its annotation and cannot be converted losslessly."""
    annotations = hints(func)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return tuple(args), dict(kwargs)
    if skip_first:
        params = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=params)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise JobParamsError(f"{job}: {exc}") from None
    if not annotations:
        return tuple(args), dict(kwargs)
    for name, value in list(bound.arguments.items()):
        tp = annotations.get(name)
        if tp is None:
            continue
        kind = signature.parameters[name].kind
        try:
            if kind is inspect.Parameter.VAR_POSITIONAL:
                bound.arguments[name] = tuple(convert(v, tp) for v in value)
            elif kind is inspect.Parameter.VAR_KEYWORD:
                bound.arguments[name] = {k: convert(v, tp) for k, v in value.items()}
            else:
                bound.arguments[name] = convert(value, tp)
        except _Mismatch as m:
            where = f" (at {m.where})" if m.where else ""
            raise JobParamsError(
                f"{job}: parameter {name!r} expects {describe(tp)}, got "
                f"{type(m.value).__name__} {m.value!r:.80}{where}"
                + ("" if m.expected == describe(tp) else f" where {m.expected} is expected")
            ) from None
    return bound.args, bound.kwargs


def describe(tp: Any) -> str:
    """A type as a person reads it: ``int``, ``list[Decimal]``, ``int | None``."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return str(tp).replace("typing.", "").replace("decimal.", "").replace("datetime.", "")


def convert(value: Any, tp: Any) -> Any:
    """``value`` as ``tp``: unchanged when it already is one, converted when that loses
    nothing; raises _Mismatch otherwise. Unsupported types pass ``value`` unchanged."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _union(value, tp)
    if origin is typing.Annotated:
        return convert(value, typing.get_args(tp)[0])
    if origin in (list, tuple, dict):
        return _container(value, tp, origin)
    if not isinstance(tp, type):
        return value
    converter = _SCALARS.get(tp)
    if converter is not None:
        return converter(value, tp)
    if issubclass(tp, enum.Enum):
        return _enum(value, tp)
    if dataclasses.is_dataclass(tp):
        return _dataclass(value, tp)
    return value


def _union(value: Any, tp: Any) -> Any:
    arms = typing.get_args(tp)
    if value is None and type(None) in arms:
        return None
    for arm in arms:  # an exact match first: no conversion when one arm fits as it is
        if isinstance(arm, type) and type(value) is arm:
            return value
    real = [arm for arm in arms if arm is not type(None)]
    if len(real) == 1:  # X | None: X's own mismatch says where
        return convert(value, real[0])
    for arm in real:
        try:
            return convert(value, arm)
        except _Mismatch:
            continue
    raise _Mismatch(describe(tp), value)


def _container(value: Any, tp: Any, origin: Any) -> Any:
    args = typing.get_args(tp)
    if origin is dict:
        if not isinstance(value, dict):
            raise _Mismatch(describe(tp), value)
        kt, vt = args if len(args) == 2 else (Any, Any)
        return {_at(k, kt, repr(k)): _at(v, vt, repr(k)) for k, v in value.items()}
    if not isinstance(value, (list, tuple)):
        raise _Mismatch(describe(tp), value)
    if origin is list:
        item = args[0] if args else Any
        return [_at(v, item, f"[{i}]") for i, v in enumerate(value)]
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = args[0] if args else Any
        return tuple(_at(v, item, f"[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
        raise _Mismatch(describe(tp), value)
    return tuple(_at(v, t, f"[{i}]") for i, (v, t) in enumerate(zip(value, args, strict=True)))


def _at(value: Any, tp: Any, where: str) -> Any:
    try:
        return convert(value, tp)
    except _Mismatch as m:
        raise _Mismatch(m.expected, m.value, where + m.where) from None


def _enum(value: Any, tp: type[enum.Enum]) -> Any:
    if isinstance(value, tp):
        return value
    try:
        return tp(value)
    except (ValueError, TypeError):
        raise _Mismatch(tp.__qualname__, value) from None


def _dataclass(value: Any, tp: type) -> Any:
    if isinstance(value, tp):
        return value
    if not isinstance(value, dict):
        raise _Mismatch(tp.__qualname__, value)
    field_types = hints(tp)
    names = {f.name for f in dataclasses.fields(tp)}
    unknown = set(value) - names
    if unknown:
        raise _Mismatch(tp.__qualname__, value, f"unknown field {sorted(unknown)[0]!r}")
    fields = {k: _at(v, field_types.get(k, Any), f".{k}") for k, v in value.items()}
    try:
        return tp(**fields)
    except TypeError:
        raise _Mismatch(tp.__qualname__, value) from None


def _exact(value: Any, tp: type) -> Any:
    if type(value) is bool and tp is not bool:
        raise _Mismatch(tp.__qualname__, value)
    if isinstance(value, tp):
        return value
    raise _Mismatch(tp.__qualname__, value)


def _float(value: Any, tp: type) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**53:
        return float(value)
    return _exact(value, tp)


def _decimal(value: Any, tp: type) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            raise _Mismatch("Decimal", value) from None
    return _exact(value, tp)


def _parsed(parse: Callable[[str], Any]) -> Callable[[Any, type], Any]:
    def conv(value: Any, tp: type) -> Any:
        if isinstance(value, str):
            try:
                return parse(value)
            except ValueError:
                raise _Mismatch(tp.__qualname__, value) from None
        if tp is date and isinstance(value, datetime):  # a datetime would lose its time
            raise _Mismatch("date", value)
        return _exact(value, tp)

    return conv


def _timedelta(value: Any, tp: type) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return _exact(value, tp)


_SCALARS: dict[type, Callable[[Any, type], Any]] = {
    bool: _exact,
    int: _exact,
    str: _exact,
    float: _float,
    Decimal: _decimal,
    datetime: _parsed(datetime.fromisoformat),
    date: _parsed(date.fromisoformat),
    time: _parsed(time.fromisoformat),
    timedelta: _timedelta,
    UUID: _parsed(UUID),
}
