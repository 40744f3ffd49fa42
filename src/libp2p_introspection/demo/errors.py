"""The demo network's error root: every fault the demo finds itself derives from
:class:`DemoError` (a peer that broke a demo protocol: ``protocols.DemoProtocolError``)."""

from __future__ import annotations


class DemoError(Exception):
    """The demo network could not go on. Subclasses say why."""
