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


# ------------------------------------------- the upstream types (PROTOCOL.md §3)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(content: dict[str, Any], *keys: str) -> list[float] | None:
    values = [content.get(k) for k in keys]
    return values if all(_number(v) for v in values) else None  # type: ignore[return-value]


def _duration(open_ts: float, close_ts: float) -> str:
    ms = close_ts - open_ts
    if ms < 0:
        return "an unknown time"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def _bytes(bytes_in: float, bytes_out: float) -> str:
    return f"{bytes_in:.0f} B in, {bytes_out:.0f} B out"


_DIALED = {"outbound": "we dialed", "inbound": "it dialed us"}
_OPENER = {"outbound": "we opened it", "inbound": "the peer opened it"}


def _connection_opened(content: dict[str, Any]) -> str | None:
    texts = _texts(content, "peerId", "direction", "remoteAddr", "multiplexer", "encryption")
    if texts is None:
        return None
    peer, direction, remote, muxer, security = texts
    how = ", ".join(_part(t) for t in (muxer, security) if t) or "no muxer or security named"
    return (
        f"{_peer(peer)} connected ({_DIALED.get(direction, _part(direction))}) "
        f"at {_part(remote) or 'an unknown address'}, {how}"
    )


def _ended(content: dict[str, Any]) -> str | None:
    """", closed (CLOSED: closed by remote) after 1.2 s, 10 B in, 5 B out" or None."""
    texts = _texts(content, "status", "reason")
    numbers = _numbers(content, "openTs", "closeTs", "bytesIn", "bytesOut")
    if texts is None or numbers is None:
        return None
    status, reason = texts
    open_ts, close_ts, bytes_in, bytes_out = numbers
    why = f"{_part(status)}: {_part(reason)}" if reason else _part(status)
    return f"({why}) after {_duration(open_ts, close_ts)}, {_bytes(bytes_in, bytes_out)}"


def _connection_closed(content: dict[str, Any]) -> str | None:
    texts = _texts(content, "peerId", "direction")
    ended = _ended(content)
    if texts is None or ended is None:
        return None
    peer, direction = texts
    return f"{_peer(peer)} disconnected ({_DIALED.get(direction, _part(direction))}) {ended}"


def _stream_opened(content: dict[str, Any]) -> str | None:
    texts = _texts(content, "peerId", "protocol", "direction")
    if texts is None:
        return None
    peer, protocol, direction = texts
    return (
        f"{_part(protocol) or 'a stream with no protocol'} with {_peer(peer)} "
        f"opened ({_OPENER.get(direction, _part(direction))})"
    )


def _stream_closed(content: dict[str, Any]) -> str | None:
    texts = _texts(content, "peerId", "protocol", "direction")
    ended = _ended(content)
    if texts is None or ended is None:
        return None
    peer, protocol, direction = texts
    return (
        f"{_part(protocol) or 'a stream with no protocol'} with {_peer(peer)} "
        f"closed, {_OPENER.get(direction, _part(direction))} {ended}"
    )


def _query_peer(content: dict[str, Any]) -> str | None:
    """The remote peer of a DHT query event: ``peerIds[0]`` (``peerId`` in our older
    recordings); "an unknown peer" for a null entry; None when neither has a shape."""
    peers = content.get("peerIds")
    if isinstance(peers, list) and all(p is None or isinstance(p, str) for p in peers):
        named = [p for p in peers if p]
        return _peer(named[0]) if named else "an unknown peer"
    peer = content.get("peerId")
    return _peer(peer) if isinstance(peer, str) else None


def _dht_query(inbound: bool) -> Callable[[dict[str, Any]], str | None]:
    def word(content: dict[str, Any]) -> str | None:
        peer = _query_peer(content)
        message = content.get("messageType", content.get("queryType"))
        result = content.get("result")
        ms = content.get("totalTimeMs", content.get("durationMs"))
        if peer is None or not isinstance(message, str) or not isinstance(result, str):
            return None
        said = f"{peer} asked us {_part(message)}" if inbound else (
            f"we asked {peer} {_part(message)}"
        )  # fmt: skip
        took = f" in {ms:.0f} ms" if _number(ms) else ""
        target = content.get("targetPeerId")
        about = f" about {_part(_peer(target))}" if isinstance(target, str) and target else ""
        return f"{said}{about}: {_part(result)}{took}"

    return word


_UPSTREAM_WORDERS: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "ConnectionOpened": _connection_opened,
    "ConnectionClosed": _connection_closed,
    "StreamOpened": _stream_opened,
    "StreamClosed": _stream_closed,
    "InboundDHTQuery": _dht_query(inbound=True),
    "OutboundDHTQuery": _dht_query(inbound=False),
}

#: Every event type PROTOCOL.md lists, the upstream ones (§3) and ours (§3.1).
ALL_EVENT_TYPES = (*_UPSTREAM_WORDERS, *EVENT_TYPES)


def describe_any(type_name: str, content: Any) -> str | None:
    """As :func:`describe`, for every type of :data:`ALL_EVENT_TYPES`: the connection,
    stream and DHT query events too (their content as ``protocol/events.py`` builds it;
    the DHT events also in our older recordings' keys). ``None`` for another type or a
    content not of that shape; never raises. Used by ``watch``; the dashboard has views
    of its own for those, and keeps :func:`describe`."""
    worder = _UPSTREAM_WORDERS.get(type_name)
    if worder is None:
        return describe(type_name, content)
    if not isinstance(content, dict):
        return None
    return worder(content)
