"""``libp2p-introspect watch``: the client loop of PROTOCOL.md §5, printed as lines.

Connect; read the ``Runtime`` and the first ``State``; then signal ready, read
the next snapshot, print it, repeat. Events (if subscribed) are printed as
they arrive between snapshots. A message holding more than the client's
limits allow (by default 40,000 connections or 100,000 streams) is not parsed:
it is printed as a ``skipped`` line with the reason, and a skipped snapshot
counts as one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

from trio_websocket import ConnectionClosed

from libp2p_introspection.client.connection import Command, Received, Source, connect
from libp2p_introspection.config import printable
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.event_text import describe_any

Emit = Callable[[dict[str, Any]], None]


_REACHABILITY = pb.NodeInfo.Reachability

#: Longest event content parsed for its sentence, characters (longer is printed raw).
MAX_DESCRIBED_CONTENT = 16 * 1024


def summarize_state(state: pb.State) -> dict[str, Any]:
    """One snapshot as a flat dict: counts, node traffic (bytes, bytes per second), DHT
    peers; and from PROTOCOL.md §3.1, each ``None`` when the snapshot lacks that
    subsystem: ``reachability`` (the enum's name), ``listen_addrs`` (count),
    ``protocols`` (protocols with traffic), ``identified`` (connections whose peer was
    identified), ``pubsub_topics`` / ``pubsub_subscribed`` / ``pubsub_peers`` (counts),
    ``resource_scopes`` / ``resources_blocked`` (counts)."""
    connections = state.subsystems.connections
    traffic = state.traffic
    subsystems = state.subsystems
    node = state.node if state.HasField("node") else None
    pubsub = subsystems.pubsub if subsystems.HasField("pubsub") else None
    resources = subsystems.resources if subsystems.HasField("resources") else None
    return {
        "kind": "state",
        "instant_ts": state.instant_ts,
        "connections": len(connections),
        "active": sum(1 for c in connections if c.status == pb.ACTIVE),
        "streams": sum(len(c.streams.streams) for c in connections),
        "bytes_in": traffic.traffic_in.cum_bytes,
        "bytes_out": traffic.traffic_out.cum_bytes,
        "bw_in": traffic.traffic_in.inst_bw,
        "bw_out": traffic.traffic_out.inst_bw,
        "dht_peers": sum(len(b.peers) for b in state.subsystems.dht.buckets),
        "reachability": _name(node.reachability) if node else None,
        "listen_addrs": len(node.listen_addrs) if node else None,
        "protocols": len(state.protocols),
        "identified": sum(1 for c in connections if c.HasField("peer")),
        "pubsub_topics": len(pubsub.topics) if pubsub else None,
        "pubsub_subscribed": sum(1 for t in pubsub.topics if t.subscribed) if pubsub else None,
        "pubsub_peers": len(pubsub.peers) if pubsub else None,
        "resource_scopes": len(resources.scopes) if resources else None,
        "resources_blocked": resources.blocked if resources else None,
    }


def _name(reachability: int) -> str:
    try:
        return _REACHABILITY.Name(reachability)
    except ValueError:  # a value this schema does not know
        return str(reachability)


def extension_text(line: dict[str, Any]) -> str:
    """The compact text of a state line's §3.1 counts (``""`` for a snapshot with none)."""
    parts = []
    if line.get("reachability") is not None:
        parts.append(f"reach={line['reachability']} listen={line['listen_addrs']}")
    if line.get("protocols"):
        parts.append(f"protocols={line['protocols']}")
    if line.get("identified"):
        parts.append(f"identified={line['identified']}")
    if line.get("pubsub_topics") is not None:
        parts.append(
            f"pubsub_topics={line['pubsub_topics']} (subscribed {line['pubsub_subscribed']}) "
            f"pubsub_peers={line['pubsub_peers']}"
        )
    if line.get("resource_scopes") is not None:
        parts.append(f"rm_scopes={line['resource_scopes']} rm_blocked={line['resources_blocked']}")
    return " ".join(parts)


#: Most ``key=value`` pairs printed for an event of a type without a sentence.
MAX_PAIRS = 12
#: Longest value printed in a ``key=value`` pair, characters (longer is cut, ``…``).
MAX_VALUE = 120


def _parsed(content: str) -> Any:
    if len(content) > MAX_DESCRIBED_CONTENT:
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


def event_text(type_name: str, content: str) -> str | None:
    """The sentence of an event of a type PROTOCOL.md lists
    (:func:`~libp2p_introspection.protocol.event_text.describe_any`), or ``None`` for
    another type or a content that is not of its shape."""
    parsed = _parsed(content)
    return None if parsed is None else describe_any(type_name, parsed)


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= MAX_VALUE else f"{text[:MAX_VALUE]}…"


def pairs_text(content: str) -> str:
    """An event content without a sentence, as ``key=value`` pairs (a JSON object: at
    most :data:`MAX_PAIRS`, each value cut at :data:`MAX_VALUE` characters), else
    ``content=`` and the text cut likewise. Not yet made printable (the caller does)."""
    parsed = _parsed(content)
    if not isinstance(parsed, dict):
        return f"content={_value(content)}"
    items = list(parsed.items())
    shown = " ".join(f"{_value(str(key))}={_value(value)}" for key, value in items[:MAX_PAIRS])
    more = len(items) - MAX_PAIRS
    return f"{shown} (and {more} more)" if more > 0 else shown or "(no content)"


def line_text(line: dict[str, Any]) -> str:
    """A ``runtime``, ``notice``, ``skipped`` or ``closed`` line as words (made printable
    by the caller)."""
    kind = line["kind"]
    if kind == "runtime":
        types = line.get("event_types") or []
        return (
            f"runtime  {line['implementation']} {line['version']} on {line['platform']}, "
            f"peer {line['peer_id']}, {len(types)} event type{'' if len(types) == 1 else 's'}"
        )
    if kind == "notice":
        return f"notice  {line['note']}"
    if kind == "skipped":
        return f"skipped  a {line['what']} message: {line['reason']}"
    if kind == "closed":
        return f"closed  the server closed the session: code {line['code']} {line['reason'] or ''}"
    return f"{kind}  " + " ".join(f"{k}={_value(v)}" for k, v in line.items() if k != "kind")


def _skipped(received: Received) -> dict[str, Any]:
    """The line for a message skipped unparsed (above the client's limits)."""
    return {"kind": "skipped", "what": received.skipped_kind, "reason": received.skipped}


async def watch(
    url: str, *, count: int | None, events: bool, emit: Emit, token: str | None = None
) -> None:
    """Run the pull loop against ``url`` and ``emit`` a dict per message of interest.

    Stops after ``count`` snapshots (``None``: until cancelled). Raises
    ``SystemExit(1)`` if the server closes the session.
    """
    async with connect(url, token=token) as client:
        runtime = (await client.receive_kind("runtime")).message.runtime
        emit({
            "kind": "runtime", "implementation": runtime.implementation,
            "version": runtime.version, "platform": runtime.platform, "peer_id": runtime.peer_id,
            "event_types": [t.name for t in runtime.event_types],
        })  # fmt: skip
        seen = 0
        first = await client.receive_kind("state")
        emit(_skipped(first) if first.skipped else summarize_state(first.message.state))
        seen += 1
        if events:
            await client.send(Command.PUSH_ENABLE, Source.EVENTS)
        try:
            while count is None or seen < count:
                await client.ready()
                while True:
                    received = await client.receive()
                    if received.skipped:
                        emit(_skipped(received))
                        if received.skipped_kind == "state":  # it answered our ready signal
                            seen += 1
                            break
                        continue
                    if received.kind == "state":
                        emit(summarize_state(received.message.state))
                        seen += 1
                        break
                    if received.kind == "event":
                        event = received.message.event
                        emit({"kind": "event", "ts": event.ts, "type": event.type.name,
                              "content": event.content})  # fmt: skip
                    elif received.kind == "notice":
                        emit({"kind": "notice", "note": "server dropped push data here"})
        except ConnectionClosed as exc:
            reason = exc.reason
            emit({"kind": "closed", "code": reason.code if reason else None,
                  "reason": reason.reason if reason else None})  # fmt: skip
            raise SystemExit(1) from exc


def printer(as_json: bool, out: TextIO | None = None) -> Emit:
    """An :data:`Emit` that writes each line to ``out`` (stdout by default) and flushes:
    one JSON object per line with ``as_json``, else text: a sentence per event of a type
    PROTOCOL.md lists (:func:`event_text`), ``key=value`` pairs for another
    (:func:`pairs_text`). What comes from the server (event types and contents, the
    runtime's strings, a close reason) is made
    :func:`~libp2p_introspection.config.printable`.
    """

    def write(text: str) -> None:
        stream = out or sys.stdout
        stream.write(text + "\n")
        stream.flush()

    def emit(line: dict[str, Any]) -> None:
        if as_json:
            write(json.dumps(line, sort_keys=True))
        elif line["kind"] == "state":
            write(
                f"state  {line['instant_ts']}  connections={line['connections']} "
                f"(active {line['active']}) streams={line['streams']} "
                f"in={line['bytes_in']}B out={line['bytes_out']}B "
                f"bw_in={line['bw_in']}B/s bw_out={line['bw_out']}B/s "
                f"dht_peers={line['dht_peers']}"
                + (f" {extra}" if (extra := extension_text(line)) else "")
            )
        elif line["kind"] == "event":
            said = event_text(line["type"], line["content"])
            shown = said if said is not None else pairs_text(line["content"])
            write(printable(f"event  {line['ts']}  {line['type']}  {shown}"))
        else:
            write(printable(line_text(line).rstrip()))

    return emit
