"""A recording whose every string field is an HTML/script payload (the browser tests' data).

Each payload names its field, so a test can say which one reached the page as
markup: ``<img src=x onerror="xss('FIELD')"><b class="xss">FIELD</b>``. A page
that parsed it would call ``window.xss('FIELD')`` (the test defines it) and
insert an ``img`` and a ``b.xss`` element.
"""

from __future__ import annotations

import json
from pathlib import Path

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingWriter

START_MS = 1_700_000_000_000
SNAPSHOTS = 3
INTERVAL_MS = 1_000


def payload(field: str) -> str:
    """The hostile string put in ``field``."""
    return f'<img src=x onerror="xss(\'{field}\')"><b class="xss">{field}</b>'


#: Every string field of the recording, by name, and what it holds.
FIELDS = {
    name: payload(name)
    for name in (
        "runtime.implementation", "runtime.version", "runtime.platform", "runtime.peer_id",
        "conn.peer_id", "conn.src", "conn.dst", "conn.transport_id", "conn.muxer",
        "conn.security", "conn.tag", "stream.protocol", "stream.protocol.2", "stream.tag",
        "dht.protocol", "dht.peer", "event.type", "event.property", "event.key",
        "event.value", "event.item", "event.text", "peer.agent", "peer.protocol_version",
        "peer.protocol", "peer.listen", "peer.observed",
    )
}  # fmt: skip


def _runtime() -> pb.Runtime:
    runtime = pb.Runtime(
        implementation=FIELDS["runtime.implementation"],
        version=FIELDS["runtime.version"],
        platform=FIELDS["runtime.platform"],
        peer_id=FIELDS["runtime.peer_id"],
    )
    event_type = runtime.event_types.add(name=FIELDS["event.type"])
    event_type.property_types.add(
        name=FIELDS["event.property"], type=pb.EventType.EventProperty.STRING
    )
    return runtime


def _state(i: int) -> pb.State:
    ts = START_MS + i * INTERVAL_MS
    state = pb.State(instant_ts=ts, start_ts=ts - INTERVAL_MS, snapshot_duration_ms=INTERVAL_MS)
    state.traffic.traffic_in.cum_bytes = 1000 * (i + 1)
    conn = state.subsystems.connections.add(
        id=b"\x01", peer_id=FIELDS["conn.peer_id"], status=pb.ACTIVE, role=pb.INITIATOR,
        transport_id=FIELDS["conn.transport_id"].encode(), latency_ns=1_500_000,
    )  # fmt: skip
    conn.endpoints.src_multiaddr = FIELDS["conn.src"]
    conn.endpoints.dst_multiaddr = FIELDS["conn.dst"]
    conn.attribs.multiplexer = FIELDS["conn.muxer"]
    conn.attribs.encryption = FIELDS["conn.security"]
    conn.timeline.open_ts = START_MS - 5_000
    conn.traffic.traffic_in.cum_bytes = 500 * (i + 1)
    conn.traffic.traffic_in.inst_bw = 500
    conn.user_provided_tags.append(FIELDS["conn.tag"])
    # What identify said of the peer (PeerInfo, PROTOCOL.md §3.1): the Peers view's strings.
    conn.peer.agent_version = FIELDS["peer.agent"]
    conn.peer.protocol_version = FIELDS["peer.protocol_version"]
    conn.peer.protocols.append(FIELDS["peer.protocol"])
    conn.peer.listen_addrs.append(FIELDS["peer.listen"])
    conn.peer.observed_addr = FIELDS["peer.observed"]
    for j, name in enumerate(("stream.protocol", "stream.protocol.2")):
        stream = conn.streams.streams.add(
            id=bytes([j + 1]), protocol=FIELDS[name], status=pb.ACTIVE, role=pb.RESPONDER
        )
        stream.timeline.open_ts = START_MS - 1_000
        stream.user_provided_tags.append(FIELDS["stream.tag"])
    dht = state.subsystems.dht
    dht.protocol = FIELDS["dht.protocol"]
    dht.enabled = True
    dht.start_ts = START_MS - 10_000
    dht.params.k = 20
    dht.params.alpha = 3
    bucket = dht.buckets.add(cpl=0)
    bucket.peers.add(
        peer_id=FIELDS["dht.peer"], status=pb.DHT.PeerInDHT.ACTIVE, age_in_bucket=1_000
    )
    return state


def _events() -> list[pb.Event]:
    event_type = _runtime().event_types[0]
    content = {
        FIELDS["event.key"]: FIELDS["event.value"],
        FIELDS["event.property"]: [FIELDS["event.item"]],
    }
    return [
        pb.Event(type=event_type, ts=START_MS + 100, content=json.dumps(content)),
        pb.Event(type=event_type, ts=START_MS + 200, content=FIELDS["event.text"]),  # not JSON
    ]


def write_hostile_recording(path: Path) -> Path:
    """Write the recording (a runtime, :data:`SNAPSHOTS` snapshots, two events) to ``path``."""
    with RecordingWriter(path, close_stream=True) as writer:
        writer.write_message(pb.ServerMessage(runtime=_runtime()))
        events = _events()
        for i in range(SNAPSHOTS):
            writer.write_message(pb.ServerMessage(state=_state(i)))
            if i == 0:
                for event in events:
                    writer.write_message(pb.ServerMessage(event=event))
    return path
