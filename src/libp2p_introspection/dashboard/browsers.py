"""Fan-out toward browsers: one bounded mailbox per open page.

Messages are JSON texts built once (by the model) and shared by every
mailbox. A page's writer task drains its mailbox and sends everything
pending as one WebSocket text message, a JSON array of messages. A page
that falls behind by more than ``max_pending`` messages is not queued for
without limit: its mailbox is emptied and marked for a **resync**, and the
writer sends it a fresh ``hello`` (the whole current picture) instead. So
the work per slow browser is bounded, and the node-side never waits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

#: Default bound on messages pending for one browser.
DEFAULT_MAX_PENDING = 256


class Mailbox:
    """Pending messages for one browser; see the module doc."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.max_pending = max_pending
        self.pending: deque[str] = deque()
        #: The browser needs a full ``hello`` before anything else.
        self.needs_hello = True
        #: How many times this browser fell behind and was resynced.
        self.resyncs = 0
        self._ready = trio.Event()
        self._ready.set()  # the first hello

    def put(self, text: str) -> None:
        """Queue one message (never blocks); overflow turns into a resync."""
        if self.needs_hello:
            return  # the coming hello covers it
        if len(self.pending) >= self.max_pending:
            self.resync()
            self.resyncs += 1
            return
        self.pending.append(text)
        self._ready.set()

    def resync(self) -> None:
        """Drop what is pending; the browser gets a fresh ``hello`` next."""
        self.pending.clear()
        self.needs_hello = True
        self._ready.set()

    async def take(self, hello: Callable[[], str]) -> str:
        """Wait for something to send; returns one JSON array text of messages.

        ``hello`` builds the current ``hello`` message when a resync is due.
        """
        while not (self.needs_hello or self.pending):
            self._ready = trio.Event()
            await self._ready.wait()
        parts = []
        if self.needs_hello:
            self.needs_hello = False
            parts.append(hello())
        parts.extend(self.pending)
        self.pending.clear()
        return "[" + ",".join(parts) + "]"


class BrowserHub:
    """The set of open pages' mailboxes."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.max_pending = max_pending
        self.mailboxes: set[Mailbox] = set()

    def open(self) -> Mailbox:
        """A mailbox for a new page (its first message will be a ``hello``)."""
        mailbox = Mailbox(self.max_pending)
        self.mailboxes.add(mailbox)
        return mailbox

    def close(self, mailbox: Mailbox) -> None:
        """Forget a page that went away."""
        self.mailboxes.discard(mailbox)

    def broadcast(self, text: str) -> None:
        """Queue a message for every page."""
        for mailbox in self.mailboxes:
            mailbox.put(text)

    def resync_all(self) -> None:
        """Every page gets a fresh ``hello`` (the source changed)."""
        for mailbox in self.mailboxes:
            mailbox.resync()
