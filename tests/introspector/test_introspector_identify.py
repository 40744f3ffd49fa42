"""``Connection.peer`` and ``PeerIdentified`` from identify, on real py-libp2p hosts.

What the introspector shows of a peer must be what that peer really is: its
agent and protocol version, the protocols it has handlers for, the addresses it
listens on, and the address it sees us at, for connections either side dialed,
and updated by an identify push. A peer that sends garbage changes nothing.
"""

from __future__ import annotations

from typing import Any

import multiaddr
import pytest
import trio
from event_checks import check_events
from introspector_harness import EventLog, connect, connections_to, running_hosts, wait_until
from libp2p.identity.identify.identify import AGENT_VERSION, ID, PROTOCOL_VERSION
from libp2p.identity.identify.pb.identify_pb2 import Identify
from libp2p.utils import varint
from multiaddr.protocols import P_P2P

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector.identify import MAX_ENTRIES, MAX_TEXT, MessageReader
from libp2p_introspection.protocol import pb

ECHO = "/test/echo/1.0.0"


def listen_addrs_of(host: Any) -> list[str]:
    """What ``host`` puts in its identify messages as listen addresses (no /p2p/ suffix)."""
    return [str(addr.decapsulate_code(P_P2P)) for addr in host.get_addrs()]


def protocols_of(host: Any) -> list[str]:
    return [str(p) for p in host.get_mux().get_protocols() if p is not None]


def identified(log: EventLog, peer: Any) -> list[dict[str, Any]]:
    return [e for e in log.named("PeerIdentified") if e["peerId"] == peer.get_id().to_base58()]


async def _echo(stream: Any) -> None:
    await stream.write(await stream.read(64))
    await stream.close()


def check_peer_info(conn: pb.Connection, remote: Any) -> None:
    """``conn.peer`` is what ``remote`` is, and its observed address is our end of ``conn``."""
    assert conn.HasField("peer")
    peer = conn.peer
    assert peer.agent_version == AGENT_VERSION
    assert peer.protocol_version == PROTOCOL_VERSION
    assert list(peer.protocols) == protocols_of(remote)
    assert list(peer.listen_addrs) == listen_addrs_of(remote)
    # How the remote sees us: the address its socket is connected to, our end.
    assert peer.observed_addr == conn.endpoints.src_multiaddr != ""


async def test_peer_info_for_connections_either_side_dialed() -> None:
    with trio.fail_after(30):
        async with running_hosts(3) as (us, dialed, dialer):
            dialed.set_stream_handler(ECHO, _echo)  # each peer speaks different protocols
            intro = HostIntrospector(us)
            log = EventLog()
            intro.set_event_sink(log)
            await connect(us, dialed)  # we dial: an outbound connection
            await connect(dialer, us)  # it dials us: an inbound connection
            await wait_until(lambda: bool(identified(log, dialed) and identified(log, dialer)))
            state = intro.state()

            (out_conn,) = connections_to(state, dialed.get_id().to_base58())
            (in_conn,) = connections_to(state, dialer.get_id().to_base58())
            assert (out_conn.role, in_conn.role) == (pb.INITIATOR, pb.RESPONDER)
            check_peer_info(out_conn, dialed)
            check_peer_info(in_conn, dialer)
            assert ECHO in out_conn.peer.protocols and ECHO not in in_conn.peer.protocols
            # Every address the peers reported seeing us at, the node's own view.
            assert sorted(state.node.observed_addrs) == sorted(
                [out_conn.endpoints.src_multiaddr, in_conn.endpoints.src_multiaddr]
            )

            (event,) = identified(log, dialed)
            assert event == {
                "peerId": dialed.get_id().to_base58(),
                "agentVersion": AGENT_VERSION,
                "protocolVersion": PROTOCOL_VERSION,
                "protocols": protocols_of(dialed),
            }
            check_events(intro.runtime(), log.events)
            # A connection closed but still in snapshots keeps its peer's info.
            await us.disconnect(dialed.get_id())
            await wait_until(
                lambda: (
                    connections_to(intro.state(), dialed.get_id().to_base58())[0].status
                    == pb.CLOSED
                )
            )
            (closed,) = connections_to(intro.state(), dialed.get_id().to_base58())
            assert closed.peer.agent_version == AGENT_VERSION
            intro.detach()


