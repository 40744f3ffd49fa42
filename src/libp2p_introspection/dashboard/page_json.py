"""What a page is sent of each new snapshot: the stored snapshot, without its streams.

The stored JSON of a snapshot (:mod:`.convert`'s ``SNAPSHOT``) spells every
stream as an object: 50,000 of them in a snapshot of 5,000 connections of 10
streams, 16 MB of text, which a page would take about 90 ms to parse every
snapshot, whatever view it shows. No view needs them all: the Streams tables
ask for the page of streams they show (``GET /api/streams``,
:mod:`.streams_api`). So the ``snapshot`` message a page is sent
(:meth:`.model.DashboardModel.feed_state`) carries ``PAGE_SNAPSHOT``: each
connection with its stream count and protocols instead of its streams::

    PAGE_SNAPSHOT = SNAPSHOT, except:
      "lists": [[str, ...], ...]  (the distinct lists of protocols, in order
                           of first use: of a connection's streams, of a
                           PEERINFO)
      every CONNECTION: no "streams", but "ns": how many streams it has, and
          "sp": the distinct protocols of its streams (an index into
          "lists"); its PEERINFO's "protocols" an index into "lists"

A connection's packet counts (``inPkts``, ``outPkts``), which no view shows,
are left out too (``GET /api/snapshot`` has them). A ``hello`` carries its
latest snapshot as ``PAGE_SNAPSHOT`` too (:meth:`PageFeed.whole_text`).

Deltas. Every connection's counters move at every snapshot, but little else
does: after the first, a page is sent what changed since the snapshot it was
sent before (:class:`PageFeed`; 5,000 connections of 10 streams: about
half the text of ``PAGE_SNAPSHOT``, the connections' part a tenth of it)::

    PAGE_DELTA = {"ts": ms, every other part of PAGE_SNAPSHOT but "conns"
                  ("start", "traffic", "dht", "pubsub", ...) only when its
                  JSON differs from the base's (absent: the base's, as it is),
      "conns": [ENTRY, ...]  (the new snapshot's connections, in order)
      "lists": as PAGE_SNAPSHOT, for ENTRY's "sp" and "peerInfo"}
    ENTRY = i  (int: the base's connection i, unchanged)
          | [i, {field: value, ...}]  (the base's connection i, these
                fields replaced: a CONNECTION's fields, as in PAGE_SNAPSHOT)
          | CONNECTION  (an object: a connection the base has not, whole)

The base is the snapshot sent before it: the ``snapshot`` and ``delta``
messages (:mod:`.model`) are numbered (``"seq"``) and a delta names its base
(``"base"``); a page that has not that base (it missed a message) asks for a
fresh ``hello`` (:mod:`.app`'s ``/feed``) and never applies a delta to
another. A connection's fields are compared by Python equality of the
converted values (their types are fixed per field by :mod:`.convert`);
stored snapshots are never changed in place (the store keeps them), so a
base is what was sent.
"""

from __future__ import annotations

from typing import Any

from libp2p_introspection.dashboard.convert import JSON, dumps

#: A connection's fields a page is not sent (module doc).
UNSHOWN = frozenset(("streams", "inPkts", "outPkts"))


#: What :func:`_resolve` made of a snapshot's connections' dicts: the list of those
#: dicts (held, so that their ``id()`` stays theirs) and each one's page's form by
#: ``id()`` of the dict.
Resolved = tuple[list[JSON], dict[int, JSON]]


def _resolve(snapshot: JSON, previous: Resolved | None = None) -> tuple[list[JSON], Resolved]:
    """The page's form of every connection of ``snapshot`` (its "sp" and its peer's
    "protocols" as tuples of protocols, not yet indexes into "lists"), and what to
    pass as ``previous`` with the next snapshot.

    A connection's dict that is the very object a ``previous`` one was made from
    gets the same page's form, not made again: the converter shares a connection's
    dict between snapshots while it does not change (:mod:`.convert`), and no
    stored dict is ever changed in place, so the same object is the same content.
    """
    conns: list[JSON] = []
    made: dict[int, JSON] = {}
    # While ``previous``'s list holds its dicts alive, no other object has their ids:
    # a dict here with one of them is that very dict.
    before = previous[1] if previous is not None else {}
    sources = snapshot["conns"]
    for conn in sources:
        out = before.get(id(conn))
        if out is None:
            streams = conn["streams"]
            out = {k: v for k, v in conn.items() if k not in UNSHOWN}
            out["ns"] = len(streams)
            out["sp"] = tuple(dict.fromkeys(s["proto"] for s in streams))
            info = conn.get("peerInfo")
            if info is not None:
                out["peerInfo"] = {**info, "protocols": tuple(info["protocols"])}
        made[id(conn)] = out
        conns.append(out)
    return conns, (sources, made)


