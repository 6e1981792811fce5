"""Hypothesis strategies derived from msgspec types, constraints included.

Walks ``msgspec.inspect`` type info, so every message type gets a generator
that respects its patterns, lengths and ranges without a hand-written copy
of the schema.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def for_type(tp: Any) -> st.SearchStrategy[Any]:
    """A strategy of valid values of a msgspec-supported type."""
    return _for_info(mi.type_info(tp))


def _for_info(info: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(info, mi.Metadata):
        return _for_info(info.type)
    if isinstance(info, mi.StructType):
        fields = {f.name: _for_info(f.type) for f in info.fields}
        required = {f.name: fields[f.name] for f in info.fields if f.required}
        optional = {f.name: fields[f.name] for f in info.fields if not f.required}
        return st.fixed_dictionaries(required, optional=optional).map(
            lambda kw, cls=info.cls: cls(**kw)
        )
    if isinstance(info, mi.StrType):
        if info.pattern:
            strat = st.from_regex(info.pattern, fullmatch=True)
        else:
            strat = st.text(min_size=info.min_length or 0, max_size=min(info.max_length or 30, 30))
        return strat.filter(lambda s: _len_ok(s, info.min_length, info.max_length))
    if isinstance(info, mi.IntType):
        lo = info.ge if info.ge is not None else -(2**31)
        hi = info.le if info.le is not None else 2**31
        return st.integers(lo, hi)
    if isinstance(info, mi.FloatType):
        return st.floats(allow_nan=False, allow_infinity=False, width=64)
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.EnumType):  # ErrorCode: every member
        return st.sampled_from(list(info.cls))
    if isinstance(info, mi.UnionType):
        return st.one_of([_for_info(t) for t in info.types])
    if isinstance(info, mi.ListType | mi.VarTupleType):
        return st.lists(_for_info(info.item_type), max_size=4).map(
            tuple if isinstance(info, mi.VarTupleType) else list
        )
    if isinstance(info, mi.DictType):
        return st.dictionaries(_for_info(info.key_type), _for_info(info.value_type), max_size=4)
    if isinstance(info, mi.AnyType):
        return JSON_VALUES
    raise NotImplementedError(f"no strategy for {info!r}")


def _len_ok(s: str, lo: int | None, hi: int | None) -> bool:
    return (lo is None or len(s) >= lo) and (hi is None or len(s) <= hi)


def tagged_types(union: Any) -> list[type[msgspec.Struct]]:
    """The Struct classes of a tagged union."""
    return [t.cls for t in mi.type_info(union).types]  # type: ignore[attr-defined]
