"""A live network of real py-libp2p nodes on loopback, for ``libp2p-introspect demo``.

Usage::

    from libp2p_introspection.demo import DemoNetwork, DemoOptions

    async def attach(node):  # called before any connection exists
        introspector = HostIntrospector(node.host, dht=node.dht)
        ...

    async with trio.open_nursery() as nursery:
        net = DemoNetwork(DemoOptions(nodes=4, on_observed_ready=attach))
        await nursery.start(net.run)  # all nodes up, connected, DHT bootstrapped
        net.observed.host  # BasicHost of the observed node (never churned)
        net.observed.dht   # its KadDHT
        ...                # runs until the nursery is cancelled

See :mod:`libp2p_introspection.demo.network` for what the network does and
:mod:`libp2p_introspection.demo.protocols` for the protocols it speaks.
"""

from libp2p_introspection.demo.network import DemoNetwork
from libp2p_introspection.demo.node import DHT_NAMESPACE, DemoNode
from libp2p_introspection.demo.options import DemoOptions, ObservedReadyHook
from libp2p_introspection.demo.protocols import (
    BULK_PROTOCOL_ID,
    DEMO_PROTOCOL_IDS,
    ECHO_PROTOCOL_ID,
    PING_PROTOCOL_ID,
)
from libp2p_introspection.demo.stats import NodeStats

__all__ = [
    "BULK_PROTOCOL_ID",
    "DEMO_PROTOCOL_IDS",
    "DHT_NAMESPACE",
    "ECHO_PROTOCOL_ID",
    "PING_PROTOCOL_ID",
    "DemoNetwork",
    "DemoNode",
    "DemoOptions",
    "NodeStats",
    "ObservedReadyHook",
]
