"""``watch`` and ``inspect`` on the §3.1 data: a compact summary of a snapshot's node,
protocols, pubsub and resources; a readable line per new event type; old recordings as
before; ``inspect --dump`` shows the new fields (ids in hex)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from full_node import EVENT_TYPES, PEER_A, events, state, write_full_recording

from libp2p_introspection.client.inspect_file import dump, render, summarize
from libp2p_introspection.client.watch import printer, summarize_state


def _printed(lines: list[dict]) -> list[str]:
    out = io.StringIO()
    emit = printer(as_json=False, out=out)
    for line in lines:
        emit(line)
    return out.getvalue().splitlines()


def test_watch_sums_up_the_extensions_of_a_snapshot():
    line = summarize_state(state(1))
    assert {k: line[k] for k in ("reachability", "listen_addrs", "protocols", "identified",
                                 "pubsub_topics", "pubsub_subscribed", "pubsub_peers",
                                 "resource_scopes", "resources_blocked")} == {
        "reachability": "PRIVATE", "listen_addrs": 2, "protocols": 3, "identified": 1,
        "pubsub_topics": 3, "pubsub_subscribed": 2, "pubsub_peers": 2,
        "resource_scopes": 2, "resources_blocked": 4,
    }  # fmt: skip
    (text,) = _printed([line])
    assert text.endswith(
        "dht_peers=0 reach=PRIVATE listen=2 protocols=3 identified=1 "
        "pubsub_topics=3 (subscribed 2) pubsub_peers=2 rm_scopes=2 rm_blocked=4"
    ), text


def test_watch_prints_a_snapshot_without_extensions_as_before():
    line = summarize_state(state(1, extensions=False))
    assert line["reachability"] is None and line["pubsub_topics"] is None
    assert line["resource_scopes"] is None and line["protocols"] == 0
    (text,) = _printed([line])
    assert text.endswith("bw_in=10000B/s bw_out=8000B/s dht_peers=0"), text


def test_watch_prints_each_new_event_as_a_sentence_and_other_content_as_pairs():
    lines = [{"kind": "event", "ts": e.ts, "type": e.type.name, "content": e.content}
             for e in events()]  # fmt: skip
    lines.append({"kind": "event", "ts": 1, "type": "PubsubGraft", "content": '{"peerId": 1}'})
    lines.append({"kind": "event", "ts": 2, "type": "PubsubGraft", "content": "not json"})
    text = _printed(lines)
    assert len(text) == len(EVENT_TYPES) + 2
    assert text[0] == (
        'event  1700000000100  PeerIdentified  12D3KooW…AAAAAA is "py-libp2p/0.8.1" '
        "(ipfs/0.1.0), 1 protocol"
    )
    assert text[4].endswith('PubsubGraft  12D3KooW…AAAAAA joined our mesh of "blocks" (the peer asked)')
    assert text[-2].endswith("PubsubGraft  peerId=1")
    assert text[-1].endswith("PubsubGraft  content=not json")


def test_watch_shows_a_hostile_sentence_as_escapes():
    content = json.dumps({"peerId": "p", "topic": "\x1b[2J\u202e", "direction": "INBOUND"})
    (text,) = _printed([{"kind": "event", "ts": 1, "type": "PubsubPrune", "content": content}])
    assert "\x1b" not in text and "\u202e" not in text
    assert '"\\x1b[2J\\u202e"' in text


def test_inspect_summarizes_the_extensions_of_the_last_snapshot(tmp_path: Path):
    summary = summarize(write_full_recording(tmp_path / "full.mock"))
    assert summary["states"]["last_extensions"] == {
        "reachability": "PRIVATE", "protocols": 3, "identified": 1, "pubsub_topics": 3,
        "resource_scopes": 2, "resources_blocked": 6,
    }  # fmt: skip
    assert summary["events"] == dict.fromkeys(sorted(EVENT_TYPES), 1)
    assert (
        "  last snapshot's node: reachability PRIVATE; 3 protocols with traffic; 1 identified; "
        "pubsub: 3 topics; resource manager: 2 scopes, 6 refused"
    ) in render(summary).splitlines()


def test_inspect_of_a_recording_without_extensions_reads_as_before(tmp_path: Path, fixtures_dir):
    for path in (write_full_recording(tmp_path / "old.mock", extensions=False),
                 fixtures_dir / "sample-1min.mock"):  # fmt: skip
        summary = summarize(path)
        ext = summary["states"]["last_extensions"]
        assert (ext["reachability"], ext["pubsub_topics"], ext["resource_scopes"]) == (None,) * 3
        assert ext["protocols"] == 0 and ext["identified"] == 0
        assert "last snapshot's node" not in render(summary)


def test_inspect_dump_shows_the_new_fields(tmp_path: Path):
    lines = [json.loads(line) for line in dump(write_full_recording(tmp_path / "full.mock"))]
    snapshot = next(m["state"] for m in lines if "state" in m)
    assert snapshot["node"]["reachability"] == "PRIVATE"
    assert snapshot["node"]["listenAddrs"][0] == "/ip4/127.0.0.1/tcp/4001"
    assert snapshot["protocols"][0]["streamsOpened"] == "5"
    conn = snapshot["subsystems"]["connections"][0]
    assert conn["id"] == "0101010101010101"  # ids in hex, as everywhere
    assert conn["peer"]["agentVersion"] == "py-libp2p/0.8.1"
    topic = snapshot["subsystems"]["pubsub"]["topics"][0]
    assert topic["meshPeers"] == [PEER_A] and topic["messagesIn"]["cumPackets"] == "5"
    assert snapshot["subsystems"]["resources"]["scopes"][0]["limit"]["streamsTotal"] == "1024"
    types = [m["event"]["type"]["name"] for m in lines if "event" in m]
    assert types == list(EVENT_TYPES)
