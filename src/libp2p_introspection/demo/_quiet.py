"""Demote py-libp2p's known-benign warnings caused by demo traffic and churn.

py-libp2p 0.8.1 logs several ordinary events at WARNING (and a few at
ERROR), e.g. ``Failed to read DHT message from stream`` every time a peer
closes a DHT stream after its last request (yamux raises ``StreamEOF`` where
the DHT handler expects an empty read), or ``Failed to open stream to ...``
when a lookup hits a node that just left. Without logging configured those go
to stderr through :data:`logging.lastResort` and would flood the terminal the
demo runs in. While the demo runs, records matching :data:`BENIGN` are
re-levelled to DEBUG (so they still reach DEBUG handlers); anything else is
left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

#: logger name -> message prefixes that are expected in the demo.
_STALE_RECORD = "Received an invalid-signed-record"

BENIGN: dict[str, tuple[str, ...]] = {
    # A peer closing its DHT stream after its last request (yamux raises
    # StreamEOF where the handler expects an empty read); a missing record.
    # Stale signed peer records: a node that rejoined with the same identity
    # issues a newer record, but third parties keep handing out its previous
    # one in closerPeers; py-libp2p rejects the older one and logs an ERROR.
    "libp2p.kad_dht.kad_dht": (
        "Failed to read DHT message from stream",
        "Value not found for key",
        _STALE_RECORD,
    ),
    "libp2p.kad_dht.utils": ("Failed to update the Certified-Addr-Book",),
    # Everything below is a lookup, dial or stream hitting a node that is
    # leaving or offline (churn), or a stream reset because it left.
    "libp2p.kad_dht.peer_routing": ("Failed to open stream to", _STALE_RECORD),
    "libp2p.kad_dht.value_store": (
        "Failed to store value at peer",
        "Failed to get value from peer",
        _STALE_RECORD,
    ),
    "libp2p.kad_dht.provider_store": (
        "Error getting providers from",
        "Error sending ADD_PROVIDER",
        "Failed to send ADD_PROVIDER",
        _STALE_RECORD,
    ),
    "libp2p.transport.tcp.tcp": ("Failed to open TCP stream",),
    "libp2p.network.swarm": ("failed to upgrade security for peer",),
    "libp2p.protocol_muxer.multiselect_client": ("MultiselectClient handshake",),
    "libp2p.host.basic_host": ("Failed to open stream to peer",),
    "libp2p.stream_muxer.mplex.mplex": (
        "message channel of stream",
        "Received message for non-existent stream",
        "Received data from remote after stream was closed",
    ),
}


class _Demote(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self._prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno in (logging.WARNING, logging.ERROR):
            message = record.getMessage()
            if message.startswith(self._prefixes):
                record.levelno = logging.DEBUG
                record.levelname = "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


@contextmanager
def quiet_libp2p_warnings(enabled: bool = True) -> Iterator[None]:
    """Install the demoting filters for the duration of the block."""
    if not enabled:
        yield
        return
    installed: list[tuple[logging.Logger, logging.Filter]] = []
    for name, prefixes in BENIGN.items():
        if prefixes:
            logger = logging.getLogger(name)
            flt = _Demote(prefixes)
            logger.addFilter(flt)
            installed.append((logger, flt))
    try:
        yield
    finally:
        for logger, flt in installed:
            logger.removeFilter(flt)
