"""Event types an application declares for itself, and the content of their events.

PROTOCOL.md §3.1: "Applications add their own types through the library API,
with the same rules" as the built-in ones. This module holds those rules,
free of py-libp2p: :func:`declare` turns an application's declaration into an
:class:`~libp2p_introspection.protocol.events.EventSpec` (checked), and
:func:`check_content` checks one event's content against its spec. Every
failure is an :class:`ApplicationDataError` (a ``ValueError``) whose message
names the type and the property at fault.

Rules (each one is checked, none silently repaired):

* a type name matches :data:`TYPE_NAME` (a letter, then letters, digits,
  ``_ . : -``; at most 128 characters) and is not one of the built-in types
  (:data:`BUILT_IN_NAMES`: every spec of :mod:`~libp2p_introspection.protocol.events`,
  whether or not this node emits it, so a dashboard reading a built-in type by
  name never meets an application's content under it);
* a type has 1 to :data:`MAX_PROPERTIES` properties with distinct names matching
  :data:`PROPERTY_NAME`, each of a type of the schema's enum
  (``pb.EventType.EventProperty.PropertyType``: STRING, NUMBER, TIME, PEERID,
  MULTIADDR, JSON, given by value or by name), ``has_multiple`` a bool;
* content is a mapping with exactly the declared keys; each value is of its
  declared type (a list of them when ``has_multiple``): STRING a ``str``;
  NUMBER an ``int`` or finite ``float`` (not a ``bool``); TIME an ``int`` ms
  since epoch in ``[0, 2**64)``; PEERID a base58 ``str`` (1 to 128 characters);
  MULTIADDR a ``str`` starting with ``/`` with no whitespace; JSON any JSON
  value (``None``, ``bool``, numbers, ``str``, lists, ``str``-keyed dicts;
  no NaN or infinity). The content, as compact JSON, is at most
  :data:`MAX_CONTENT_BYTES` bytes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.events import EventSpec, Property

#: A declared type's name.
TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,127}")
#: A declared property's name (a top-level key of the content).
PROPERTY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: Properties per declared type.
MAX_PROPERTIES = 64
#: Types one application may declare (each new session's ``Runtime`` lists them all).
MAX_TYPES = 256
#: Bytes of one event's content, as compact JSON (UTF-8).
MAX_CONTENT_BYTES = 64 * 1024

_TYPES = pb.EventType.EventProperty.PropertyType
_TYPE_NAMES = frozenset(_TYPES.keys())
_B58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
_UINT64_END = 2**64


class ApplicationDataError(ValueError):
    """A declaration, an event or a tag of the application's own data was refused."""


def _built_in_names() -> frozenset[str]:
    return frozenset(
        value.name for value in vars(events).values() if isinstance(value, EventSpec)
    )


#: The names of the built-in event types (every ``EventSpec`` of ``protocol.events``).
BUILT_IN_NAMES: frozenset[str] = _built_in_names()


def property_type(value: object) -> int:
    """The ``PropertyType`` value of ``value`` (an enum value, or its name such as ``"PEERID"``).

    :raises ApplicationDataError: if it is neither.
    """
    if isinstance(value, str):
        if value in _TYPE_NAMES:
            return int(_TYPES.Value(value))
    elif isinstance(value, int) and not isinstance(value, bool) and value in _TYPES.values():
        return int(value)
    names = ", ".join(_TYPES.keys())
    raise ApplicationDataError(f"property type {value!r} is not one of the schema's: {names}")


def _normalize_property(type_name: str, prop: object) -> Property:
    if not isinstance(prop, tuple | list) or len(prop) not in (2, 3):
        raise ApplicationDataError(
            f"{type_name}: a property is (name, type) or (name, type, has_multiple), got {prop!r}"
        )
    name, kind = prop[0], prop[1]
    if not isinstance(name, str) or not PROPERTY_NAME.fullmatch(name):
        raise ApplicationDataError(
            f"{type_name}: property name {name!r} must match {PROPERTY_NAME.pattern}"
        )
    try:
        value = property_type(kind)
    except ApplicationDataError as exc:
        raise ApplicationDataError(f"{type_name}.{name}: {exc}") from None
    if len(prop) == 3:
        multiple = prop[2]
        if not isinstance(multiple, bool):
            raise ApplicationDataError(
                f"{type_name}.{name}: has_multiple must be a bool, got {multiple!r}"
            )
        if multiple:
            return (name, value, True)
    return (name, value)


