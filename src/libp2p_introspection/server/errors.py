"""The server layer's error root.

Every fault the server layer (the hub, the WebSocket server, the sources)
finds in what it is given to serve derives from :class:`ServerError`. What
the protocol layer raises about the bytes of a file
(``protocol.errors.DataError``, e.g. ``RecordingError``) and ``OSError``
pass through unchanged; a caller's bug (an option out of range, a method
called in the wrong state) is a ``ValueError``/``RuntimeError``.
"""

from __future__ import annotations


class ServerError(Exception):
    """The server cannot serve what it was given. Subclasses say why."""


class SourceError(ServerError):
    """A source cannot be served (e.g. a recording without a ``Runtime`` or a ``State``)."""
