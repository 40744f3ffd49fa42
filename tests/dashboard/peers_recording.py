"""A recording of a node's peers with several agents (the Peers view's test data).

Two snapshots (:data:`START_MS`, one second apart) of :data:`PEERS`: in the first
only the go-libp2p peers; in the second all of them, with one peer on two
connections (one closed), one identified without an agent version and one not
identified. ``hostile=True`` puts :func:`full_node.payload` in each identify string
(named ``peers.<field>``) instead.
"""

from __future__ import annotations

from pathlib import Path

from full_node import payload, runtime

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.recording import RecordingWriter

START_MS = 1_700_000_000_000
GO = "go-libp2p/0.33.0"
PY = "py-libp2p/0.8.1"
#: Peer id -> (agent or None when not identified, number of connections).
PEERS = {
    "12D3KooWGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGo01": (GO, 1),
    "12D3KooWGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGo02": (GO, 1),
    "12D3KooWGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGoGo03": (GO, 1),
    "12D3KooWPyPyPyPyPyPyPyPyPyPyPyPyPyPyPyPyPyPyPyPyPy01": (PY, 2),
    "12D3KooWNoAgentNoAgentNoAgentNoAgentNoAgentNoAgent1": ("", 1),
    "12D3KooWUnknownUnknownUnknownUnknownUnknownUnknown1": (None, 1),
}
#: The identify strings of the hostile variant, by name.
HOSTILE_FIELDS = ("peers.agent", "peers.protocol_version", "peers.protocol", "peers.listen",
                  "peers.observed")  # fmt: skip


def state(i: int, hostile: bool = False) -> pb.State:
    """The ``i``-th snapshot (0 or 1)."""
    ts = START_MS + i * 1000
    s = pb.State(instant_ts=ts, start_ts=ts - 1000, snapshot_duration_ms=1000)
    n = 0
    for peer, (agent, conns) in PEERS.items():
        if i == 0 and agent != GO:
            continue
        for k in range(conns):
            n += 1
            conn = s.subsystems.connections.add(id=bytes([n]) * 8, peer_id=peer,
                                                status=pb.CLOSED if k else pb.ACTIVE)  # fmt: skip
            conn.endpoints.src_multiaddr = "/ip4/127.0.0.1/tcp/4001"
            conn.endpoints.dst_multiaddr = f"/ip4/10.0.0.{n}/tcp/4001"
            conn.timeline.open_ts = START_MS - 5_000
            if agent is None:
                continue
            info = conn.peer
            t = (lambda name, honest: payload(name)) if hostile and agent == PY else (
                lambda name, honest: honest)  # fmt: skip
            info.agent_version = t("peers.agent", agent)
            info.protocol_version = t("peers.protocol_version", "ipfs/0.1.0")
            info.protocols.extend([t("peers.protocol", "/ipfs/id/1.0.0"), "/ipfs/ping/1.0.0",
                                   f"/x/{n}"][: 2 + (n % 2)])  # fmt: skip
            info.listen_addrs.extend([t("peers.listen", f"/ip4/10.0.0.{n}/tcp/4001"),
                                      f"/ip4/192.168.0.{n}/tcp/4001"])  # fmt: skip
            info.observed_addr = t("peers.observed", "/ip4/203.0.113.7/tcp/4001")
    return s


def write_peers_recording(path: Path, hostile: bool = False) -> Path:
    """Write the recording (the runtime of full_node.py, the two snapshots) to ``path``."""
    with RecordingWriter(path, close_stream=True) as writer:
        writer.write_message(pb.ServerMessage(runtime=runtime()))
        for i in range(2):
            writer.write_message(pb.ServerMessage(state=state(i, hostile)))
    return path
