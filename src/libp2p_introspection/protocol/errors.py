"""The protocol layer's error root.

Every fault the protocol layer finds in bytes or files it was given derives
from :class:`DataError` (a ``ValueError``: the value is malformed), by kind:

* :class:`~libp2p_introspection.protocol.framing.FrameError`: one server
  frame (§2: header, version, length, checksum);
* :class:`~libp2p_introspection.protocol.protowire.WireError`: protobuf wire bytes
  that are not a well-formed message;
* :class:`~libp2p_introspection.protocol.recording.RecordingError`: a
  recording file (its header, a record's length, checksum or size).

Bad arguments (a negative limit, say) are plain ``ValueError``/``TypeError``:
the caller's bug, not the data's. The layers above have their own roots
(``client.errors.ClientError``, ``server.errors.ServerError``); an error of
this layer passes through them unchanged.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bytes or a file that break the protocol's contract. Subclasses say which part."""
