"""The simulated node's resource manager, shaped as py-libp2p 0.8.1's keeps its counts.

py-libp2p's ``ResourceManager`` counts connections, streams and memory as totals
(system scope), and streams per protocol and per service only where the
application set a limit for them; it does not track file descriptors. So:

* ``system``: usage ``conns_total`` (ACTIVE connections), ``streams_total``
  (ACTIVE streams), ``memory`` (bytes: 64 KiB per connection and 16 KiB per
  stream, +-5%); limits ``conns_total``, ``streams_total``, ``memory``
  (py-libp2p's defaults, 1,000 / 10,000 / 512 MiB, raised for a bigger node);
* ``protocol:<id>`` for Kademlia, bitswap and gossipsub, and ``service:identify`` /
  ``service:pubsub`` (the streams of their protocols): usage ``streams_total``,
  the ACTIVE streams of ``State.protocols``, so both always agree; a limit on
  ``streams_total`` (twice the first usage, rounded up to 100, at least 100);
* ``blocked``: refused reservations, a few now and then.

Directional fields and ``fds`` stay 0: py-libp2p does not keep them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable

from libp2p_introspection.protocol import pb
from libp2p_introspection.server.sources.synthetic.model import ProtoStats

CONN_MEMORY = 64 * 1024
STREAM_MEMORY = 16 * 1024
MiB = 1024 * 1024
#: Scopes with a stream limit: name -> the protocols whose streams they count.
LIMITED_SCOPES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("protocol:/ipfs/kad/1.0.0", ("/ipfs/kad/1.0.0",)),
    ("protocol:/ipfs/bitswap/1.2.0", ("/ipfs/bitswap/1.2.0",)),
    ("protocol:/meshsub/1.1.0", ("/meshsub/1.1.0",)),
    ("service:identify", ("/ipfs/id/1.0.0", "/ipfs/id/push/1.0.0")),
    ("service:pubsub", ("/meshsub/1.1.0", "/meshsub/1.0.0")),
)


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


class SimResources:
    """``Subsystems.resources`` (see the module docstring).

    :param protocols: the node's per-protocol totals (``ProtoStats`` by protocol id,
        created on demand by ``proto``).
    """

    def __init__(
        self, rng: random.Random, *, connections: int, streams: int,
        proto: Callable[[str], ProtoStats],
    ) -> None:  # fmt: skip
        self._rng = rng
        self._proto = proto
        total_streams = connections * streams
        self.conn_limit = max(1_000, _round_up(1.5 * connections, 100))
        self.stream_limit = max(10_000, _round_up(1.5 * total_streams, 1_000))
        expected = connections * CONN_MEMORY + total_streams * STREAM_MEMORY
        self.memory_limit = max(512 * MiB, _round_up(2 * expected, 256 * MiB))
        self._scope_limits: dict[str, int] = {}
        self.blocked = 0

    def _streams(self, protocols: Iterable[str]) -> int:
        return sum(self._proto(p).active for p in protocols)

    def step(self) -> None:
        """One snapshot: now and then a reservation is refused."""
        rng = self._rng
        if rng.random() < 0.08:
            self.blocked += 1 + rng.randrange(3)

    def encoded(self, conns: int, streams: int) -> bytes:
        """``ResourceManager``, serialized, for ``conns`` ACTIVE connections and ``streams``
        ACTIVE streams."""
        jitter = 0.95 + 0.1 * self._rng.random()
        memory = int((conns * CONN_MEMORY + streams * STREAM_MEMORY) * jitter)
        usage = pb.ResourceUsage
        scopes = [
            pb.ResourceScope(
                name="system",
                usage=usage(conns_total=conns, streams_total=streams, memory=memory),
                limit=usage(
                    conns_total=self.conn_limit, streams_total=self.stream_limit,
                    memory=self.memory_limit,
                ),
            )
        ]
        for name, protocols in LIMITED_SCOPES:
            used = self._streams(protocols)
            limit = self._scope_limits.get(name)
            if limit is None:
                limit = self._scope_limits[name] = max(100, _round_up(2 * used, 100))
            scopes.append(
                pb.ResourceScope(
                    name=name, usage=usage(streams_total=used), limit=usage(streams_total=limit)
                )
            )
        return pb.ResourceManager(scopes=scopes, blocked=self.blocked).SerializeToString()
