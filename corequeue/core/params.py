"""Job parameters and results as JSON text, with explicit tags for what JSON cannot carry.

Decides what may be stored: JSON values, plus datetime, date, time, timedelta, UUID and
Decimal, tagged ``{"$cq": TAG, "v": ...}`` so they come back as the same type. Further types
(such as ORM instances, which the store adapter handles) plug in as :class:`Codec` objects.
Anything else is refused at encode time with a :class:`JobParamsError` naming the parameter.
Never pickles. Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from corequeue.core.errors import JobParamsError

TAG = "$cq"


@dataclass(frozen=True, slots=True)
class Codec:
    """Encodes one more type: ``matches(obj)`` picks it, ``encode``/``decode`` convert it."""

    tag: str
    matches: Callable[[Any], bool]
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _dt_decode(v: str) -> datetime:
    return datetime.fromisoformat(v)


BUILTIN_CODECS: tuple[Codec, ...] = (
    # datetime before date: a datetime is also a date.
    Codec("datetime", lambda o: isinstance(o, datetime), lambda o: o.isoformat(), _dt_decode),
    Codec("date", lambda o: isinstance(o, date), lambda o: o.isoformat(), date.fromisoformat),
    Codec("time", lambda o: isinstance(o, time), lambda o: o.isoformat(), time.fromisoformat),
    Codec(
        "timedelta",
        lambda o: isinstance(o, timedelta),
        lambda o: [o.days, o.seconds, o.microseconds],
        lambda v: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    ),
    Codec("uuid", lambda o: isinstance(o, UUID), str, UUID),
    Codec("decimal", lambda o: isinstance(o, Decimal), str, Decimal),
    Codec("tuple", lambda o: isinstance(o, tuple), list, tuple),
)


#: Lone surrogates ("\\ud800") are not text: a string holding one cannot be written as UTF-8,
#: so it would break every page and line that shows it.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Integers of more digits than Python converts to text by default (4300) cannot be read back.
MAX_INT_BITS = 13_000  # about 3900 decimal digits


def _check_text(text: str, path: str, what: str) -> None:
    found = None if text.isascii() else _SURROGATE.search(text)
    if found is not None:
        raise JobParamsError(
            f"parameter {path} {what} a lone surrogate ({found[0]!r}), which is not text: "
            "pass valid Unicode"
        )


def _encode(obj: Any, path: str, codecs: Sequence[Codec]) -> Any:
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, str):
        _check_text(obj, path, "contains")
        return obj
    if isinstance(obj, int) and type(obj) is int:
        if obj.bit_length() > MAX_INT_BITS:
            raise JobParamsError(
                f"parameter {path} is an integer of more than 3900 digits, which cannot be "
                "stored as JSON: pass it as a string or a Decimal"
            )
        return obj
    if type(obj) is float:
        if not math.isfinite(obj):
            raise JobParamsError(f"parameter {path} is {obj!r}: JSON cannot store NaN or infinity")
        return obj
    if type(obj) is list:
        return [_encode(v, f"{path}[{i}]", codecs) for i, v in enumerate(obj)]
    if type(obj) is dict:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise JobParamsError(
                    f"parameter {path} has a key {k!r} of type {type(k).__name__}: "
                    "dictionary keys must be strings"
                )
            _check_text(k, path, "has a key with")
            out[k] = _encode(v, f"{path}[{k!r}]", codecs)
        # A user dictionary that happens to use our tag key is wrapped, so it stays a dictionary.
        return {TAG: "dict", "v": out} if TAG in out else out
    for codec in codecs:
        if codec.matches(obj):
            try:
                value = codec.encode(obj)
            except JobParamsError:
                raise
            except Exception as exc:
                raise JobParamsError(
                    f"parameter {path} ({type(obj).__name__}) could not be encoded: {exc}"
                ) from exc
            return {TAG: codec.tag, "v": _encode(value, path, codecs)}
    raise JobParamsError(
        f"parameter {path} is a {type(obj).__module__}.{type(obj).__qualname__}, which corequeue "
        "cannot store: pass JSON types, datetime, date, time, timedelta, UUID, Decimal or an ORM "
        "instance (which travels as a reference), or convert it yourself"
    )


def _decode(obj: Any, by_tag: Mapping[str, Codec]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, by_tag) for v in obj]
    if isinstance(obj, dict):
        if TAG in obj:
            tag = obj[TAG]
            if not isinstance(tag, str) or set(obj) != {TAG, "v"}:
                raise JobParamsError(
                    f"stored value {obj!r:.80} is not a valid tagged value: expected exactly "
                    f"the keys {TAG!r} (a type name) and 'v'"
                )
            if tag == "dict":
                if not isinstance(obj["v"], dict):
                    raise JobParamsError(f"stored dictionary {obj!r:.80} has no object under 'v'")
                return {k: _decode(v, by_tag) for k, v in obj["v"].items()}
            codec = by_tag.get(tag)
            if codec is None:
                raise JobParamsError(
                    f"stored value uses the unknown type tag {tag!r}: was it written by a newer "
                    "corequeue, or with a codec this process does not have?"
                )
            inner = _decode(obj["v"], by_tag)
            try:
                return codec.decode(inner)
            except JobParamsError:
                raise
            except Exception as exc:
                raise JobParamsError(
                    f"stored {tag} value {inner!r:.80} could not be decoded: {exc}"
                ) from exc
        return {k: _decode(v, by_tag) for k, v in obj.items()}
    return obj


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _encode_top(value: Any, path: str, codecs: Sequence[Codec]) -> Any:
    try:
        return _encode(value, path, codecs)
    except RecursionError:
        raise JobParamsError(
            f"parameter {path} is nested too deeply, or contains itself: corequeue cannot store it"
        ) from None


def encode_value(value: Any, *, name: str = "value", codecs: Sequence[Codec] = ()) -> str:
    """Encode one value (a job's result, say) as JSON text. Raises JobParamsError."""
    if value is None:  # what most jobs return
        return "null"
    return _ENCODER.encode(_encode_top(value, name, (*codecs, *BUILTIN_CODECS)))


#: Built once: json.dumps(..., separators=...) and json.loads(text, parse_constant=...) build
#: an encoder or a decoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_BUILTIN_BY_TAG = {c.tag: c for c in BUILTIN_CODECS}


def _by_tag(codecs: tuple[Codec, ...]) -> Mapping[str, Codec]:
    found = _BY_TAG.get(codecs)
    if found is None:
        found = _BY_TAG[codecs] = {**_BUILTIN_BY_TAG, **{c.tag: c for c in codecs}}
    return found


_BY_TAG: dict[tuple[Codec, ...], Mapping[str, Codec]] = {}


def decode_value(text: str, *, codecs: Sequence[Codec] = ()) -> Any:
    """Decode what :func:`encode_value` made. Raises JobParamsError on corrupt text."""
    try:
        if not isinstance(text, str):
            raise TypeError(f"expected JSON text, got {type(text).__name__}")
        raw = _DECODER.decode(text)
    except (TypeError, ValueError, RecursionError) as exc:
        raise JobParamsError(
            f"stored value is not valid JSON ({exc}): {text[:80]!r}; it may be corrupt or "
            "truncated, so the job cannot run: fix or delete it"
        ) from exc
    if TAG not in text:  # nothing tagged (json.dumps never escapes "$"): plain JSON as is
        return raw
    by_tag = _by_tag(tuple(codecs))
    try:
        return _decode(raw, by_tag)
    except JobParamsError:
        raise
    except Exception as exc:
        raise JobParamsError(f"stored value could not be decoded: {exc}") from exc


def encode_params(
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    arg_names: Sequence[str] = (),
    codecs: Sequence[Codec] = (),
) -> str:
    """Encode a job's constructor arguments as JSON text ``{"args": [...], "kwargs": {...}}``.

    ``arg_names`` names positional arguments in error messages. Raises JobParamsError naming
    the first parameter that cannot be stored.
    """
    all_codecs = (*codecs, *BUILTIN_CODECS)
    names = list(arg_names) + [f"args[{i}]" for i in range(len(arg_names), len(args))]
    encoded_args = [_encode_top(v, repr(names[i]), all_codecs) for i, v in enumerate(args)]
    encoded_kwargs: dict[str, Any] = {
        k: _encode_top(v, repr(k), all_codecs) for k, v in kwargs.items()
    }
    if TAG in encoded_kwargs:  # as for any dictionary that uses the tag key
        encoded_kwargs = {TAG: "dict", "v": encoded_kwargs}
    return _ENCODER.encode({"args": encoded_args, "kwargs": encoded_kwargs})


def decode_params(
    text: str, *, codecs: Sequence[Codec] = ()
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Decode what :func:`encode_params` made into ``(args, kwargs)``.

    Raises JobParamsError when the text is corrupt, truncated or of the wrong shape.
    """
    raw = decode_value(text, codecs=codecs)
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("args"), list)
        or not isinstance(raw.get("kwargs"), dict)
    ):
        raise JobParamsError(
            f"stored parameters must be an object with 'args' and 'kwargs', got {text[:80]!r}"
        )
    return tuple(raw["args"]), dict(raw["kwargs"])