def declare(
    name: str, properties: Iterable[Property] | Mapping[str, Any], existing: Mapping[str, EventSpec]
) -> EventSpec:
    """Check one declaration and return its spec.

    :param name: the type's name (:data:`TYPE_NAME`).
    :param properties: ``(name, type)`` / ``(name, type, has_multiple)`` tuples in
        content order, or a mapping ``name -> type`` / ``name -> (type, has_multiple)``;
        a type is a ``PropertyType`` value or name.
    :param existing: the application's types declared so far, by name. Declaring one
        of them again with the same properties returns it unchanged.
    :raises ApplicationDataError: a bad name or property, a built-in type's name, a
        re-declaration with other properties, or more than :data:`MAX_TYPES` types.
    """
    if not isinstance(name, str) or not TYPE_NAME.fullmatch(name):
        raise ApplicationDataError(f"event type name {name!r} must match {TYPE_NAME.pattern}")
    if name in BUILT_IN_NAMES:
        raise ApplicationDataError(f"{name} is a built-in event type; choose another name")
    if isinstance(properties, Mapping):
        items: list[object] = [
            (key, *value) if isinstance(value, tuple) else (key, value)
            for key, value in properties.items()
        ]
    elif isinstance(properties, str | bytes) or not isinstance(properties, Iterable):
        raise ApplicationDataError(f"{name}: properties must be a sequence or a mapping")
    else:
        items = list(properties)
    if not 1 <= len(items) <= MAX_PROPERTIES:
        raise ApplicationDataError(
            f"{name}: an event type has 1 to {MAX_PROPERTIES} properties, got {len(items)}"
        )
    normalized = tuple(_normalize_property(name, prop) for prop in items)
    names = [prop[0] for prop in normalized]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ApplicationDataError(f"{name}: property {duplicates[0]!r} declared twice")
    spec = EventSpec(name, normalized)
    known = existing.get(name)
    if known is not None:
        if known != spec:
            raise ApplicationDataError(
                f"{name} is already declared with other properties: {_describe(known)}"
            )
        return known
    if len(existing) >= MAX_TYPES:
        raise ApplicationDataError(f"at most {MAX_TYPES} application event types")
    return spec


def _describe(spec: EventSpec) -> str:
    parts = []
    for prop in spec.properties:
        kind = _TYPES.Name(prop[1])
        parts.append(f"{prop[0]}: {kind}[]" if len(prop) > 2 and prop[2] else f"{prop[0]}: {kind}")
    return "{" + ", ".join(parts) + "}"


def _check_value(where: str, kind: int, value: object) -> None:
    if kind == events.STRING:
        ok = isinstance(value, str)
        expected = "a str"
    elif kind == events.NUMBER:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value)
        )
        expected = "an int or a finite float"
    elif kind == events.TIME:
        ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _UINT64_END
        expected = "an int, ms since epoch"
    elif kind == events.PEERID:
        ok = isinstance(value, str) and 0 < len(value) <= 128 and set(value) <= _B58
        expected = "a base58 peer id"
    elif kind == events.MULTIADDR:
        ok = (
            isinstance(value, str)
            and value.startswith("/")
            and len(value) <= 1024
            and not any(c.isspace() or not c.isprintable() for c in value)
        )
        expected = "a multiaddr string"
    else:  # JSON
        try:
            json.dumps(value, allow_nan=False)
            ok = True
        except (TypeError, ValueError):
            ok = False
        expected = "a JSON value"
    if not ok:
        raise ApplicationDataError(f"{where} must be {expected}, got {value!r:.80}")


def check_content(spec: EventSpec, content: object) -> dict[str, Any]:
    """Check ``content`` against ``spec``; return it as a dict in declared order.

    :raises ApplicationDataError: if it is not a mapping, its keys differ from the
        declared properties, a value is not of its declared type, or its JSON is
        over :data:`MAX_CONTENT_BYTES`.
    """
    if not isinstance(content, Mapping):
        kind = type(content).__name__
        raise ApplicationDataError(f"{spec.name}: content must be a dict, got {kind}")
    declared = spec.property_names
    missing = [key for key in declared if key not in content]
    extra = sorted(str(key) for key in content if key not in declared)
    if missing or extra:
        raise ApplicationDataError(
            f"{spec.name}: content keys differ from the declaration"
            + (f"; missing {missing}" if missing else "")
            + (f"; undeclared {extra}" if extra else "")
        )
    ordered: dict[str, Any] = {}
    for prop in spec.properties:
        key, kind = prop[0], prop[1]
        value = content[key]
        where = f"{spec.name}.{key}"
        if len(prop) > 2 and prop[2]:
            if not isinstance(value, list | tuple):
                raise ApplicationDataError(
                    f"{where} (has_multiple) must be a list, got {value!r:.80}"
                )
            for index, item in enumerate(value):
                _check_value(f"{where}[{index}]", kind, item)
            value = list(value)
        else:
            _check_value(where, kind, value)
        ordered[key] = value
    size = len(json.dumps(ordered, separators=(",", ":"), allow_nan=False).encode())
    if size > MAX_CONTENT_BYTES:
        raise ApplicationDataError(
            f"{spec.name}: content is {size} bytes of JSON, over {MAX_CONTENT_BYTES}"
        )
    return ordered


def check_ts(ts: object) -> int:
    """``ts`` as ``Event.ts``: an ``int``, ms since epoch, in ``[0, 2**64)``.

    :raises ApplicationDataError: otherwise.
    """
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < _UINT64_END:
        raise ApplicationDataError(f"ts must be an int, ms since epoch, got {ts!r}")
    return ts


#: Characters of one tag, and tags per connection or stream.
MAX_TAG_LENGTH = 256
MAX_TAGS = 64


def check_tags(tags: Sequence[object]) -> list[str]:
    """Check tags for ``user_provided_tags``: non-empty printable ``str`` of at most
    :data:`MAX_TAG_LENGTH` characters; at least one.

    :raises ApplicationDataError: otherwise.
    """
    if not tags:
        raise ApplicationDataError("give at least one tag")
    out: list[str] = []
    for tag in tags:
        if (
            not isinstance(tag, str)
            or not tag
            or len(tag) > MAX_TAG_LENGTH
            or not tag.isprintable()
        ):
            raise ApplicationDataError(
                f"a tag is a non-empty printable str of at most {MAX_TAG_LENGTH} characters, "
                f"got {tag!r:.80}"
            )
        out.append(tag)
    return out
