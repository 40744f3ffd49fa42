"""Caps on the strings and lists the dashboard's converter emits.

A real node never comes near them; a hostile server or file cannot make one
string, or one list of strings, cost the page more than its cap, however long
it was on the wire. A cut is shown: ``…(+N chars)`` ends a cut string, and a
cut list ends with the item ``…(+N more)``.

And the compact JSON text pages are sent (:func:`dumps`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Longest peer id emitted, characters.
MAX_PEER_ID = 256
#: Longest multiaddr, protocol id, agent version, topic name or other text, characters.
MAX_TEXT = 1024
#: Most items of a list of strings emitted (addresses, protocols, mesh peers, topics).
MAX_LIST = 64


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces), as sent to browsers: ASCII only, every other
    character escaped (``\\u2026``), as JSON allows.

    ASCII because the texts are joined into a snapshot's of some 15-26 million
    characters at 5,000 x 10: one character past U+00FF in any piece (a cut list's
    ``…``) made CPython build all of it two bytes a character, or four past U+FFFF,
    and the join alone took 150 ms instead of 20 (and the store kept it twice the
    size). Escaped, each of its characters is one byte, and its length in
    characters is its size in bytes on the wire."""
    return json.dumps(value, separators=(",", ":"))


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
