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

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: Where each public name lives. They are imported on first use, so that
#: ``demo.options`` (the CLI's demo flags) loads without py-libp2p.
_HOMES = {
    "DemoNetwork": "network", "DHT_NAMESPACE": "node", "DemoNode": "node",
    "DemoOptions": "options", "ObservedReadyHook": "options", "BULK_PROTOCOL_ID": "protocols",
    "DEMO_PROTOCOL_IDS": "protocols", "ECHO_PROTOCOL_ID": "protocols",
    "PING_PROTOCOL_ID": "protocols", "NodeStats": "stats",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


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
