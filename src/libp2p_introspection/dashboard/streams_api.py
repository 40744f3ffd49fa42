"""The Streams tables' rows, one page at a time: ``GET /api/streams`` (:mod:`.app`).

A snapshot of 5,000 connections of 10 streams holds 50,000 streams; a page
never holds or is sent them all. It asks for the page of rows it shows
(Tabulator's remote pagination, ``static/js/tables.js``'s ``streamsTable``),
sorted and filtered here, from the stored converted snapshot of the moment it
shows (:class:`~.store.Store`)::

    GET /api/streams?ts=MS&page=P&size=N&sort=FIELD&dir=asc|desc&find=TEXT
                    &status=STATUS&conn=ID
      ts: the moment (the stored snapshot at or before it, as /api/snapshot);
          absent or "latest": the newest
      page: 1-based (default 1); size: rows per page, 1..MAX_PAGE_SIZE (100)
      sort: one of SORT_FIELDS (default "age"); dir: "asc" (default) or "desc"
      find: the protocol contains it, case-insensitively (at most MAX_FIND chars)
      status: the stream's status is exactly it; conn: of that connection only

    -> {"ts": ms (the snapshot's), "page": P (clamped to last_page),
        "last_page": int >= 1, "last_row": rows matched, "total": rows before
        filtering, "data": [ROW, ...]}
    ROW = {"key": "CONN_ID:K" (K: the stream's index in its connection),
           "conn": CONN_ID, "peer", "proto", "role", "status",
           "age": ms (until it closed if CLOSED, else until the snapshot; 0 if
                  its open time is unknown), "in", "out" (bytes), "bwIn", "bwOut" (bytes/s)}

A page that shows the Streams view may say on its feed which page it shows
(:meth:`StreamQuery.from_feed`: the same parameters but ``ts``); with every
snapshot the dashboard then sends it that page's answer for that snapshot
(:meth:`StreamPages.feed_answers`), so the page draws it with no request::

    {"t": "streams", "q": QUERY (the text the page sent), "answer": ANSWER
     (as GET /api/streams?ts=<the snapshot's>&QUERY answers)}

Order: numbers by value, text (peer, proto, role, status) case-insensitively
(Unicode case folding, then by code point); ties (texts equal but for case
included) keep the snapshot's order (its connections in
order, each one's streams in order) in either direction. Bad parameters raise
:class:`~.guards.BadQuery` (the route answers 400 with the reason); strings
from the node are data here too, never parsed or formatted.

The rows of a snapshot are built once: from the converted snapshot the model
has just made (:meth:`StreamPages.prime`: at once while pages show streams,
else when a page first asks for the newest), or by parsing the stored text
(a page scrubbed to an older moment); they are
kept for the last :data:`KEEP_SNAPSHOTS` snapshots asked, with the orders
asked of them: the memory of a few snapshots' streams, whatever the retention.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from libp2p_introspection.dashboard.caps import MAX_TEXT, dumps
from libp2p_introspection.dashboard.convert import JSON
from libp2p_introspection.dashboard.guards import BadQuery, bounded_int, bounded_text, feed_query
from libp2p_introspection.dashboard.store import Store, StoredSnapshot

#: Rows a page may ask for at once.
MAX_PAGE_SIZE = 500
#: Rows per page when not said.
DEFAULT_PAGE_SIZE = 100
#: The longest ``find``, ``status`` and ``conn`` accepted, characters (a protocol is
#: shown up to 1,024: one pasted from the table is found).
MAX_FIND = MAX_TEXT
#: Snapshots whose rows (and orders) are kept.
KEEP_SNAPSHOTS = 3
#: Orders kept per snapshot (a sort, a direction, a filter).
KEEP_ORDERS = 8
#: Orders of the snapshot before built with a new one (:meth:`StreamPages.prime`).
WARM_ORDERS = 2
#: The columns a page may sort by (a ROW's fields).
SORT_FIELDS = ("peer", "proto", "role", "status", "age", "in", "out", "bwIn", "bwOut")
_TEXT_FIELDS = frozenset(("peer", "proto", "role", "status"))
# A row is a tuple, in this order (ROW's fields).
_FIELDS = ("key", "conn", "peer", "proto", "role", "status", "age", "in", "out", "bwIn", "bwOut")
_AT = {name: i for i, name in enumerate(_FIELDS)}
#: The parameters a page's feed query may give (a GET's, but the moment: the snapshot's).
FEED_PARAMS = frozenset(("page", "size", "sort", "dir", "find", "status", "conn"))


@dataclass(frozen=True, slots=True)
class StreamQuery:
    """One ``GET /api/streams`` (module doc), its parameters checked."""

    ts: int | None
    page: int = 1
    size: int = DEFAULT_PAGE_SIZE
    sort: str = "age"
    desc: bool = False
    find: str = ""
    status: str = ""
    conn: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> StreamQuery:
        """The query of a request's parameters. Raises :class:`BadQuery` (its text says why)."""
        raw_ts = params.get("ts", "")
        ts = None if raw_ts in ("", "latest") else bounded_int(params, "ts", 0, 2**64 - 1)
        sort = params.get("sort", "age") or "age"
        if sort not in SORT_FIELDS:
            raise BadQuery(f"sort must be one of {', '.join(SORT_FIELDS)}")
        direction = params.get("dir", "asc") or "asc"
        if direction not in ("asc", "desc"):
            raise BadQuery("dir must be asc or desc")
        conn = params.get("conn")
        return cls(
            ts=ts,
            page=bounded_int(params, "page", 1, 10**9, default=1),
            size=bounded_int(params, "size", 1, MAX_PAGE_SIZE, default=DEFAULT_PAGE_SIZE),
            sort=sort,
            desc=direction == "desc",
            find=bounded_text(params, "find", MAX_FIND),
            status=bounded_text(params, "status", MAX_FIND),
            conn=None if conn is None else bounded_text(params, "conn", MAX_FIND),
        )

    @classmethod
    def from_feed(cls, text: str) -> StreamQuery:
        """The query of the text a page sent on its feed (``page=1&size=100&sort=age``:
        :data:`FEED_PARAMS`, percent-encoded, each at most once; checked as
        :meth:`parse` checks a ``GET``'s). Raises :class:`BadQuery` (its text says why)."""
        return cls.parse(feed_query(text, FEED_PARAMS))


