"""The node itself: ``State.node`` (``NodeInfo``), ``ListenAddrsChanged``, ``ReachabilityChanged``.

Where each field comes from (py-libp2p 0.8.1):

* ``listen_addrs``: ``host.get_transport_addrs()``, the multiaddrs the host's
  transports are bound to now (no ``/p2p/`` suffix; a ``/tcp/0`` listen shows
  its real port). Read at every snapshot and whenever the swarm notifies a
  ``listen``/``listen_close`` (read again only when the swarm's listeners or their
  sockets changed, where they are py-libp2p's TCP listeners); a change emits
  ``ListenAddrsChanged`` with the addresses ``added`` and ``removed`` since the
  previous reading (the set read at attach emits nothing).
* ``observed_addrs``: every distinct address a peer reported seeing us at in
  identify (no confirmation threshold, unlike py-libp2p's
  ``ObservedAddrManager``), over the connections in the snapshot; see
  :mod:`~libp2p_introspection.introspector.identify`.
* ``reachability``: the status of the ``AutoNATService``
  (``libp2p.host.autonat``) the application handed over, its
  ``get_status()`` (UNKNOWN / PUBLIC / PRIVATE); ``NOT_RUNNING`` when none
  was. Read at every snapshot and right after each ``update_status()`` (the
  service's only place that changes it, hooked on that instance), so
  ``ReachabilityChanged`` comes as soon as AutoNAT's verdicts change it.
* ``protocols``: ``host.get_mux().get_protocols()``, the protocol ids the host
  has stream handlers for, in registration order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.identify import IdentifyTracker
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.events import EventEmitter

logger = logging.getLogger(__name__)

_REACHABILITY = dict(zip(("UNKNOWN", "PUBLIC", "PRIVATE"),
                         (pb.NodeInfo.UNKNOWN, pb.NodeInfo.PUBLIC, pb.NodeInfo.PRIVATE),
                         strict=True))  # fmt: skip


def autonat_reachability(autonat: Any) -> int:
    """``pb.NodeInfo.Reachability`` of an ``AutoNATService`` (``NOT_RUNNING`` for ``None``);
    a status py-libp2p does not define reads as ``UNKNOWN``."""
    if autonat is None:
        return pb.NodeInfo.NOT_RUNNING
    get_status = tp.AUTONAT_GET_STATUS.get(autonat)
    if not callable(get_status):
        return pb.NodeInfo.UNKNOWN
    status = get_status()
    for touchpoint, default in zip(tp.AUTONAT_STATUSES, (0, 1, 2), strict=True):
        if status == tp.constant(touchpoint, default):
            return _REACHABILITY[touchpoint.name]
    return pb.NodeInfo.UNKNOWN


class NodeTracker:
    """The host's own addresses, reachability and protocols.

    :param host: the py-libp2p ``BasicHost``.
    :param emitter: where ``ListenAddrsChanged`` and ``ReachabilityChanged`` go.
    :param patcher: used for the ``update_status`` hook on ``autonat``.
    :param identify: gives the addresses peers observed us at.
    :param autonat: the host's ``AutoNATService``, or ``None`` (reachability NOT_RUNNING).
    """

    def __init__(
        self,
        host: Any,
        *,
        emitter: EventEmitter,
        patcher: InstancePatcher,
        identify: IdentifyTracker,
        autonat: Any = None,
    ) -> None:
        self._host = host
        self._emitter = emitter
        self._patcher = patcher
        self._identify = identify
        self._autonat = autonat
        self._active = False
        self._listen_addrs: list[str] = []
        #: What :attr:`_listen_addrs` was read from (:meth:`_listeners_key`), or None.
        self._listeners: tuple[Any, ...] | None = None
        self._reachability = autonat_reachability(None)

    def attach(self) -> None:
        """Read the current addresses and status (no events for them); hook AutoNAT."""
        self._active = True
        self._listeners = self._listeners_key()
        self._listen_addrs = self.read_listen_addrs()
        self._reachability = self._read_reachability()
        if self._autonat is not None:
            tp.AUTONAT_UPDATE_STATUS.hook(self._patcher, self._autonat, self._wrap_update)

    def detach(self) -> None:
        """No more events (the hook itself is removed by the shared patcher)."""
        self._active = False

    def read_listen_addrs(self) -> list[str]:
        """``host.get_transport_addrs()`` as strings, each once, in py-libp2p's order."""
        return list(dict.fromkeys(str(addr) for addr in self._host.get_transport_addrs()))

    def _listeners_key(self) -> tuple[Any, ...] | None:
        """What the host's listen addresses are made of, to compare in a few hundred ns
        instead of reading them again (tens of µs: a socket name and a multiaddr built and
        printed for each): the swarm's listeners, each with its sockets. Where the host's
        ``get_transport_addrs`` and every listener's ``get_addrs`` are py-libp2p's bodies
        (``TCPListener``: its sockets' bound addresses, which never change), the same
        listeners with the same sockets give the same addresses. None (read every time)
        for anything else: another transport's listener, another host class or version.
        The key holds the listeners until the next change."""
        host = self._host
        if not tp.HOST_TRANSPORT_ADDRS.runs_checked_body(host):
            return None
        listeners = tp.SWARM_LISTENERS.get(host.get_network())
        if type(listeners) is not dict:
            return None
        key: list[Any] = []
        for name, listener in listeners.items():
            if not tp.TCP_LISTENER_ADDRS.runs_checked_body(listener):
                return None
            sockets = tp.TCP_LISTENER_SOCKETS.get(listener)
            if type(sockets) is not list:
                return None
            key.append((name, listener, *sockets))
        return tuple(key)

    def _read_reachability(self) -> int:
        try:
            return autonat_reachability(self._autonat)
        except Exception:
            logger.exception("introspector: reading AutoNAT's status failed")
            return self._reachability

    def _wrap_update(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def update_status(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            try:
                self.check_reachability()
            except Exception:
                logger.exception("introspector: AutoNAT hook failed")
            return result

        return update_status

    # ------------------------------------------------------------- changes

    def check_listen_addrs(self) -> None:
        """Re-read the listen addresses; emit ``ListenAddrsChanged`` if they changed."""
        if not self._active:
            return
        listeners = self._listeners_key()
        if listeners is not None and listeners == self._listeners:
            return  # the same listeners on the same sockets: the same addresses
        now = self.read_listen_addrs()
        self._listeners = listeners
        before = self._listen_addrs
        if now == before:
            return
        self._listen_addrs = now
        old, new = set(before), set(now)
        added = [addr for addr in now if addr not in old]
        removed = [addr for addr in before if addr not in new]
        if added or removed:
            content = events.listen_addrs_changed(added=added, removed=removed)
            self._emitter.emit(events.LISTEN_ADDRS_CHANGED, content)

    def check_reachability(self) -> None:
        """Re-read AutoNAT's status; emit ``ReachabilityChanged`` if it changed."""
        if not self._active or self._autonat is None:
            return
        now = self._read_reachability()
        if now != self._reachability:
            self._reachability = now
            self._emitter.emit(events.REACHABILITY_CHANGED, events.reachability_changed(now))

    # ----------------------------------------------------------- snapshots

    def fill(self, node: pb.NodeInfo) -> None:
        """Fill ``node`` (``State.node``), emitting the changes found first."""
        for check in (self.check_listen_addrs, self.check_reachability):
            try:
                check()
            except Exception:
                logger.exception("introspector: %s failed", check.__name__)
        node.SetInParent()
        node.listen_addrs.extend(self._listen_addrs)
        node.observed_addrs.extend(self._identify.observed_addrs())
        node.reachability = self._reachability
        try:
            mux = self._host.get_mux()
            node.protocols.extend(str(p) for p in mux.get_protocols() if p is not None)
        except Exception:
            logger.exception("introspector: reading the host's protocols failed")
