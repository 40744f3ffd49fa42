"""``libp2p-introspect watch``: the client loop of PROTOCOL.md §5, printed as lines.

Connect; read the ``Runtime`` and the first ``State``; then signal ready, read
the next snapshot, print it, repeat. Events (if subscribed) are printed as
they arrive between snapshots. A message holding more than the client's
limits allow (by default 10,000 connections or 100,000 streams) is not parsed:
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

Emit = Callable[[dict[str, Any]], None]


def summarize_state(state: pb.State) -> dict[str, Any]:
    """One snapshot as a flat dict: counts, node traffic (bytes, bytes per second), DHT peers."""
    connections = state.subsystems.connections
    traffic = state.traffic
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
    }


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
    one JSON object per line with ``as_json``, else text. An event's type and content
    come from the server: they are made :func:`~libp2p_introspection.config.printable`.
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
            )
        elif line["kind"] == "event":
            write(printable(f"event  {line['ts']}  {line['type']}  {line['content']}"))
        else:
            write(f"{line['kind']:6} {json.dumps(line)}")

    return emit
