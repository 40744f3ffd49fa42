"""One readable sentence for each of the event types of PROTOCOL.md §3.1.

Readers (the dashboard's Events view, ``watch``) show an event of a known type
as a line a user reads at a glance instead of its JSON, e.g.::

    PeerIdentified       12D3KooWAbc… is "py-libp2p/0.8.1" (ipfs/0.1.0), 7 protocols
    PubsubGraft          12D3KooWAbc… joined our mesh of "blocks" (the peer asked)

:func:`describe` takes the content as parsed JSON (any value: it comes from a
server or a file) and never raises: a content of the wrong shape (a key
missing, a value of the wrong kind) gives ``None``, and the reader shows the
raw content as before. Every string of the content goes in the sentence cut
at :data:`MAX_PART` characters, and at most :data:`MAX_ITEMS` items of a list;
the result is plain text (callers escape it for their medium: the page sets
it as text, ``watch`` makes it printable).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Longest piece of an event's content put in a sentence, characters (longer is cut,
#: the cut shown as ``…``).
MAX_PART = 120
#: Most list items named in a sentence (the rest are counted).
MAX_ITEMS = 4

#: The §3.1 event types this module words.
EVENT_TYPES = (
    "PeerIdentified", "ListenAddrsChanged", "ReachabilityChanged",
    "PubsubSubscriptionChanged", "PubsubGraft", "PubsubPrune",
)  # fmt: skip


def _part(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PART else f"{text[:MAX_PART]}…"


def _peer(value: Any) -> str:
    """A peer id shortened as the dashboard does (first 8, last 6 characters)."""
    text = str(value)
    return text if len(text) <= 16 else f"{text[:8]}…{text[-6:]}"


def _strings(content: dict[str, Any], key: str) -> list[str] | None:
    value = content.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _some(items: list[str]) -> str:
    shown = ", ".join(_part(i) for i in items[:MAX_ITEMS])
    more = len(items) - MAX_ITEMS
    return f"{shown} and {more} more" if more > 0 else shown


def _texts(content: dict[str, Any], *keys: str) -> list[str] | None:
    values = [content.get(k) for k in keys]
    return values if all(isinstance(v, str) for v in values) else None  # type: ignore[return-value]


def _identified(content: dict[str, Any]) -> str | None:
    texts = _texts(content, "peerId", "agentVersion", "protocolVersion")
    protocols = _strings(content, "protocols")
    if texts is None or protocols is None:
        return None
    peer, agent, version = texts
    count = f"{len(protocols)} protocol{'' if len(protocols) == 1 else 's'}"
    return f'{_peer(peer)} is "{_part(agent)}" ({_part(version) or "no protocol version"}), {count}'


def _listen(content: dict[str, Any]) -> str | None:
    added, removed = _strings(content, "added"), _strings(content, "removed")
    if added is None or removed is None:
        return None
    said = []
    if added:
        said.append(f"now listening on {_some(added)}")
    if removed:
        said.append(f"no longer on {_some(removed)}")
    return "; ".join(said) or "listen addresses unchanged"


def _reachability(content: dict[str, Any]) -> str | None:
    texts = _texts(content, "reachability")
    return None if texts is None else f"reachability is now {_part(texts[0])}"


def _subscription(content: dict[str, Any]) -> str | None:
    texts = _texts(content, "peerId", "topic")
    subscribed = content.get("subscribed")
    if texts is None or not isinstance(subscribed, bool):
        return None
    verb = "subscribed to" if subscribed else "unsubscribed from"
    return f'{_peer(texts[0])} {verb} "{_part(texts[1])}"'


_WHO = {"INBOUND": "the peer asked", "OUTBOUND": "we asked"}


def _mesh(joined: bool) -> Callable[[dict[str, Any]], str | None]:
    def word(content: dict[str, Any]) -> str | None:
        texts = _texts(content, "peerId", "topic", "direction")
        if texts is None:
            return None
        peer, topic, direction = texts
        verb = "joined our mesh of" if joined else "left our mesh of"
        return f'{_peer(peer)} {verb} "{_part(topic)}" ({_WHO.get(direction, _part(direction))})'

    return word


_WORDERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "PeerIdentified": _identified,
    "ListenAddrsChanged": _listen,
    "ReachabilityChanged": _reachability,
    "PubsubSubscriptionChanged": _subscription,
    "PubsubGraft": _mesh(True),
    "PubsubPrune": _mesh(False),
}


def describe(type_name: str, content: Any) -> str | None:
    """The sentence for an event of ``type_name`` with the parsed JSON ``content``;
    ``None`` for another type or a content not of the §3.1 shape (never raises)."""
    worder = _WORDERS.get(type_name)
    if worder is None or not isinstance(content, dict):
        return None
    return worder(content)
