"""Attacks on the Streams page sent with each snapshot (app.py's ``streams?QUERY``,
:meth:`.browsers.BrowserHub.put_each`, :meth:`.streams_api.StreamPages.feed_answers`):
pages that never read their feed, each showing its own page of streams.

In-process (a real :class:`.model.DashboardModel`, hub and store; snapshots from the
synthetic source): no sockets, no timers."""

from __future__ import annotations

from libp2p_introspection.dashboard.browsers import BrowserHub
from libp2p_introspection.dashboard.model import DashboardModel
from libp2p_introspection.dashboard.store import Store
from libp2p_introspection.dashboard.streams_api import StreamPages, StreamQuery
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

START_MS = 1_700_000_000_000
SORTS = ("peer", "proto", "role", "status", "age", "in", "out", "bwIn", "bwOut")


def _source(connections: int = 100, streams: int = 10) -> SyntheticSource:
    now = [START_MS]

    def clock() -> int:
        now[0] += 1_000
        return now[0]

    options = SyntheticOptions(connections=connections, streams=streams, seed=3, clock_ms=clock)
    return SyntheticSource(options)


def _ask(mailbox, text: str) -> None:
    """What app.py's feed loop does with ``streams?<text>`` from a page."""
    mailbox.streams = (text, StreamQuery.from_feed(text))


async def test_pages_that_never_read_hold_together_at_most_the_hubs_bound():
    # browsers.py: "what all mailboxes hold together is at most max_pending messages and
    # max_pending_bytes (plus one message larger than that), however many pages are open"
    # (SECURITY.md: "one that reads nothing costs its message in flight"). A page's own
    # streams answer is a text of its own, queued behind every snapshot: 8 pages that took
    # their hello, asked each for a page of 500 streams and then read nothing held 5.9 MB
    # here for a 1 MiB bound; at the defaults, 16 pages x 32 MiB = 512 MiB of answers.
    # The page draws only the last answer it was sent (tables.js offer): allowed here is
    # the shared bound and one answer of its own per page.
    bound = 1024 * 1024
    hub = BrowserHub(max_pending_bytes=bound)
    model = DashboardModel(Store(), hub)
    source = _source()
    model.feed_state(source.state())
    pages = [hub.open() for _ in range(8)]
    for i, mailbox in enumerate(pages):
        await mailbox.take(model.hello)  # its hello read; then it reads nothing more
        _ask(mailbox, f"size=500&sort={SORTS[i]}")  # a page of its own
    largest = largest_answer = held_most = 0
    for _ in range(24):
        model.feed_state(source.state())
        held = {id(text): text for mailbox in pages for text in mailbox.pending}
        for text in held.values():
            largest = max(largest, len(text))
            if text.startswith('{"t":"streams"'):
                largest_answer = max(largest_answer, len(text))
        held_most = max(held_most, sum(map(len, held.values())))
    assert largest_answer, "no page was sent its streams: the attack missed"
    allowed = bound + largest + len(pages) * largest_answer
    assert held_most <= allowed, (held_most, allowed)


class CountingPages(StreamPages):
    """The real :class:`StreamPages`, counting the answers it builds."""

    def __init__(self) -> None:
        super().__init__()
        self.built = 0

    def answer(self, store, query):
        self.built += 1
        return super().answer(store, query)


async def test_no_page_of_streams_is_built_for_a_page_that_will_not_get_it():
    # A page that fell behind (or never read its first hello) gets a hello next:
    # Mailbox.put drops whatever is queued for it meanwhile. put_each still builds its
    # streams answer first, a sort and a filter of every stream of the snapshot on the
    # dashboard's loop (measured: 16 such pages, distinct queries, 1,000 x 50 streams:
    # 330 ms of loop per snapshot), for a message thrown away at once: 15 local
    # clients that open /feed, each ask their own "streams?..." and read nothing, make
    # every snapshot cost that for nobody.
    hub = BrowserHub()
    model = DashboardModel(Store(), hub)
    model.streams = CountingPages()
    source = _source()
    model.feed_state(source.state())
    silent = [hub.open() for _ in range(4)]  # never took its hello: needs_hello all along
    for i, mailbox in enumerate(silent):
        _ask(mailbox, f"size=500&sort={SORTS[i]}&find=x{i}")
    for _ in range(3):
        model.feed_state(source.state())
    assert all(m.needs_hello and not m.pending for m in silent)  # nothing was queued for them
    assert model.streams.built == 0, f"{model.streams.built} answers built for nobody"
