"""Live introspection of a py-libp2p host: connections, streams, traffic, DHT, events.

Usage::

    from libp2p_introspection.introspector import HostIntrospector

    introspector = HostIntrospector(host, dht=dht)  # attach: counting starts now
    state = introspector.state()                    # a pb.State snapshot
    introspector.detach()                           # remove every hook
"""

from libp2p_introspection.introspector.host import HostIntrospector
from libp2p_introspection.protocol.events import (
    CONNECTION_CLOSED,
    CONNECTION_OPENED,
    INBOUND_DHT_QUERY,
    OUTBOUND_DHT_QUERY,
    STREAM_CLOSED,
    STREAM_OPENED,
    EventSpec,
)

__all__ = [
    "CONNECTION_CLOSED",
    "CONNECTION_OPENED",
    "INBOUND_DHT_QUERY",
    "OUTBOUND_DHT_QUERY",
    "STREAM_CLOSED",
    "STREAM_OPENED",
    "EventSpec",
    "HostIntrospector",
]
