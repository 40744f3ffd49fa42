"""The routing table of a py-libp2p ``KadDHT`` as a snapshot shows it.

Read at snapshot time from ``KadDHT.routing_table.buckets`` (py-libp2p
``KBucket`` objects holding ``peer_id -> (PeerInfo, last_seen)``). Peers are
regrouped by **common prefix length** (cpl) between our Kademlia key and
theirs, where a key is ``sha256(peer_id.to_bytes())`` as in
``libp2p.kad_dht.routing_table.peer_id_to_key``. A peer is ACTIVE, or MISSING
when its ``last_seen`` is older than py-libp2p's ``STALE_PEER_THRESHOLD``.
``age_in_bucket`` (ms) counts from when the introspector first saw the peer in
the table: the moment ``RoutingTable.add_peer`` returned for it (an
instance-level wrapper, restored on detach), or the attach time for peers
already present.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.protocol import pb

logger = logging.getLogger(__name__)


@dataclass
class _PeerSeen:
    first_seen_ms: int
    cpl: int


class RoutingTableView:
    """The peers of one ``KadDHT``'s routing table, by cpl, with when each was first seen.

    :param dht: a ``libp2p.kad_dht.kad_dht.KadDHT``; ``clock_ms``: the injected
    clock, ms since epoch (py-libp2p's ``last_seen`` is compared with it).
    """

    def __init__(self, dht: Any, *, patcher: InstancePatcher, clock_ms: Callable[[], int]) -> None:
        self._dht = dht
        self._patcher = patcher
        self._clock_ms = clock_ms
        self._peers: dict[Any, _PeerSeen] = {}
        self._local_key = b""
        self.active = False

    def attach(self, now: int) -> None:
        """Wrap ``RoutingTable.add_peer`` and note the peers present at ``now`` (ms)."""
        dht = self._dht
        self.active = True
        try:
            self._local_key = kad_key(tp.DHT_LOCAL_PEER.get(dht))
        except Exception:
            logger.exception("introspector: DHT has no local peer id")
        tp.TABLE_ADD_PEER.hook(
            self._patcher, tp.DHT_ROUTING_TABLE.get(dht), self._wrap_add_peer, once=False
        )
        self._refresh_peers(now)

    def detach(self) -> None:
        """Stop noting peers (the wrapper itself is restored by the shared patcher)."""
        self.active = False

    def fill(self, msg: pb.DHT, now: int) -> None:
        """Fill ``msg.params.k`` and ``msg.buckets`` for a snapshot at ``now`` (ms since epoch)."""
        buckets = tp.TABLE_BUCKETS.get(tp.DHT_ROUTING_TABLE.get(self._dht)) or []
        k = tp.BUCKET_SIZE.get(buckets[0]) if buckets else None
        msg.params.k = int(k if k is not None else tp.constant(tp.KAD_BUCKET_SIZE, 20))
        stale_s = float(tp.constant(tp.KAD_STALE, 3600))
        wall_now = now / 1000  # the injected clock, as py-libp2p's last_seen: seconds
        by_cpl: dict[int, list[pb.DHT.PeerInDHT]] = {}
        for peer_id, last_seen, seen in self._refresh_peers(now):
            peer = pb.DHT.PeerInDHT(
                peer_id=peer_str(peer_id),
                status=pb.DHT.PeerInDHT.MISSING
                if wall_now - last_seen > stale_s
                else pb.DHT.PeerInDHT.ACTIVE,
                age_in_bucket=min(max(0, now - seen.first_seen_ms), 0xFFFFFFFF),
            )
            by_cpl.setdefault(seen.cpl, []).append(peer)
        for cpl in sorted(by_cpl):
            bucket = msg.buckets.add()
            bucket.cpl = cpl
            bucket.peers.extend(sorted(by_cpl[cpl], key=lambda p: p.peer_id))

    def _wrap_add_peer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def add_peer(peer_obj: Any, *args: Any, **kwargs: Any) -> Any:
            added = await original(peer_obj, *args, **kwargs)
            try:
                if added and self.active:
                    peer_id = getattr(peer_obj, "peer_id", peer_obj)
                    table = tp.DHT_ROUTING_TABLE.get(self._dht)
                    if peer_id not in self._peers and tp.TABLE_PEER_IN.get(table)(peer_id):
                        self._remember(peer_id, self._clock_ms())
            except Exception:
                logger.exception("introspector: routing table hook failed")
            return added

        return add_peer

    def _remember(self, peer_id: Any, now: int) -> _PeerSeen:
        seen = _PeerSeen(
            first_seen_ms=now, cpl=common_prefix_len(self._local_key, kad_key(peer_id))
        )
        self._peers[peer_id] = seen
        return seen

    def _table(self, now: int) -> list[tuple[Any, float]]:
        """``(peer_id, last_seen seconds since epoch)`` for every peer in every KBucket
        (``now``, ms since epoch, for an entry without a ``last_seen``)."""
        rows: list[tuple[Any, float]] = []
        now_s = now / 1000
        table = tp.DHT_ROUTING_TABLE.get(self._dht)
        for bucket in list(tp.TABLE_BUCKETS.get(table, ())):
            for peer_id, entry in list(tp.BUCKET_PEERS.get(bucket, {}).items()):
                last_seen = entry[1] if isinstance(entry, tuple) and len(entry) > 1 else now_s
                rows.append((peer_id, float(last_seen)))
        return rows

    def _refresh_peers(self, now: int) -> list[tuple[Any, float, _PeerSeen]]:
        rows = self._table(now)
        present = set()
        out: list[tuple[Any, float, _PeerSeen]] = []
        for peer_id, last_seen in rows:
            present.add(peer_id)
            seen = self._peers.get(peer_id) or self._remember(peer_id, now)
            out.append((peer_id, last_seen, seen))
        for peer_id in [p for p in self._peers if p not in present]:
            del self._peers[peer_id]
        return out


def kad_key(peer_id: Any) -> bytes:
    """A peer's 256-bit Kademlia key: ``sha256(peer_id.to_bytes())``, as ``peer_id_to_key``."""
    return hashlib.sha256(peer_id.to_bytes()).digest()


def common_prefix_len(a: bytes, b: bytes) -> int:
    """Number of leading bits ``a`` and ``b`` share."""
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    bits = len(a) * 8
    return bits if x == 0 else bits - x.bit_length()


def peer_str(peer_id: Any) -> str:
    """A peer id in base58 (``str()`` of anything else)."""
    try:
        return str(peer_id.to_base58())
    except Exception:
        return str(peer_id)