def _rows(snapshot: JSON) -> tuple[list[tuple[Any, ...]], dict[str, list[range]]]:
    """Every stream's row of a converted snapshot, in order, and the rows of each
    connection id (a node may send two connections under one id: both are its own, and
    the second one's keys are ``CONN_ID#2:K``, so that no two rows share a key)."""
    ts = snapshot["ts"]
    rows: list[tuple[Any, ...]] = []
    add = rows.append
    spans: dict[str, list[range]] = {}
    for conn in snapshot["conns"]:
        cid, peer = conn["id"], conn["peer"]
        start = len(rows)
        mine = spans.get(cid)
        prefix = cid if mine is None else f"{cid}#{len(mine) + 1}"
        for k, s in enumerate(conn["streams"]):
            status, opened, closed = s["status"], s["open"], s["close"]
            age = ((closed if status == "CLOSED" and closed else ts) - opened) if opened else 0
            add((f"{prefix}:{k}", cid, peer, s["proto"], s["role"], status, age,
                 s["in"], s["out"], s["bwIn"], s["bwOut"]))  # fmt: skip
        spans.setdefault(cid, []).append(range(start, len(rows)))
    return rows, spans


class _Entry:
    __slots__ = ("columns", "orders", "rows", "spans", "stored")

    def __init__(self, stored: StoredSnapshot, snapshot: JSON) -> None:
        self.stored = stored
        self.rows, self.spans = _rows(snapshot)
        self.orders: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self.columns: dict[str, list[Any]] = {}

    def column(self, field: str) -> list[Any]:
        """Every row's ``field`` (text case-folded: what it sorts and is found by)."""
        values = self.columns.get(field)
        if values is None:
            at = _AT[field]
            if field in _TEXT_FIELDS:
                values = [r[at].casefold() for r in self.rows]
            else:
                values = [r[at] for r in self.rows]
            self.columns[field] = values
        return values


