"""Hypothesis strategies for every wire message: property-test a client against adwd.

Every strategy here is derived from the msgspec Structs of
:mod:`adwd.events.wire` (through ``msgspec.inspect``), so it generates only
messages that the service's codec accepts and that conform to the JSON Schema
``adwd schema`` prints: patterns, lengths, ranges, literals and enums included.
A new message type or field is covered the day it is added to ``wire.py``.

- :func:`server_messages` / :func:`server_frames`: anything adwd may send you.
- :func:`client_messages` / :func:`client_frames`: anything adwd accepts from you.
- :func:`messages_of`: one message type (``messages_of(StatusUpdate)``).
- :func:`for_type`: any msgspec-supported type, e.g. a domain event or a ``data``
  payload.
- :func:`json_values`: arbitrary JSON, for fields typed ``Any`` and for building
  invalid frames.

hypothesis is an optional dependency of adwd: install it with
``pip install 'adwd[testing]'`` (or ``'adwd[test]'``, adwd's own test tools).
Nothing else in adwd imports this module.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

try:
    from hypothesis import strategies as st
except ModuleNotFoundError as exc:
    if exc.name is None or exc.name.split(".")[0] != "hypothesis":
        raise
    raise ImportError(
        "adwd.events.testing needs hypothesis, an optional dependency of adwd: "
        "pip install 'adwd[testing]' (or pip install 'adwd[test]')",
        name="hypothesis",
    ) from exc

from adwd.events.codec import encode
from adwd.events.wire import ClientMessage, ServerMessage

__all__ = [
    "CLIENT_MESSAGE_TYPES",
    "JSON_VALUES",
    "SERVER_MESSAGE_TYPES",
    "client_frames",
    "client_messages",
    "for_type",
    "json_values",
    "messages_of",
    "server_frames",
    "server_messages",
    "tagged_types",
]

_MAX_TEXT = 30  # unbounded strings are kept short: examples stay readable and fast
_MAX_ITEMS = 4  # the same for lists and dicts


_JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    _JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=_MAX_ITEMS)
        | st.dictionaries(st.text(max_size=8), inner, max_size=_MAX_ITEMS)
    ),
    max_leaves=10,
)
"""The strategy :func:`json_values` returns, as a constant for ``@given(...)``."""


def json_values() -> st.SearchStrategy[Any]:
    """Small JSON values: ``None``, booleans, integers exactly representable as
    doubles, short strings, and lists and objects of them, nested a few levels.

    Used for the fields typed ``Any`` (such as ``issue_json``); also the raw
    material of invalid frames (a valid message with one field replaced).
    """
    return JSON_VALUES


def tagged_types(union: Any) -> list[type[msgspec.Struct]]:
    """The Struct classes of a tagged union, in declaration order
    (``tagged_types(ClientMessage)``)."""
    info = mi.type_info(union)
    members = info.types if isinstance(info, mi.UnionType) else (info,)
    classes = [t.cls for t in members if isinstance(t, mi.StructType)]
    if len(classes) != len(members):
        raise TypeError(f"not a union of Structs: {union!r}")
    return classes


CLIENT_MESSAGE_TYPES: tuple[type[msgspec.Struct], ...] = tuple(tagged_types(ClientMessage))
"""Every message type a client may send, one class per ``type`` tag."""

SERVER_MESSAGE_TYPES: tuple[type[msgspec.Struct], ...] = tuple(tagged_types(ServerMessage))
"""Every message type the service may send, one class per ``type`` tag."""


def for_type(tp: Any) -> st.SearchStrategy[Any]:
    """Valid values of any msgspec-supported type, its constraints respected.

    ``tp`` may be a Struct (a message, a ``data`` payload, a domain event of
    :mod:`adwd.events.domain`), a union, ``Annotated[..., Meta(...)]``, a
    ``Literal``, an enum, a list, tuple or dict of those, or ``Any`` (JSON
    values). Optional fields are sometimes left out, so their defaults are
    generated too.

    Raises:
        NotImplementedError: for a type the wire protocol does not use.
    """
    return _for_info(mi.type_info(tp))


def messages_of(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Valid messages of one wire message type, e.g. ``messages_of(StatusUpdate)``.

    Raises:
        TypeError: if ``cls`` is not a message type of :mod:`adwd.events.wire`.
    """
    if cls not in CLIENT_MESSAGE_TYPES and cls not in SERVER_MESSAGE_TYPES:
        raise TypeError(f"{cls!r} is not a wire message type of adwd.events.wire")
    return for_type(cls)


