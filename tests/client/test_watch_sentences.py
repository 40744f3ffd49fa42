"""``watch`` prints a sentence for every event type PROTOCOL.md lists (the connection,
stream and DHT events too, not their JSON), ``key=value`` pairs for another type, and
words for its other lines; what came from the wire stays printable."""

from __future__ import annotations

import io
import json

from libp2p_introspection.client.watch import printer
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.event_text import ALL_EVENT_TYPES

PEER = "12D3KooWQASBxJNjDXzSmgkyn4jnwi8r6moL79vHhPjy5Ptn9SDG"
ENDED = events.Ending(close_ts=1_700_000_001_500, bytes_in=32, bytes_out=64,
                      status=pb.CLOSED, reason="closed by remote")  # fmt: skip


def _printed(*lines: dict) -> list[str]:
    out = io.StringIO()
    emit = printer(as_json=False, out=out)
    for line in lines:
        emit(line)
    return out.getvalue().splitlines()


def _event(type_name: str, content: dict) -> dict:
    return {"kind": "event", "ts": 1, "type": type_name, "content": json.dumps(content)}


def _dht(direction: str, **extra: object) -> dict:
    return {"direction": direction, "peerIds": [PEER], "queryId": "ab", "targetPeerId": PEER,
            "totalTimeMs": 12.4, "totalSteps": 1, "trigger": "API", "type": "CONTENT",
            "messageType": "FIND_NODE", "result": "SUCCESS", **extra}  # fmt: skip


def test_every_upstream_event_is_a_sentence():
    conn = {"peer_id": PEER, "conn_id": b"\x01", "role": pb.INITIATOR}
    stream = {**conn, "stream_id": b"\x02", "protocol": "/ipfs/ping/1.0.0"}
    lines = _printed(
        _event("ConnectionOpened", events.connection_opened(
            **conn, local_addr="/ip4/127.0.0.1/tcp/1", remote_addr="/ip4/127.0.0.1/tcp/2",
            transport=b"tcp", multiplexer="/yamux/1.0.0", encryption="/noise",
            open_ts=1_700_000_000_000)),
        _event("ConnectionClosed", events.connection_closed(
            **conn, remote_addr="/ip4/127.0.0.1/tcp/2", open_ts=1_700_000_000_000, ending=ENDED)),
        _event("StreamOpened", events.stream_opened(**{**stream, "role": pb.RESPONDER},
                                                    open_ts=1_700_000_000_000)),
        _event("StreamClosed", events.stream_closed(**stream, open_ts=1_700_000_001_000,
                                                    ending=ENDED)),
        _event("InboundDHTQuery", _dht("INBOUND")),
        _event("OutboundDHTQuery", _dht("OUTBOUND", result="TIMEOUT", peerIds=[None])),
        # our older recordings' DHT keys
        _event("OutboundDHTQuery", {"peerId": PEER, "queryType": "GET_VALUE",
                                    "durationMs": 3, "result": "ERROR"}),
    )  # fmt: skip
    short = f"{PEER[:8]}…{PEER[-6:]}"
    assert lines == [
        f"event  1  ConnectionOpened  {short} connected (we dialed) at /ip4/127.0.0.1/tcp/2, "
        "/yamux/1.0.0, /noise",
        f"event  1  ConnectionClosed  {short} disconnected (we dialed) (CLOSED: closed by "
        "remote) after 1.5 s, 32 B in, 64 B out",
        f"event  1  StreamOpened  /ipfs/ping/1.0.0 with {short} opened (the peer opened it)",
        f"event  1  StreamClosed  /ipfs/ping/1.0.0 with {short} closed, we opened it (CLOSED: "
        "closed by remote) after 500 ms, 32 B in, 64 B out",
        f"event  1  InboundDHTQuery  {short} asked us FIND_NODE about {short}: SUCCESS in 12 ms",
        f"event  1  OutboundDHTQuery  we asked an unknown peer FIND_NODE about {short}: "
        "TIMEOUT in 12 ms",
        f"event  1  OutboundDHTQuery  we asked {short} GET_VALUE: ERROR in 3 ms",
    ]
    assert set(ALL_EVENT_TYPES) >= {s.name for s in (
        *events.CONNECTION_EVENTS, *events.DHT_EVENTS, *events.NODE_EVENTS,
        *events.PUBSUB_EVENTS)}  # fmt: skip


def test_other_events_and_lines_are_words_never_markup():
    hostile = "\x1b]0;PWNED\x07<b>"
    lines = _printed(
        _event("AppThing", {"user": hostile, "n": 3, "list": [1, 2]}),
        _event("StreamOpened", {"peerId": 1}),  # not of its shape: pairs
        {"kind": "event", "ts": 2, "type": "X", "content": "not json"},
        {"kind": "runtime", "implementation": "py-libp2p", "version": "0.8.1",
         "platform": "Linux", "peer_id": PEER, "event_types": ["A", "B"]},
        {"kind": "closed", "code": 1001, "reason": hostile},
        {"kind": "notice", "note": "server dropped push data here"},
        {"kind": "skipped", "what": "state", "reason": "too big"},
    )  # fmt: skip
    assert lines[0] == 'event  1  AppThing  user=\\x1b]0;PWNED\\x07<b> n=3 list=[1,2]'
    assert lines[1] == "event  1  StreamOpened  peerId=1"
    assert lines[2] == "event  2  X  content=not json"
    assert lines[3] == f"runtime  py-libp2p 0.8.1 on Linux, peer {PEER}, 2 event types"
    assert lines[4] == "closed  the server closed the session: code 1001 \\x1b]0;PWNED\\x07<b>"
    assert lines[5] == "notice  server dropped push data here"
    assert lines[6] == "skipped  a state message: too big"
    for line in lines:
        assert "\x1b" not in line and "\x07" not in line and not line.split("  ")[-1].startswith("{")
