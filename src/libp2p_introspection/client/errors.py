"""The client layer's error root.

Every fault the clients (connection, recorder, ``watch``, ``inspect``) find
themselves derives from :class:`ClientError`; what the protocol layer raises
about a file or frame (``protocol.errors.DataError``) and the operating
system's ``OSError`` pass through unchanged.
"""

from __future__ import annotations


class ClientError(Exception):
    """A client could not go on. Subclasses say why."""


class ProtocolError(ClientError):
    """The server sent something this client cannot accept (a bad frame, a text frame
    that is not a binary string, a message that does not parse)."""
