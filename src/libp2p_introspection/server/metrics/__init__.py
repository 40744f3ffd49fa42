"""The Prometheus export: ``/metrics`` rendered from the hub's snapshots and events.

:class:`MetricsView` (pure) folds what the hub publishes into counters and keeps
the latest snapshot; :class:`~.families.ViewCollector` renders it as metric
families in go-libp2p's names where go measures the same thing; and
:class:`MetricsEndpoint` serves them over HTTP under the introspection port's
admission rules. The server wires them together when ``metrics_port`` is set.
"""

from libp2p_introspection.server.metrics.endpoint import MetricsEndpoint
from libp2p_introspection.server.metrics.families import ServerHealth, ViewCollector
from libp2p_introspection.server.metrics.view import MetricsView

__all__ = ["MetricsEndpoint", "MetricsView", "ServerHealth", "ViewCollector"]
