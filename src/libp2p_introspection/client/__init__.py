"""Clients of the protocol: the connection used by the recorder and the dashboard backend."""

from libp2p_introspection.client.connection import (
    IntrospectionClient,
    ProtocolError,
    Received,
    connect,
)

__all__ = ["IntrospectionClient", "ProtocolError", "Received", "connect"]
