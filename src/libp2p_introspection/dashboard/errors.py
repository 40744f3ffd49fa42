"""The dashboard layer's error root.

Every fault the dashboard finds itself derives from :class:`DashboardError`: a
request it refuses (``bodies.BadRequest``, ``BodyTooLarge``, ``UploadTimedOut``,
``guards.BadQuery``),
a bound reached (``browsers.TooManyPages``, ``nodes.FleetFull``,
``convert.SnapshotTooLarge``), a recording it cannot load
(``recording.RecordingLoadError``). What the protocol layer raises about bytes
(``protocol.errors.DataError``), a client's ``ClientError`` and ``OSError`` pass
through unchanged.
"""

from __future__ import annotations


class DashboardError(Exception):
    """The dashboard could not do what it was asked. Subclasses say why."""
