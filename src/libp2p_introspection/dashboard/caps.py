"""Caps on the strings and lists the dashboard's converter emits.

A real node never comes near them; a hostile server or file cannot make one
string, or one list of strings, cost the page more than its cap, however long
it was on the wire. A cut is shown: ``…(+N chars)`` ends a cut string, and a
cut list ends with the item ``…(+N more)``.

And the compact JSON text pages are sent (:func:`dumps`), with what a string or
a value takes in it, counted without building it (:func:`json_len`,
:func:`json_size`), so that a budget is checked before the text is made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

#: Longest peer id emitted, characters.
MAX_PEER_ID = 256
#: Longest multiaddr, protocol id, agent version, topic name or other text, characters.
MAX_TEXT = 1024
#: Most items of a list of strings emitted (addresses, protocols, mesh peers, topics).
MAX_LIST = 64


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces), as sent to browsers."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def capped(text: str, cap: int) -> str:
    """``text`` if it has at most ``cap`` characters, else its first ``cap``
    followed by ``…(+N chars)``, ``N`` the characters cut."""
    if len(text) <= cap:
        return text
    return f"{text[:cap]}…(+{len(text) - cap} chars)"


def capped_list(items: Sequence[str], cap: int = MAX_TEXT, most: int = MAX_LIST) -> list[str]:
    """The first ``most`` of ``items``, each :func:`capped` at ``cap``; when more were
    given, one last item ``…(+N more)`` says how many were left out."""
    shown = [capped(item, cap) for item in items[:most]]
    if len(items) > most:
        shown.append(f"…(+{len(items) - most} more)")
    return shown


def json_len(text: str) -> int:
    """Characters ``text`` takes as a JSON string in compact JSON, quotes included."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return len(text) + 2
    return len(encode_basestring(text))


def json_size(value: Any, stop: int) -> int:
    """Characters compact JSON (``ensure_ascii=False``) of ``value`` takes, counted
    without building the text (dicts, lists, strings, ints, floats, bools, ``None``);
    the count so far, over ``stop``, as soon as it passes ``stop``."""
    size = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            size += json_len(item)
        elif isinstance(item, bool) or item is None:
            size += 4 if item is not False else 5
        elif isinstance(item, int | float):
            size += len(repr(item))
        elif isinstance(item, dict):
            size += 2 + max(len(item) - 1, 0) + sum(json_len(k) + 1 for k in item)
            pending.extend(item.values())
        elif isinstance(item, list):
            size += 2 + max(len(item) - 1, 0)
            pending.extend(item)
        else:
            raise TypeError(f"not a JSON value: {type(item).__name__}")
        if size > stop:
            return size
    return size
