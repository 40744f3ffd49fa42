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

The rest would still repeat without bound: py-libp2p logs one WARNING per
dropped message, per refused peer, and so on, and a few hundred of them bury
the demo's own "What to do next" text in minutes. So, while the demo runs,
py-libp2p's records (the ``libp2p`` logger and its children, which py-libp2p
0.8.1 keeps off the root logger: ``propagate`` is false, so they fall to
:data:`logging.lastResort`) go through :class:`CollapseRepeats`: a WARNING is
shown the first time, then only at its 10th, 100th, 1000th... repeat, with the
count. ERROR and CRITICAL records are always shown; records below the ``libp2p``
logger's level when the demo starts (WARNING unless lowered, as ``-vv`` does) are
not, as before. They are then handed to the root logger's handlers (the CLI's
format, its token redaction and printable text), or to :data:`logging.lastResort`
when there are none.
"""

from __future__ import annotations

import logging
from collections import Counter
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
    # A node that left (churn) resets its TCP connections: yamux logs an ERROR for the
    # reset (the same message for any other error is left alone, see _Demote).
    "libp2p.stream_muxer.yamux.yamux": ("Error in handle_incoming for peer",),
    "libp2p.stream_muxer.mplex.mplex": (
        "message channel of stream",
        "Received message for non-existent stream",
        "Received data from remote after stream was closed",
    ),
}


#: A BENIGN prefix whose message is benign only when it also holds one of these.
ONLY_WITH: dict[str, tuple[str, ...]] = {
    "Error in handle_incoming for peer": (
        "ConnectionClosedError: TCP connection reset by remote peer",
    ),
}


class _Demote(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self._prefixes = prefixes

    def _benign(self, message: str) -> bool:
        for prefix in self._prefixes:
            if message.startswith(prefix):
                needed = ONLY_WITH.get(prefix)
                return needed is None or any(part in message for part in needed)
        return False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno in (logging.WARNING, logging.ERROR):
            message = record.getMessage()
            if self._benign(message):
                record.levelno = logging.DEBUG
                record.levelname = "DEBUG"
                return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


#: Most distinct (logger, message) pairs counted; beyond it, new ones are shown uncounted.
MAX_COUNTED = 10_000


class CollapseRepeats(logging.Filter):
    """Passes a WARNING record the 1st, 10th, 100th, 1000th... time its logger logs that
    message (the same format string, whatever its arguments: "fail to deliver message to
    subscription for topic %s" is one message for every topic), each repeat shown with
    its count; drops the repeats in between. Other levels always pass (ERROR and above
    are real errors; DEBUG and INFO are what the user asked for with ``-v``)."""

    def __init__(self) -> None:
        super().__init__()
        #: (logger name, format string) -> times seen.
        self.seen: Counter[tuple[str, str]] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        if key not in self.seen and len(self.seen) >= MAX_COUNTED:
            return True
        self.seen[key] += 1
        count = self.seen[key]
        if count == 1:
            return True
        if count != 10 ** (len(str(count)) - 1):  # 10, 100, 1000, ...
            return False
        record.msg = (
            f"{record.getMessage()} [logged {count} times so far; shown again at "
            f"{count * 10}]"
        )
        record.args = ()
        return True


class _ToRootHandlers(logging.Handler):
    """Hands a record to the root logger's handlers (each at its own level), or to
    :data:`logging.lastResort` when the root logger has none."""

    def emit(self, record: logging.LogRecord) -> None:
        handlers = [h for h in logging.getLogger().handlers if h is not self]
        if not handlers and logging.lastResort is not None:
            handlers = [logging.lastResort]
        for handler in handlers:
            if record.levelno >= handler.level:
                handler.handle(record)


@contextmanager
def quiet_libp2p_warnings(enabled: bool = True) -> Iterator[None]:
    """Install the demoting filters and the repeat-collapsing handler of py-libp2p's
    ``libp2p`` logger for the duration of the block."""
    if not enabled:
        yield
        return
    libp2p_logger = logging.getLogger("libp2p")
    # What reached lastResort before (WARNING, unless the application lowered the
    # ``libp2p`` level, e.g. ``-vv``): some py-libp2p loggers set INFO on themselves.
    collapsing = _ToRootHandlers(level=libp2p_logger.getEffectiveLevel())
    collapsing.addFilter(CollapseRepeats())
    libp2p_logger.addHandler(collapsing)
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
        libp2p_logger.removeHandler(collapsing)
