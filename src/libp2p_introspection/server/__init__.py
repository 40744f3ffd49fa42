"""The introspection server: WebSocket endpoint, snapshot clock and session fan-out."""

from libp2p_introspection.server.hub import Hub
from libp2p_introspection.server.server import (
    IntrospectionServer,
    ServerConfig,
    open_introspection_server,
)

__all__ = ["Hub", "IntrospectionServer", "ServerConfig", "open_introspection_server"]