def _listed(fields: JSON, lists: dict[tuple[str, ...], int]) -> JSON:
    """``fields`` (of a resolved connection) with its lists of protocols as indexes."""
    out = dict(fields)
    if "sp" in out:
        out["sp"] = lists.setdefault(out["sp"], len(lists))
    info = out.get("peerInfo")
    if info is not None:
        out["peerInfo"] = {**info, "protocols": lists.setdefault(info["protocols"], len(lists))}
    return out


def _full(snapshot: JSON, conns: list[JSON]) -> JSON:
    lists: dict[tuple[str, ...], int] = {}
    page_conns = [_listed(c, lists) for c in conns]
    return {**{k: v for k, v in snapshot.items() if k != "conns"}, "conns": page_conns,
            "lists": [list(x) for x in lists]}  # fmt: skip


def pack(snapshot: JSON) -> JSON:
    """``PAGE_SNAPSHOT`` (module doc) of a converted snapshot (which is not changed)."""
    return _full(snapshot, _resolve(snapshot)[0])


class PageFeed:
    """The page's form of successive snapshots: the first whole, then deltas (module doc).

    Holds the page's form of the last snapshot given (its connections, and the
    JSON text of each other part): one snapshot's worth, whatever the run's
    length. :meth:`reset` when what comes next is not a continuation (another
    source, a cleared store): the next is whole again.
    """

    def __init__(self) -> None:
        #: The number of the last snapshot given (0: none yet).
        self.seq = 0
        self._conns: list[JSON] | None = None
        self._parts: dict[str, str] = {}
        #: What the last snapshot's connections' dicts were made into (:func:`_resolve`).
        self._resolved: Resolved | None = None

    @property
    def has_base(self) -> bool:
        """Whether the next :meth:`next` may be a delta."""
        return self._conns is not None

    def reset(self) -> None:
        """Forget the base: the next snapshot is sent whole."""
        self._conns = None
        self._parts = {}
        self._resolved = None

    def whole_text(self) -> str | None:
        """``PAGE_SNAPSHOT`` of the last snapshot given, as JSON text (``None`` without
        one): what a ``hello`` carries of it, made from what is kept, nothing parsed."""
        if self._conns is None:
            return None
        lists: dict[tuple[str, ...], int] = {}
        conns = [_listed(c, lists) for c in self._conns]
        head = ",".join(f"{dumps(k)}:{text}" for k, text in self._parts.items())
        return "{" + head + f',"conns":{dumps(conns)},"lists":{dumps([list(x) for x in lists])}}}'

    def next(self, snapshot: JSON) -> tuple[str, JSON]:
        """``("snapshot", PAGE_SNAPSHOT)`` or ``("delta", PAGE_DELTA)`` of ``snapshot``
        (a converted snapshot, not changed), which becomes the base of the next;
        :attr:`seq` is then its number (a delta's base is ``seq - 1``)."""
        return self._next(snapshot, spliced=False)

    def _next(self, snapshot: JSON, *, spliced: bool) -> tuple[str, JSON]:
        conns, self._resolved = _resolve(snapshot, self._resolved)
        parts = {k: dumps(v) for k, v in snapshot.items() if k != "conns"}
        base, base_parts = self._conns, self._parts
        self._conns, self._parts = conns, parts
        self.seq += 1
        if base is None or base_parts.keys() != parts.keys():
            return "snapshot", _full(snapshot, conns)
        lists: dict[tuple[str, ...], int] = {}
        where: dict[str, int] = {}
        for i, conn in enumerate(base):
            where.setdefault(conn["id"], i)
        used: set[int] = set()
        entries: list[Any] = []
        for conn in conns:
            i = where.get(conn["id"])
            if i is None or i in used:  # new, or an id given twice: whole
                entries.append(_listed(conn, lists))
                continue
            used.add(i)
            old = base[i]
            if conn is old or conn == old:  # the same object: unchanged, nothing compared
                entries.append(i)
            elif conn.keys() != old.keys():
                entries.append(_listed(conn, lists))
            else:
                changed = {k: v for k, v in conn.items() if v != old[k]}
                entries.append([i, _listed(changed, lists)])
        delta: JSON = {"ts": snapshot["ts"]}
        for key, text in parts.items():
            if key != "ts" and base_parts[key] != text:
                delta[key] = _Text(text) if spliced else snapshot[key]
        delta.update(conns=entries, lists=[list(x) for x in lists])
        return "delta", delta

    def next_text(self, snapshot: JSON) -> tuple[str, str]:
        """:meth:`next`, its ``PAGE_SNAPSHOT`` or ``PAGE_DELTA`` as JSON text (the
        parts' texts made for the comparison spliced in, not made again)."""
        kind, page = self._next(snapshot, spliced=True)
        return kind, "{" + ",".join(
            f"{dumps(k)}:{v.text if isinstance(v, _Text) else dumps(v)}" for k, v in page.items()
        ) + "}"


class _Text:
    """A part's JSON text, already made (:meth:`PageFeed.next_text` splices it in)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
