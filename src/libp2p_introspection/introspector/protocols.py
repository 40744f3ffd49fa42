"""Per-protocol traffic (PROTOCOL.md §3.1 ``State.protocols``): exact sums of the
stream counters the introspector keeps.

Source: the :class:`~libp2p_introspection.introspector.connections.ConnectionRegistry`'s
stream records, i.e. the counting wrappers on each py-libp2p ``NetStream``'s
``read``/``write`` (payload bytes after multistream-select negotiation, one
packet per call: see :mod:`~libp2p_introspection.introspector.traffic`) and the
protocol id py-libp2p negotiated (``NetStream.set_protocol`` /
``NetStream.protocol_id``). Nothing is estimated: each protocol's
``cum_bytes``/``cum_packets`` is, to the byte, the sum over every stream ever
reported with that protocol of the value it was last reported with.

How a stream is counted:

* an ACTIVE stream counts under its protocol once one is negotiated (before
  that it carries no payload and counts nowhere), in ``active_streams`` and in
  ``streams_opened``, with its current counters;
* an ended stream (CLOSED or ERROR) is *folded* at the first snapshot that
  reports it ended (the same pass, so the same values) into its protocol's
  retired totals, and stays there after the registry drops it: ``cum_*`` and
  ``streams_opened`` never decrease. One that ended before negotiating a
  protocol counts under ``""``. A stream the registry drops without a
  snapshot having reported its end (a connection purged within the snapshot
  window) is folded when dropped, with its final counters.

``inst_bw`` is bytes/s over the snapshot window ``start_ts..instant_ts``, from
each protocol's ``cum_bytes`` at the previous snapshot
(:func:`~libp2p_introspection.introspector.traffic.bandwidth`).

A protocol, once seen, stays in every later snapshot (its totals are lifetime
totals). The set is bounded by the protocols the host negotiates: ids it has
handlers for (inbound) or asked for itself (outbound); a remote cannot add one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from libp2p_introspection.introspector.records import ENDED, ConnectionRecord, StreamRecord
from libp2p_introspection.introspector.traffic import TrafficCounter

logger = logging.getLogger(__name__)

__all__ = ["ProtocolTotals", "ProtocolTracker"]


class ProtocolTotals:
    """One protocol's lifetime totals.

    ``retired``: counters of its streams already folded (ended); ``opened``:
    how many of them; ``traffic``: the reported totals (``retired`` plus the
    live streams at the last snapshot), whose ``prev_*`` are the inst_bw baseline.
    """

    __slots__ = ("active", "opened", "retired", "traffic")

    def __init__(self) -> None:
        self.retired = TrafficCounter()
        self.traffic = TrafficCounter()
        self.opened = 0
        self.active = 0


class ProtocolTracker:
    """Builds ``State.protocols`` from the registry's stream records.

    :meth:`fill` is called once per snapshot, after the connections were
    rendered (so it reads the values the snapshot just reported); the registry
    calls :meth:`on_stream_released` for each stream record it drops.
    """

    def __init__(self) -> None:
        self._totals: dict[str, ProtocolTotals] = {}
        #: Incremental path: per protocol, the sums over its live streams of the
        #: counters last reported (in bytes, in packets, out bytes, out packets, streams).
        self._live: dict[str, list[int]] = {}

    def _of(self, protocol: str) -> ProtocolTotals:
        totals = self._totals.get(protocol)
        if totals is None:
            totals = self._totals[protocol] = ProtocolTotals()
        return totals

    def _fold(self, stream: StreamRecord) -> None:
        stream.summed = True
        totals = self._of(stream.protocol or stream.current_protocol())
        totals.retired.add(stream.traffic)
        totals.opened += 1

    def on_stream_released(self, stream: StreamRecord) -> None:
        """Fold a stream the registry drops (if no snapshot folded it yet)."""
        if not stream.summed:
            self._fold(stream)

    # ------------------------------------------------------------ incremental

    def live_sums(self, protocol: str) -> list[int]:
        """The incremental path's sums over ``protocol``'s live streams of the counters
        last reported, ``[in bytes, in packets, out bytes, out packets, streams]``: the
        encoder keeps them (:mod:`~libp2p_introspection.introspector.encoder`)."""
        self._of(protocol)
        sums = self._live.get(protocol)
        if sums is None:
            sums = self._live[protocol] = [0, 0, 0, 0, 0]
        return sums

    def fold(self, stream: StreamRecord) -> None:
        """Fold an ended stream the incremental path just reported into its protocol's
        lifetime totals (its live share was taken out first)."""
        self._fold(stream)

    def fill_live(self, out: Any, window_ms: int) -> None:
        """:meth:`fill` from the live sums (:meth:`live_sums`) the incremental path keeps
        at the values it reported: the same ``ProtocolStats``."""
        self._emit(out, self._live, window_ms)

    def _emit(self, out: Any, live: Mapping[str, Sequence[int]], window_ms: int) -> None:
        """Append one ``pb.ProtocolStats`` per protocol ever seen to ``out``, sorted by
        protocol id: its retired totals plus ``live`` (protocol -> in bytes, in packets,
        out bytes, out packets, active streams, over the streams still open)."""
        add = out.add
        idle = (0, 0, 0, 0, 0)
        for protocol in sorted(self._totals):
            totals = self._totals[protocol]
            retired, traffic = totals.retired, totals.traffic
            in_b, in_p, out_b, out_p, active = live.get(protocol, idle)
            traffic.in_bytes = retired.in_bytes + in_b
            traffic.in_packets = retired.in_packets + in_p
            traffic.out_bytes = retired.out_bytes + out_b
            traffic.out_packets = retired.out_packets + out_p
            totals.active = active
            add(
                protocol=protocol,
                traffic=traffic.to_dict(window_ms),
                active_streams=active,
                streams_opened=totals.opened + active,
            )

    def fill(self, out: Any, connections: Iterable[ConnectionRecord], window_ms: int) -> None:
        """Append one ``pb.ProtocolStats`` per protocol ever seen to ``out`` (a
        repeated field), sorted by protocol id.

        :param connections: every connection record the snapshot reported.
        :param window_ms: the snapshot window, ms (``inst_bw``).
        """
        live: dict[str, list[int]] = {}
        ended = ENDED
        for record in connections:
            for stream in record.streams.values():
                if stream.summed:
                    continue
                if stream.status in ended:
                    self._fold(stream)
                    continue
                protocol = stream.protocol or stream.current_protocol()
                if not protocol:
                    continue  # still negotiating: no payload counted yet
                sums = live.get(protocol)
                if sums is None:
                    sums = live[protocol] = [0, 0, 0, 0, 0]
                traffic = stream.traffic
                sums[0] += traffic.in_bytes
                sums[1] += traffic.in_packets
                sums[2] += traffic.out_bytes
                sums[3] += traffic.out_packets
                sums[4] += 1
        for protocol in live:
            self._of(protocol)
        self._emit(out, live, window_ms)