async def test_the_other_side_sees_us_as_we_are() -> None:
    """The same on the peer's own introspector: what it shows of us is what we are."""
    with trio.fail_after(30):
        async with running_hosts(2) as (us, them):
            us.set_stream_handler(ECHO, _echo)
            ours, theirs = HostIntrospector(us), HostIntrospector(them)
            log = EventLog()
            theirs.set_event_sink(log)
            await connect(us, them)
            await wait_until(lambda: bool(identified(log, us)))
            (conn,) = connections_to(theirs.state(), us.get_id().to_base58())
            assert conn.role == pb.RESPONDER
            check_peer_info(conn, us)
            ours.detach()
            theirs.detach()


async def test_a_push_updates_the_peer_info() -> None:
    """A second listen() on the peer: py-libp2p pushes identify to us with the new address."""
    with trio.fail_after(30):
        async with running_hosts(2) as (us, them):
            intro = HostIntrospector(us)
            log = EventLog()
            intro.set_event_sink(log)
            await connect(us, them)
            await wait_until(lambda: bool(identified(log, them)))
            (conn,) = connections_to(intro.state(), them.get_id().to_base58())
            observed = conn.peer.observed_addr
            assert len(conn.peer.listen_addrs) == 1

            await them.get_network().listen(multiaddr.Multiaddr("/ip4/127.0.0.2/tcp/0"))
            await wait_until(lambda: len(identified(log, them)) == 2)
            (conn,) = connections_to(intro.state(), them.get_id().to_base58())
            assert list(conn.peer.listen_addrs) == listen_addrs_of(them)
            assert len(conn.peer.listen_addrs) == 2
            assert any(addr.startswith("/ip4/127.0.0.2/") for addr in conn.peer.listen_addrs)
            # A push carries no observed address: the one we had stays.
            assert conn.peer.observed_addr == observed
            check_events(intro.runtime(), log.events)
            intro.detach()


async def test_a_peer_that_does_not_answer_identify_has_no_peer_info() -> None:
    """Nothing is made up from the peerstore: no identify answer, no PeerInfo."""
    with trio.fail_after(30):
        async with running_hosts(2) as (us, them):
            them.remove_stream_handler(ID)
            intro, theirs = HostIntrospector(us), HostIntrospector(them)
            log, their_log = EventLog(), EventLog()
            intro.set_event_sink(log)
            theirs.set_event_sink(their_log)
            await connect(us, them)
            # They identified us (our handler is there); our request to them was refused.
            await wait_until(lambda: bool(identified(their_log, us)))
            await wait_until(
                lambda: any(
                    e["protocol"] == "" and e["direction"] == "outbound"
                    for e in log.named("StreamClosed")
                )
            )
            (conn,) = connections_to(intro.state(), them.get_id().to_base58())
            assert not conn.HasField("peer")
            assert log.named("PeerIdentified") == []
            assert list(intro.state().node.observed_addrs) == []
            intro.detach()
            theirs.detach()


def _framed(message: bytes) -> bytes:
    return bytes(varint.encode_uvarint(len(message))) + message


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(_framed(b"\xff" * 12), id="not-protobuf"),
        pytest.param(bytes(varint.encode_uvarint(1 << 30)) + b"\x0a", id="declares-1GiB"),
        pytest.param(b"\xff" * 11, id="no-varint"),
    ],
)
async def test_a_garbage_identify_answer_is_ignored(answer: bytes) -> None:
    with trio.fail_after(30):
        async with running_hosts(2) as (us, them):

            async def hostile(stream: Any) -> None:
                await stream.write(answer)
                await stream.close()

            them.set_stream_handler(ID, hostile)
            them.set_stream_handler(ECHO, _echo)
            intro = HostIntrospector(us)
            log = EventLog()
            intro.set_event_sink(log)
            await connect(us, them)
            await wait_until(
                lambda: any(
                    e["protocol"] == str(ID) and e["direction"] == "outbound"
                    for e in log.named("StreamClosed")
                )
            )
            (conn,) = connections_to(intro.state(), them.get_id().to_base58())
            assert not conn.HasField("peer")
            assert log.named("PeerIdentified") == []
            # The node goes on.
            stream = await us.new_stream(them.get_id(), [ECHO])
            await stream.write(b"still here")
            assert await stream.read(64) == b"still here"
            intro.detach()


