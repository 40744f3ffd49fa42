"""The wire protocol: schema, framing, recording files and the session state machine."""

from libp2p_introspection.protocol import introspection_pb2 as pb

__all__ = ["pb"]