def client_messages() -> st.SearchStrategy[ClientMessage]:
    """Valid messages of every type a client may send (``ping``,
    ``trigger_workflow``, ``cancel_workflow``, ``subscribe``, ``get_queue_status``)."""
    return st.one_of([messages_of(cls) for cls in CLIENT_MESSAGE_TYPES])


def server_messages() -> st.SearchStrategy[ServerMessage]:
    """Valid messages of every type the service may send, including the ones
    docs/protocol.md marks as defined but not yet sent."""
    return st.one_of([messages_of(cls) for cls in SERVER_MESSAGE_TYPES])


def client_frames() -> st.SearchStrategy[bytes]:
    """:func:`client_messages`, encoded as the JSON text frames adwd accepts."""
    return client_messages().map(encode)


def server_frames() -> st.SearchStrategy[bytes]:
    """:func:`server_messages`, encoded exactly as adwd puts them on the wire."""
    return server_messages().map(encode)


def _for_info(info: mi.Type) -> st.SearchStrategy[Any]:
    """The strategy of a type as ``msgspec.inspect`` describes it."""
    if isinstance(info, mi.Metadata):
        return _for_info(info.type)
    if isinstance(info, mi.StructType):
        fields = {f.name: _for_info(f.type) for f in info.fields}
        required = {f.name: fields[f.name] for f in info.fields if f.required}
        optional = {f.name: fields[f.name] for f in info.fields if not f.required}
        cls = info.cls
        return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))
    if isinstance(info, mi.UnionType):
        return st.one_of([_for_info(t) for t in info.types])
    if isinstance(info, mi.ListType | mi.VarTupleType):
        lo, hi = _sizes(info.min_length, info.max_length, _MAX_ITEMS)
        items = st.lists(_for_info(info.item_type), min_size=lo, max_size=hi)
        return items.map(tuple) if isinstance(info, mi.VarTupleType) else items
    if isinstance(info, mi.DictType):
        lo, hi = _sizes(info.min_length, info.max_length, _MAX_ITEMS)
        keys, values = _for_info(info.key_type), _for_info(info.value_type)
        return st.dictionaries(keys, values, min_size=lo, max_size=hi)
    return _for_scalar(info)


def _for_scalar(info: mi.Type) -> st.SearchStrategy[Any]:
    """The strategy of a type that holds no other type (``Any`` included)."""
    if isinstance(info, mi.StrType):
        return _strings(info)
    if isinstance(info, mi.IntType):
        return _integers(info)
    if isinstance(info, mi.FloatType):
        if info.multiple_of is not None:
            raise NotImplementedError(f"no strategy for {info!r}")
        return st.floats(
            min_value=info.ge if info.ge is not None else info.gt,
            max_value=info.le if info.le is not None else info.lt,
            exclude_min=info.ge is None and info.gt is not None,
            exclude_max=info.le is None and info.lt is not None,
            allow_nan=False,
            allow_infinity=False,
        )
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.EnumType):  # ErrorCode: every member
        return st.sampled_from(list(info.cls))
    if isinstance(info, mi.AnyType):
        return JSON_VALUES
    raise NotImplementedError(f"no strategy for {info!r}")


def _sizes(lo: int | None, hi: int | None, cap: int) -> tuple[int, int]:
    """Size bounds of generated strings and collections: the type's, kept small."""
    lo = lo or 0
    return lo, hi if hi is not None and hi <= max(lo, cap) else max(lo, cap)


def _strings(info: mi.StrType) -> st.SearchStrategy[str]:
    lo, hi = _sizes(info.min_length, info.max_length, _MAX_TEXT)
    if not info.pattern:
        return st.text(min_size=lo, max_size=hi)
    longest = info.max_length
    return st.from_regex(info.pattern, fullmatch=True).filter(
        lambda s: len(s) >= lo and (longest is None or len(s) <= longest)
    )


def _integers(info: mi.IntType) -> st.SearchStrategy[int]:
    lo = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else None)
    hi = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else None)
    if lo is None:  # unbounded sides: about 2**31 beyond the other bound, or zero
        lo = min(hi if hi is not None else 0, 0) - 2**31
    if hi is None:
        hi = max(lo, 0) + 2**31
    step = info.multiple_of or 1
    return st.integers(-(-lo // step), hi // step).map(lambda k: k * step)
