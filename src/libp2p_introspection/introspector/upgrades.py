"""Hooks on the swarm's ``TransportUpgrader`` to see connections being born.

``Swarm`` upgrades every raw TCP/WebSocket connection with
``upgrader.upgrade_security(raw_conn, is_initiator, peer_id)`` and then
``upgrader.upgrade_connection(secured_conn, peer_id)`` before the connection
reaches the notifee. Wrapping those two bound methods on the swarm's upgrader
instance gives:

* ``open_ts``: when the security handshake started on the raw connection
  (the earliest moment py-libp2p hands us the connection);
* ``upgraded_ts``: when the muxer was negotiated;
* byte counting on the raw connection from its first handshake byte.

Connections that do not pass through the upgrader (QUIC, or ones that existed
before the introspector was attached) are handled by the notifee path with
``open_ts = upgraded_ts`` = the ``SwarmConn``'s creation time.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.introspector.traffic import TrafficCounter, install_counters
from libp2p_introspection.protocol.clock import ClockMs

logger = logging.getLogger(__name__)


@dataclass
class PendingConnection:
    """A connection seen by the upgrader but not yet by the notifee.

    ``open_ts``/``upgraded_ts`` are ms since epoch (0 while not upgraded);
    ``traffic`` already counts the raw connection's bytes.
    """

    raw: Any
    traffic: TrafficCounter
    open_ts: int
    upgraded_ts: int = 0


class UpgradeTracker:
    """Wraps ``upgrade_security``/``upgrade_connection`` on one upgrader instance.

    :param on_failed: called with the counter of a connection whose upgrade
        failed, so its handshake bytes still reach the node-wide totals.
    """

    def __init__(
        self,
        patcher: InstancePatcher,
        clock_ms: ClockMs,
        on_failed: Callable[[TrafficCounter], None],
    ) -> None:
        self._patcher = patcher
        self._clock_ms = clock_ms
        self._on_failed = on_failed
        self._by_secured: weakref.WeakKeyDictionary[Any, PendingConnection] = (
            weakref.WeakKeyDictionary()
        )
        self._by_muxed: weakref.WeakKeyDictionary[Any, PendingConnection] = (
            weakref.WeakKeyDictionary()
        )
        #: Raw connection object -> its counter, for every raw connection wrapped.
        self.raw_counters: weakref.WeakKeyDictionary[Any, TrafficCounter] = (
            weakref.WeakKeyDictionary()
        )

    def attach(self, upgrader: Any) -> None:
        """Install the two wrappers on ``upgrader`` (a ``TransportUpgrader``)."""
        if upgrader is None:
            return
        tp.UPGRADE_SECURITY.hook(self._patcher, upgrader, self._wrap_security, once=False)
        tp.UPGRADE_CONNECTION.hook(self._patcher, upgrader, self._wrap_muxer, once=False)

    def counter_for(self, conn: Any, raw: Any) -> TrafficCounter:
        """The traffic counter of a ``SwarmConn`` the upgrader did not see (adopted at
        attach, or upgraded elsewhere): the one already on its raw connection, or new
        counters installed on it (or, failing that, on the secured one)."""
        target = raw
        if target is None:
            target = tp.MUXER_SECURED_CONN.get(getattr(conn, "muxed_conn", None))
            if target is not None:
                logger.debug("introspector: no raw connection found; counting at secured layer")
        if target is None:
            return TrafficCounter()
        try:
            existing = self.raw_counters.get(target)
        except TypeError:
            existing = None
        if existing is not None:
            return existing
        counter = TrafficCounter()
        try:
            if install_counters(self._patcher, target, counter):
                self.raw_counters[target] = counter
        except Exception:
            logger.exception("introspector: could not hook connection traffic")
        return counter

    def take(self, muxed_conn: Any) -> PendingConnection | None:
        """Remove and return what the upgrader recorded for ``muxed_conn``, if anything."""
        try:
            return self._by_muxed.pop(muxed_conn, None)
        except TypeError:
            return None

    def _wrap_security(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def upgrade_security(raw_conn: Any, is_initiator: bool, *args: Any, **kw: Any) -> Any:
            pending: PendingConnection | None = None
            try:
                counter = TrafficCounter()
                if install_counters(self._patcher, raw_conn, counter):
                    self.raw_counters[raw_conn] = counter
                else:
                    counter = self.raw_counters.get(raw_conn, counter)
                pending = PendingConnection(raw=raw_conn, traffic=counter, open_ts=self._clock_ms())
            except Exception:
                logger.exception("introspector: could not hook raw connection")
            try:
                secured = await original(raw_conn, is_initiator, *args, **kw)
            except BaseException:
                if pending is not None:
                    self._failed(pending)
                raise
            if pending is not None:
                try:
                    self._by_secured[secured] = pending
                except Exception:
                    logger.debug("introspector: secured connection not weak-referenceable")
            return secured

        return upgrade_security

    def _wrap_muxer(self, original: Callable[..., Any]) -> Callable[..., Any]:
        async def upgrade_connection(conn: Any, *args: Any, **kw: Any) -> Any:
            try:
                pending = self._by_secured.pop(conn, None)
            except TypeError:
                pending = None
            try:
                muxed = await original(conn, *args, **kw)
            except BaseException:
                if pending is not None:
                    self._failed(pending)
                raise
            if pending is not None:
                try:
                    pending.upgraded_ts = self._clock_ms()
                    self._by_muxed[muxed] = pending
                except Exception:
                    logger.debug("introspector: muxed connection not weak-referenceable")
            return muxed

        return upgrade_connection

    def _failed(self, pending: PendingConnection) -> None:
        try:
            self._on_failed(pending.traffic)
        except Exception:
            logger.exception("introspector: failed-upgrade accounting")