class StreamPages:
    """Answers :class:`StreamQuery` from a :class:`~.store.Store`'s snapshots (module doc)."""

    def __init__(self) -> None:
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        # The newest snapshot and its converted form, when not primed: its rows are built
        # from that if a page asks (a Streams tab opened), not from its text parsed again.
        self._newest: tuple[StoredSnapshot, JSON] | None = None

    def clear(self) -> None:
        """Forget every snapshot's rows (another source is shown)."""
        self._entries.clear()
        self._newest = None

    def prime(self, stored: StoredSnapshot, snapshot: JSON) -> None:
        """When pages asked for the streams of the snapshot before (a Streams table is
        shown), build the rows of ``stored`` from its converted form ``snapshot`` (not
        changed), and the last :data:`WARM_ORDERS` orders pages asked of the snapshot
        before it (their sort and filters: they ask the same of this one as soon as
        they hear of it; about 15 ms each at 50,000 streams), so
        that the first page asked of a new snapshot is a slice, nothing parsed or
        sorted then."""
        previous = next(reversed(self._entries.values()), None)
        if previous is None or not previous.orders:
            self._newest = (stored, snapshot)  # no page asked of the last: built if one asks
            return
        self._newest = None
        entry = self._keep(_Entry(stored, snapshot))
        for key in list(previous.orders)[-WARM_ORDERS:]:  # the loop is not held longer
            self._order_of(entry, key)

    def _keep(self, entry: _Entry) -> _Entry:
        self._entries[id(entry.stored)] = entry
        self._entries.move_to_end(id(entry.stored))
        while len(self._entries) > KEEP_SNAPSHOTS:
            self._entries.popitem(last=False)
        return entry

    def _entry(self, stored: StoredSnapshot) -> _Entry:
        entry = self._entries.get(id(stored))
        if entry is not None and entry.stored is stored:
            self._entries.move_to_end(id(stored))
            return entry
        newest = self._newest
        if newest is not None and newest[0] is stored:
            self._newest = None
            return self._keep(_Entry(stored, newest[1]))
        return self._keep(_Entry(stored, stored.data))

    def answer(self, store: Store, query: StreamQuery) -> JSON | None:
        """The answer (module doc) of ``query`` on ``store``; ``None`` if it holds no snapshot."""
        stored = store.latest if query.ts is None else store.at(query.ts)
        if stored is None or (query.ts is not None and stored.ts > query.ts):
            return None  # nothing at or before the moment (it was dropped): not a later one
        entry = self._entry(stored)
        order = self._order(entry, query)
        total = len(entry.rows) if query.conn is None else _span_len(entry, query.conn)
        last_page = max(1, -(-len(order) // query.size))
        page = min(query.page, last_page)
        chosen = order[(page - 1) * query.size : page * query.size]
        rows = entry.rows
        return {
            "ts": stored.ts, "page": page, "last_page": last_page, "last_row": len(order),
            "total": total, "data": [dict(zip(_FIELDS, rows[i], strict=True)) for i in chosen],
        }  # fmt: skip

    def feed_answers(
        self, store: Store, stored: StoredSnapshot
    ) -> Callable[[tuple[str, StreamQuery] | None], str | None]:
        """For the snapshot ``stored`` (just stored in ``store``, and sent): the ``streams``
        message (module doc) of a page's feed query ``(text, query)``, ``None`` for no
        query (or nothing stored at that moment). Pages asking the same text share one
        message text, built once."""
        built: dict[str, str | None] = {}

        def message(asked: tuple[str, StreamQuery] | None) -> str | None:
            if asked is None:
                return None
            text, query = asked
            if text not in built:
                answer = self.answer(store, replace(query, ts=stored.ts))
                built[text] = None if answer is None else (
                    f'{{"t":"streams","q":{dumps(text)},"answer":{dumps(answer)}}}'
                )  # fmt: skip
            return built[text]

        return message

    def _order(self, entry: _Entry, query: StreamQuery) -> list[int]:
        key = (query.sort, query.desc, query.find.casefold(), query.status, query.conn)
        return self._order_of(entry, key)

    def _order_of(self, entry: _Entry, key: tuple[Any, ...]) -> list[int]:
        """The rows' indexes in the order ``key`` (sort, desc, folded find, status, conn) says."""
        order = entry.orders.get(key)
        if order is not None:
            entry.orders.move_to_end(key)
            return order
        sort, desc, find, status, conn = key
        rows = entry.rows
        if conn is None:
            chosen: range | list[int] = range(len(rows))
        else:
            chosen = _rows_of(entry, conn)
        if find or status:
            chosen = [
                i for i in chosen
                if (not find or find in entry.column("proto")[i])
                and (not status or rows[i][_AT["status"]] == status)
            ]  # fmt: skip
        order = sorted(chosen, key=entry.column(sort).__getitem__, reverse=desc)
        entry.orders[key] = order
        while len(entry.orders) > KEEP_ORDERS:
            entry.orders.popitem(last=False)
        return order


def _rows_of(entry: _Entry, conn: str) -> list[int]:
    """The indexes of the rows of connection id ``conn`` (of each connection of that id)."""
    return [i for span in entry.spans.get(conn, ()) for i in span]


def _span_len(entry: _Entry, conn: str) -> int:
    return sum(len(span) for span in entry.spans.get(conn, ()))