async def test_an_oversized_identity_is_cut_to_bounds() -> None:
    """A peer's strings and lists are data: kept within bounds, never trusted for a size."""
    long_agent = "a" * (MAX_TEXT * 5)
    many = [f"/p/{i}" for i in range(MAX_ENTRIES + 500)]
    with trio.fail_after(30):
        async with running_hosts(2) as (us, them):

            async def boastful(stream: Any) -> None:
                message = Identify(agent_version=long_agent, protocol_version="x", protocols=many)
                await stream.write(_framed(message.SerializeToString()))
                await stream.close()

            them.set_stream_handler(ID, boastful)
            intro = HostIntrospector(us)
            log = EventLog()
            intro.set_event_sink(log)
            await connect(us, them)
            await wait_until(lambda: bool(identified(log, them)))
            (conn,) = connections_to(intro.state(), them.get_id().to_base58())
            assert conn.peer.agent_version == long_agent[:MAX_TEXT]
            assert list(conn.peer.protocols) == many[:MAX_ENTRIES]
            assert conn.peer.observed_addr == "" and list(conn.peer.listen_addrs) == []
            check_events(intro.runtime(), log.events)
            intro.detach()


def test_the_reader_reassembles_a_message_split_anywhere() -> None:
    body = Identify(agent_version="py-libp2p/x", protocols=["/a", "/b"]).SerializeToString()
    framed = _framed(body * 20)  # > 127 bytes: a two-byte length prefix
    for cut in range(1, len(framed)):
        reader = MessageReader()
        assert reader.feed(framed[:cut]) is None
        assert reader.feed(framed[cut:]) == body * 20
        assert reader.done and reader.feed(b"more") is None
    one_by_one = MessageReader()
    results = [one_by_one.feed(framed[i : i + 1]) for i in range(len(framed))]
    assert results[-1] == body * 20 and results[:-1] == [None] * (len(framed) - 1)


def test_the_reader_refuses_what_py_libp2p_refuses() -> None:
    too_big = MessageReader(max_bytes=100)
    assert too_big.feed(bytes(varint.encode_uvarint(101))) is None and too_big.done
    at_limit = MessageReader(max_bytes=100)
    assert at_limit.feed(_framed(b"x" * 100)) == b"x" * 100


async def test_a_peer_py_libp2p_does_not_identify_again_keeps_its_info() -> None:
    """py-libp2p skips identify on a reconnect while its peerstore lists the peer's
    protocols: the new connection shows what the peer said last time, until the
    peerstore forgets the peer."""
    with trio.fail_after(30):
        async with running_hosts(2) as (us, them):
            intro = HostIntrospector(us, closed_connection_lifetime_ms=0)
            log = EventLog()
            intro.set_event_sink(log)
            them_id = them.get_id().to_base58()
            await connect(us, them)
            await wait_until(lambda: bool(identified(log, them)))
            (first,) = connections_to(intro.state(), them_id)
            await us.disconnect(them.get_id())
            await wait_until(lambda: not connections_to(intro.state(), them_id))  # purged

            await connect(us, them)
            await wait_until(
                lambda: any(c.status == pb.ACTIVE for c in connections_to(intro.state(), them_id))
            )
            (again,) = connections_to(intro.state(), them_id)
            assert again.id != first.id
            assert len(identified(log, them)) == 1  # py-libp2p did not ask again
            assert again.peer == first.peer

            us.get_peerstore().clear_peerdata(them.get_id())
            await us.disconnect(them.get_id())
            await wait_until(lambda: not connections_to(intro.state(), them_id))
            assert intro._identify.identity(them_id) is None  # forgotten with the peerstore's
            intro.detach()
