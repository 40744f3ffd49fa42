"""Clients of the protocol: the connection used by the recorder and the dashboard backend,
and :func:`follow` / :func:`follow_all` for scripts that follow nodes."""

from libp2p_introspection.client.connection import (
    IntrospectionClient,
    ProtocolError,
    Received,
    connect,
)
from libp2p_introspection.client.follow import (
    CommandError,
    FollowedNode,
    Following,
    follow,
    follow_all,
)

__all__ = [
    "CommandError",
    "FollowedNode",
    "Following",
    "IntrospectionClient",
    "ProtocolError",
    "Received",
    "connect",
    "follow",
    "follow_all",
]
