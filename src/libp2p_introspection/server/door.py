"""Who gets in: the server's handshake limit and session admission, as bookkeeping.

:class:`Door` counts the connections still in their handshake and the sessions
admitted, and decides, synchronously, who waits, who is turned away and who is
evicted; the trio adapter (:class:`~libp2p_introspection.server.server.IntrospectionServer`)
does the reading and writing. The rules (SECURITY.md):

- at most ``max_handshakes`` connections are in their handshake at once; a new
  one at the limit evicts the *oldest* (its file descriptor back at once), not
  itself: an honest client finishes in milliseconds, and idle sockets held open
  cannot lock it out. Evictions are counted in :attr:`Door.shed` and logged in
  one summary line at most every :data:`SHED_LOG_INTERVAL_S` (each at DEBUG);
- an upgrade is admitted for :data:`~libp2p_introspection.config.PATH` only, and
  by :func:`~libp2p_introspection.protocol.admission.admit` (token, origin, at
  most ``max_sessions`` sessions, counted from admission, not from the session's
  start, so concurrent handshakes cannot all pass the limit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol
from urllib.parse import urlsplit

import trio

from libp2p_introspection import config as defaults
from libp2p_introspection.protocol.admission import Refusal, admit
from libp2p_introspection.server.config import ServerConfig
from libp2p_introspection.server.handshake import UpgradeRequested

log = logging.getLogger(__name__)

#: Connections evicted for the handshake limit are summarized in one log line at
#: most this often, seconds (each is logged at DEBUG).
SHED_LOG_INTERVAL_S = 10.0


class Guest(Protocol):
    """What the door needs of a connection: who it is, why it ended, how to drop it."""

    peer: str
    ended: str | None

    def abort(self) -> None: ...


class Door:
    """The handshake limit and the session count of one server, from ``config``
    (``max_handshakes``, ``max_sessions``, ``token``, ``allowed_origins``).

    Counters: :attr:`refused` (upgrades refused by admission), :attr:`shed`
    (connections evicted in their handshake), :attr:`admitted` (sessions accepted
    or being accepted).
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.refused = 0
        self.shed = 0
        self.admitted = 0
        #: Connections in their handshake, oldest first, with the cancel scope of each
        #: one's handshake: max_handshakes counts these.
        self._handshaking: dict[Guest, trio.CancelScope] = {}
        self._shed_unlogged = 0
        self._shed_logged_at = float("-inf")

    @property
    def handshakes(self) -> int:
        """Connections open now that are not (yet) in a session."""
        return len(self._handshaking)

    def enter(self, guest: Guest, handshake: trio.CancelScope) -> None:
        """``guest`` starts its handshake under ``handshake`` (cancelled if it is evicted);
        at the limit the oldest handshakes are evicted first to make room."""
        while len(self._handshaking) >= self.config.max_handshakes:
            self._evict_oldest()
        self._handshaking[guest] = handshake

    def leave_handshake(self, guest: Guest) -> None:
        """``guest`` is out of its handshake (a session now, or gone); no-op if it was not in."""
        self._handshaking.pop(guest, None)

    def admission(self, upgrade: UpgradeRequested, peer: str) -> Refusal | None:
        """The refusal to answer ``upgrade`` from ``peer`` with (logged), or ``None`` to
        accept it (then count it with :meth:`admitting`)."""
        path = urlsplit(upgrade.target).path
        if path != defaults.PATH:
            return Refusal(404, f"no endpoint at {path}; use {defaults.PATH}")
        refusal = admit(
            upgrade.target,
            upgrade.headers,
            token=self.config.token,
            allowed_origins=self.config.allowed_origins,
            sessions=self.admitted,
            max_sessions=self.config.max_sessions,
        )
        if refusal is not None:
            self.refused += 1
            log.warning("refused %s: %s (HTTP %d)", peer, refusal.reason, refusal.status)
        return refusal

    @contextmanager
    def admitting(self) -> Iterator[None]:
        """Count one admitted session (accepted or being accepted) for the block."""
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    def log_shed(self, *, now: float | None = None) -> None:
        """Summarize connections evicted since the last summary (at most once per
        :data:`SHED_LOG_INTERVAL_S`; ``now`` in trio seconds, default the current time)."""
        now = trio.current_time() if now is None else now
        if not self._shed_unlogged or now - self._shed_logged_at < SHED_LOG_INTERVAL_S:
            return
        log.warning(
            "closed %d connection%s still in the handshake, the oldest, to make room for "
            "newer ones: %d connections were in their handshake (the limit, --max-handshakes)",
            self._shed_unlogged, "" if self._shed_unlogged == 1 else "s",
            self.config.max_handshakes,
        )  # fmt: skip
        self._shed_unlogged = 0
        self._shed_logged_at = now

    def _evict_oldest(self) -> None:
        oldest = next(iter(self._handshaking))
        scope = self._handshaking.pop(oldest)
        self.shed += 1
        self._shed_unlogged += 1
        log.debug(
            "%s: closed in its handshake for a newer connection: %d connections in their "
            "handshake (limit %d)",
            oldest.peer, len(self._handshaking) + 1, self.config.max_handshakes,
        )  # fmt: skip
        oldest.ended = oldest.ended or "closed in the handshake for a newer connection"
        scope.cancel()
        oldest.abort()
        self.log_shed()
