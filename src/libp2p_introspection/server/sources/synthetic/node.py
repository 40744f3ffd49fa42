"""The simulated node itself and what its peers say of themselves (PROTOCOL.md §3.1).

* :class:`Agent`: the software a peer runs, as identify reports it (agent and
  protocol versions, the protocols it speaks, whether it runs gossipsub); each
  connection's streams run protocols its peer speaks.
* :class:`SimNode`: ``State.node``: the listen addresses (``/ip4`` behind a NAT
  with port 4001 forwarded, and ``/ip6``), the addresses peers observed us at
  (every ``observed_addr`` of the identified connections still shown), the
  reachability AutoNAT found, and the protocols the node has handlers for; with
  ``ReachabilityChanged`` (UNKNOWN, then PUBLIC at the third snapshot) and
  ``ListenAddrsChanged`` (a second listener, a WebSocket one, at the sixth).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.events import EventEmitter
from libp2p_introspection.server.sources.synthetic.model import (
    LISTEN_PORT,
    PROFILES,
    Profile,
)

IDENTIFY = ("/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0")
PING = "/ipfs/ping/1.0.0"
KAD = "/ipfs/kad/1.0.0"
GOSSIPSUB = ("/meshsub/1.1.0", "/meshsub/1.0.0", "/floodsub/1.0.0")
BITSWAP = ("/ipfs/bitswap/1.2.0", "/ipfs/bitswap/1.1.0", "/ipfs/bitswap/1.0.0", "/ipfs/bitswap")
AUTONAT = "/libp2p/autonat/1.0.0"
RELAY = ("/libp2p/circuit/relay/0.2.0/hop", "/libp2p/circuit/relay/0.2.0/stop")
#: The snapshot (counting from 1) at which AutoNAT finds the node PUBLIC, and at which
#: a second listener opens.
REACHABLE_AT = 3
SECOND_LISTENER_AT = 6
#: The ip6 address of the node (a public one: no NAT).
LOCAL_IP6 = "2a02:8071:5c3:7e00::1a"


@dataclass(frozen=True)
class Agent:
    """What identify says of one kind of peer; ``weight`` its share of the peers."""

    agent_version: str
    protocol_version: str
    protocols: tuple[str, ...]
    weight: int
    #: Streams it may run with us: the profiles of the protocols it speaks, and weights.
    profiles: tuple[Profile, ...] = ()
    profile_weights: tuple[int, ...] = ()

    @property
    def gossipsub(self) -> str:
        """Its gossipsub protocol (the newest meshsub it speaks), or "" if it speaks none."""
        return next((p for p in GOSSIPSUB[:2] if p in self.protocols), "")


def _agent(version: str, protocol_version: str, protocols: tuple[str, ...], weight: int) -> Agent:
    profiles = tuple(p for p in PROFILES if p.protocol in protocols)
    return Agent(
        version, protocol_version, protocols, weight, profiles, tuple(p.weight for p in profiles)
    )


_KUBO = (*BITSWAP, *IDENTIFY, KAD, "/ipfs/lan/kad/1.0.0", PING, AUTONAT, *RELAY,
         *GOSSIPSUB, "/x/")  # fmt: skip
#: The peers' software: IPFS nodes mostly, and other libp2p implementations.
_JS = (*IDENTIFY, PING, KAD, "/meshsub/1.1.0", "/meshsub/1.0.0", BITSWAP[0], RELAY[1])
_ETH2 = (IDENTIFY[0], PING, "/meshsub/1.1.0", "/meshsub/1.0.0",
         "/eth2/beacon_chain/req/status/1/ssz_snappy", "/eth2/beacon_chain/req/ping/1/ssz_snappy",
         "/eth2/beacon_chain/req/metadata/2/ssz_snappy")  # fmt: skip
AGENTS: tuple[Agent, ...] = (
    _agent("kubo/0.29.0/3f0947b", "ipfs/0.1.0", _KUBO, 34),
    _agent("kubo/0.28.0/", "ipfs/0.1.0", _KUBO, 16),
    _agent("go-ipfs/0.12.2/", "ipfs/0.1.0", _KUBO[:-1], 5),
    _agent("py-libp2p/0.8.1", "ipfs/0.1.0", (*IDENTIFY, PING, KAD, *GOSSIPSUB, AUTONAT), 12),
    _agent("js-libp2p/1.8.1 UserAgent=v20.11.0", "ipfs/0.1.0", _JS, 10),
    _agent("rust-libp2p-server/0.12.6", "/ipfs/0.1.0", (*IDENTIFY, PING, KAD, AUTONAT, *RELAY), 6),
    _agent("lighthouse/v5.2.1-9e12c21/x86_64-linux", "eth2/1.0.0", _ETH2, 8),
    _agent("hydra-booster/0.7.4", "ipfs/0.1.0", (*IDENTIFY, PING, KAD), 4),
)
AGENT_WEIGHTS: tuple[int, ...] = tuple(a.weight for a in AGENTS)


def node_protocols(dht: bool, pubsub: bool) -> list[str]:
    """The protocol ids the simulated node has handlers for (``NodeInfo.protocols``)."""
    protocols = [*IDENTIFY, PING, AUTONAT, RELAY[0], BITSWAP[0]]
    if dht:
        protocols.append(KAD)
    if pubsub:
        protocols.extend(GOSSIPSUB)
    return sorted(protocols)


class SimNode:
    """``State.node`` of the simulated node, and the events of its changes.

    :param local_ip: its private ip4 address (``/ip4/10.../tcp/4001`` is forwarded by
        its NAT from ``public_ip``).
    """

    def __init__(
        self, rng: random.Random, local_ip: str, *, dht: bool, pubsub: bool,
        emitter: EventEmitter,
    ) -> None:  # fmt: skip
        first = rng.choice((34, 52, 78, 88, 95, 141, 185, 213))
        self.public_ip = f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"  # noqa: E501
        self.local_ip = local_ip
        self._emitter = emitter
        self.listen_addrs = [
            f"/ip4/{local_ip}/tcp/{LISTEN_PORT}",
            f"/ip6/{LOCAL_IP6}/tcp/{LISTEN_PORT}",
        ]
        self.reachability = pb.NodeInfo.UNKNOWN
        self.protocols = node_protocols(dht, pubsub)
        #: Observed address -> how many shown connections reported it (in first-seen order).
        self._observed: dict[str, int] = {}
        self._steps = 0
        self._bytes: bytes | None = None

    def observed_addr(self, family: str, role: int, local_port: int) -> str:
        """How a peer on a connection sees us: our public address (through the NAT for
        ip4, which keeps ports), on our listen port when it dialed us."""
        ip = self.public_ip if family == "ip4" else LOCAL_IP6
        port = LISTEN_PORT if role == pb.RESPONDER else local_port
        return f"/{family}/{ip}/tcp/{port}"

    def observe(self, addr: str) -> None:
        """A connection's peer reported ``addr`` (identify)."""
        count = self._observed.get(addr, 0)
        self._observed[addr] = count + 1
        if not count:
            self._bytes = None

    def forget(self, addr: str) -> None:
        """A connection that reported ``addr`` is no longer shown."""
        count = self._observed.get(addr, 0)
        if count <= 1:
            self._observed.pop(addr, None)
            self._bytes = None
        else:
            self._observed[addr] = count - 1

    @property
    def observed_addrs(self) -> list[str]:
        """Every address the shown connections' peers observed us at, first seen first."""
        return list(self._observed)

    def step(self, now: int) -> None:
        """One snapshot: AutoNAT's verdict, then the second listener, at their snapshots."""
        self._steps += 1
        if self._steps == REACHABLE_AT:
            self.reachability = pb.NodeInfo.PUBLIC
            self._bytes = None
            name = pb.NodeInfo.Reachability.Name(self.reachability)
            self._emitter.emit(events.REACHABILITY_CHANGED, {"reachability": name}, ts=now)
        elif self._steps == SECOND_LISTENER_AT:
            added = f"/ip4/{self.local_ip}/tcp/{LISTEN_PORT + 1}/ws"
            self.listen_addrs.append(added)
            self._bytes = None
            self._emitter.emit(
                events.LISTEN_ADDRS_CHANGED, {"added": [added], "removed": []}, ts=now
            )

    def encoded(self) -> bytes:
        """``NodeInfo``, serialized (kept until something in it changes)."""
        if self._bytes is None:
            self._bytes = pb.NodeInfo(
                listen_addrs=self.listen_addrs,
                observed_addrs=list(self._observed),
                reachability=self.reachability,
                protocols=self.protocols,
            ).SerializeToString()
        return self._bytes
