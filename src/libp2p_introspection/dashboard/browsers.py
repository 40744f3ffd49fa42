"""Fan-out toward browsers: one bounded mailbox per open page, a bounded number of pages.

Messages are JSON texts built once (by the model) and shared by every
mailbox. A page's writer task drains its mailbox and sends everything
pending as one WebSocket text message, a JSON array of messages. A page
that falls behind by more than ``max_pending`` messages, or by more than
``max_pending_bytes`` of them, is not queued for without limit: its mailbox
is emptied and marked for a **resync**, and the writer sends it the current
``hello`` (the whole current picture) instead, a text built once per change
and shared by every page that needs it. So the work and memory per slow
browser are bounded, and the node side never waits.

Memory: every mailbox holds the newest messages broadcast since its page last
took some, so what all mailboxes hold together is at most ``max_pending``
messages and ``max_pending_bytes`` (plus one message larger than that), however
many pages are open, plus, for each page showing the Streams view, at most one
page of streams of its own (:meth:`Mailbox.put_own`: a newer one replaces it); each
page also holds, while it is being written, its own
copy of one feed message (the joined pending messages, or the hello in the
WebSocket library's frame). At most ``max_pages`` pages are open at once
(:meth:`BrowserHub.open`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from libp2p_introspection.dashboard.errors import DashboardError

#: Default bound on messages pending for one browser.
DEFAULT_MAX_PENDING = 256
#: Default bound on the size of the messages pending for one browser, bytes
#: (characters): a few snapshots of a large node.
DEFAULT_MAX_PENDING_BYTES = 32 * 1024 * 1024
#: Default bound on pages open at once (``/feed`` connections).
DEFAULT_MAX_PAGES = 16


class TooManyPages(DashboardError):
    """:meth:`BrowserHub.open` with ``max_pages`` pages open already."""


class Mailbox:
    """Pending messages for one browser; see the module doc."""

    def __init__(
        self,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
    ) -> None:
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.pending: deque[str] = deque()
        #: Total length of :attr:`pending`, characters.
        self.pending_bytes = 0
        #: The browser needs a full ``hello`` before anything else.
        self.needs_hello = True
        #: How many times this browser fell behind and was resynced.
        self.resyncs = 0
        #: The page of streams this browser shows, as it said on its feed (the text it
        #: sent and its :class:`~.streams_api.StreamQuery`), or ``None``: the model sends
        #: it that page's answer with every snapshot (:meth:`BrowserHub.put_each`).
        self.streams: tuple[str, Any] | None = None
        #: The message of this page's own pending (:meth:`put_own`), if any.
        self._own: str | None = None
        self._ready = trio.Event()
        self._ready.set()  # the first hello

    def put(self, text: str) -> None:
        """Queue one message (never blocks); overflow turns into a resync.

        Overflow: ``max_pending`` messages pending already, or more than
        ``max_pending_bytes`` with this one (a single message larger than
        that is still queued when nothing else is pending).
        """
        if self.needs_hello:
            return  # the coming hello covers it
        if len(self.pending) >= self.max_pending or (
            self.pending and self.pending_bytes + len(text) > self.max_pending_bytes
        ):
            self.resync()
            self.resyncs += 1
            return
        self.pending.append(text)
        self.pending_bytes += len(text)
        self._ready.set()

    def put_own(self, text: str) -> None:
        """Queue this page's own message (its page of streams for the snapshot just
        queued), replacing its own one still pending: the page draws only the newest.
        Not counted toward ``max_pending``/``max_pending_bytes`` (those bound what every
        page shares), so a page that reads nothing holds at most one of these."""
        if self.needs_hello:
            return
        if self._own is not None:
            for i, pending in enumerate(self.pending):
                if pending is self._own:
                    del self.pending[i]
                    break
        self._own = text
        self.pending.append(text)
        self._ready.set()

    def resync(self) -> None:
        """Drop what is pending; the browser gets a fresh ``hello`` next."""
        self.pending.clear()
        self._own = None
        self.pending_bytes = 0
        self.needs_hello = True
        self._ready.set()

    async def take(self, hello: Callable[[], str]) -> str:
        """Wait for something to send; returns one JSON array text of messages.

        ``hello`` gives the current ``hello`` as a whole feed message (a JSON
        array text holding it, shared by every page), returned as it is when a
        resync is due (nothing else is pending then: :meth:`put` keeps nothing
        while a hello is due).
        """
        while not (self.needs_hello or self.pending):
            self._ready = trio.Event()
            await self._ready.wait()
        self._own = None
        if self.needs_hello:
            self.needs_hello = False
            self.pending.clear()
            self.pending_bytes = 0
            return hello()
        text = "[" + ",".join(self.pending) + "]"
        self.pending.clear()
        self.pending_bytes = 0
        return text


class BrowserHub:
    """The set of open pages' mailboxes (at most ``max_pages``)."""

    def __init__(
        self,
        max_pending: int = DEFAULT_MAX_PENDING,
        *,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        max_pages: int = DEFAULT_MAX_PAGES,
    ) -> None:
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.max_pages = max_pages
        self.mailboxes: set[Mailbox] = set()
        #: Changes every time a message is broadcast or every page resynced, so a
        #: ``hello`` built at one value is still the current picture while it holds.
        self.generation = 0

    @property
    def full(self) -> bool:
        """Whether ``max_pages`` pages are open."""
        return len(self.mailboxes) >= self.max_pages

    def open(self) -> Mailbox:
        """A mailbox for a new page (its first message will be a ``hello``).

        Raises :class:`TooManyPages` when :attr:`full`.
        """
        if self.full:
            raise TooManyPages(f"{self.max_pages} dashboard pages are open already")
        mailbox = Mailbox(self.max_pending, self.max_pending_bytes)
        self.mailboxes.add(mailbox)
        return mailbox

    def close(self, mailbox: Mailbox) -> None:
        """Forget a page that went away."""
        self.mailboxes.discard(mailbox)

    def broadcast(self, text: str) -> None:
        """Queue a message for every page."""
        self.generation += 1
        for mailbox in self.mailboxes:
            mailbox.put(text)

    def put_each(self, text_for: Callable[[Any], str | None]) -> None:
        """Queue for every page its own message: ``text_for(mailbox.streams)``, none when
        that is ``None``; nothing is built for a page due a fresh ``hello`` (it would be
        dropped). Queued by :meth:`Mailbox.put_own`: at most one pending per page. Not
        counted as a broadcast (:attr:`generation`): what a page is sent this way is
        never part of a ``hello``."""
        for mailbox in self.mailboxes:
            if mailbox.streams is not None and not mailbox.needs_hello:
                text = text_for(mailbox.streams)
                if text is not None:
                    mailbox.put_own(text)

    def resync_all(self) -> None:
        """Every page gets a fresh ``hello`` (the source changed)."""
        self.generation += 1
        for mailbox in self.mailboxes:
            mailbox.resync()
