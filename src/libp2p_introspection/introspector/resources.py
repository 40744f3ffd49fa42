"""py-libp2p's resource manager in snapshots (PROTOCOL.md §3.1 ``Subsystems.resources``).

Source: the ``libp2p.rcmgr.ResourceManager`` the host's ``Swarm`` holds
(``Swarm.set_resource_manager``; ``libp2p.new_host`` installs one by default).
With none, ``Subsystems.resources`` is absent. Every value is one py-libp2p
keeps, read at snapshot time; nothing is estimated.

Scopes (``ResourceScope.name``), the ones py-libp2p 0.8.1 keeps:

* ``system``: the manager's own accounting (``ResourceManager.get_stats()``):
  ``usage.conns_total`` connections, ``usage.streams_total`` streams,
  ``usage.memory`` reserved bytes, against ``ResourceLimits``
  (``limit.conns_total`` = ``max_connections``, ``limit.streams_total`` =
  ``max_streams``, ``limit.memory`` = ``max_memory_bytes``). Per direction:
  ``usage.conns_inbound/outbound`` are the established connections of its
  connection tracker (``ConnectionTracker.get_connection_count``), checked
  against ``limit.conns_inbound/outbound`` = ``ConnectionLimits``
  ``max_established_inbound/outbound``; ``usage.streams_inbound/outbound``
  come from its ``Metrics`` (``get_summary()``; 0 when metrics are off). There
  are no per-direction stream limits, so those stay 0.
* ``protocol:<id>`` and ``service:<name>``: one per protocol / service that
  has a stream limit (``set_protocol_stream_limit`` /
  ``set_service_stream_limit``) or streams counted
  (``acquire_scoped_stream``), in py-libp2p's only-a-total form:
  ``usage.streams_total`` and ``limit.streams_total``. py-libp2p itself opens
  no scoped streams: these scopes are the application's.

``fds`` is 0 everywhere: py-libp2p 0.8.1 does not count file descriptors.
A limit of 0 in the schema means "no limit"; a py-libp2p limit of 0 (refuse
everything) is reported as 0 too, and readers cannot tell the two apart.

``blocked``: refused reservations since attach, counted by a hook on
``ResourceManager._record_blocked_resource``, which every limit refusal
(connection, stream, memory; system, rate, CIDR, service, protocol and
per-peer scopes) calls; one refused dial may count several times (py-libp2p
checks at each upgrade step and the dialer retries). Refusals py-libp2p does
not record (its circuit breaker open; the connection-limits lifecycle) are
not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from libp2p_introspection.introspector import touchpoints as tp
from libp2p_introspection.introspector.patching import InstancePatcher
from libp2p_introspection.protocol import pb

logger = logging.getLogger(__name__)

__all__ = ["ResourceTracker"]

SYSTEM = "system"


def _count(value: Any) -> int:
    """A non-negative int from a py-libp2p count or limit (``None``, junk: 0)."""
    try:
        return max(0, int(value))
    except (TypeError, ValueError, OverflowError):
        return 0


class ResourceTracker:
    """Reads the host's ``ResourceManager`` into ``pb.ResourceManager``.

    :param swarm: the host's py-libp2p ``Swarm``.
    :param patcher: where the refusal hook is installed (undone by its ``restore_all``).
    """

    def __init__(self, swarm: Any, patcher: InstancePatcher) -> None:
        self._swarm = swarm
        self._patcher = patcher
        self._hooked: Any = None
        #: Refused reservations seen by the hook since attach.
        self.blocked = 0

    def manager(self) -> Any:
        """The swarm's ``ResourceManager`` now, or ``None`` (no resource manager)."""
        return tp.SWARM_RESOURCE_MANAGER.get(self._swarm)

    def attach(self) -> None:
        """Hook the refusals of the swarm's resource manager, if it has one."""
        self._hook(self.manager())

    def _hook(self, manager: Any) -> None:
        if manager is None or manager is self._hooked:
            return

        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def record_blocked_resource(*args: Any, **kwargs: Any) -> Any:
                self.blocked += 1
                return original(*args, **kwargs)

            return record_blocked_resource

        if tp.RM_RECORD_BLOCKED.hook(self._patcher, manager, wrap):
            self._hooked = manager

    def fill(self, subsystems: pb.Subsystems, *, hook: bool = True) -> None:
        """Set ``subsystems.resources`` when the swarm has a resource manager
        (left unset otherwise: "no such subsystem").

        :param hook: hook a resource manager installed after attach (false once detached).
        """
        manager = self.manager()
        if manager is None:
            return
        if hook:
            self._hook(manager)
        out = subsystems.resources
        out.SetInParent()
        out.blocked = self.blocked
        self._system(out.scopes.add(name=SYSTEM), manager)
        for prefix, limits_tp, counts_tp in (
            ("protocol", tp.RM_PROTOCOL_LIMITS, tp.RM_PROTOCOL_COUNTS),
            ("service", tp.RM_SERVICE_LIMITS, tp.RM_SERVICE_COUNTS),
        ):
            limits = dict(limits_tp.get(manager) or {})
            counts = dict(counts_tp.get(manager) or {})
            for name in sorted(set(limits) | set(counts), key=str):
                out.scopes.add(
                    name=f"{prefix}:{name}",
                    usage={"streams_total": _count(counts.get(name))},
                    limit={"streams_total": _count(limits.get(name))},
                )

    @staticmethod
    def _system(scope: pb.ResourceScope, manager: Any) -> None:
        usage, limit = scope.usage, scope.limit
        usage.SetInParent()
        limit.SetInParent()
        stats = _call(tp.RM_STATS, manager) or {}
        usage.conns_total = _count(stats.get("connections"))
        usage.streams_total = _count(stats.get("streams"))
        usage.memory = _count(stats.get("memory_bytes"))
        limits = stats.get("limits") or {}
        limit.conns_total = _count(limits.get("max_connections"))
        limit.streams_total = _count(limits.get("max_streams"))
        limit.memory = _count(limits.get("max_memory_bytes"))
        tracker = tp.RM_TRACKER.get(manager)
        if tracker is not None:
            usage.conns_inbound = _count(_call(tp.TRACKER_COUNT, tracker, "established_inbound"))
            usage.conns_outbound = _count(_call(tp.TRACKER_COUNT, tracker, "established_outbound"))
        connection_limits = tp.RM_CONNECTION_LIMITS.get(manager)
        if connection_limits is not None:
            summary = _call(tp.CONNECTION_LIMITS_SUMMARY, connection_limits) or {}
            limit.conns_inbound = _count(summary.get("max_established_inbound"))
            limit.conns_outbound = _count(summary.get("max_established_outbound"))
        metrics = tp.RM_METRICS.get(manager)
        if metrics is not None:
            streams = (_call(tp.METRICS_SUMMARY, metrics) or {}).get("streams") or {}
            usage.streams_inbound = _count(streams.get("inbound"))
            usage.streams_outbound = _count(streams.get("outbound"))


def _call(touchpoint: tp.Touchpoint, obj: Any, *args: Any) -> Any:
    """``obj.<touchpoint>(*args)``, or ``None`` when it is missing or raised (logged)."""
    method = touchpoint.get(obj)
    if not callable(method):
        return None
    try:
        return method(*args)
    except Exception:
        logger.debug("introspector: %s.%s failed", touchpoint.owner, touchpoint.name, exc_info=True)
        return None
