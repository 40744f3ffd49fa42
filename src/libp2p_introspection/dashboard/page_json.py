"""What a page is sent of each new snapshot: the stored snapshot, its streams packed.

The stored JSON of a snapshot (:mod:`.convert`'s ``SNAPSHOT``) spells every
stream as an object, its keys repeated 50,000 times in a snapshot of 5,000
connections of 10 streams: 16 MB of text, which a page takes about 90 ms to
parse (and longer to receive, and to collect), every snapshot, whatever view it
shows. So the ``snapshot`` message a page is sent
(:meth:`.model.DashboardModel.feed_state`) carries ``PAGE_SNAPSHOT`` instead,
under half the text: each connection's stream count and protocols, and all the
streams packed into one string, which the page parses only when it shows
streams (the Streams view, a connection's streams: ``static/js/app.js``'s
``connStreams``). Parsing a string is a scan; parsing 50,000 objects costs
tens of milliseconds, and as much again to collect them::

    PAGE_SNAPSHOT = SNAPSHOT, except:
      "lists": [[str, ...], ...]  (the distinct lists of protocols, in order
                           of first use: of a connection's streams, of a
                           PEERINFO)
      "strs": [str, ...]  (the distinct protocol ids, roles and statuses of
                           the streams, in order of first use)
      "streams": the JSON text of [[STREAM_FIELDS of the first connection's
          first stream, of its second, ...] (a flat array of numbers), [the
          second connection's], ...], its string fields indexes into "strs"
      every CONNECTION: no "streams", but "ns": how many streams it has, and
          "sp": the distinct protocols of its streams (an index into
          "lists"); its PEERINFO's "protocols" an index into "lists"

    STREAM_FIELDS = proto, role, status, age (the snapshot's ts minus open,
                    ms; null when open is 0), close, in, out, bwIn, bwOut

A stream's id, latency and packet counts, which no view shows, are left out
(``GET /api/snapshot`` has them). ``hello`` carries the stored text as it is.
"""

from __future__ import annotations

from typing import Any

from libp2p_introspection.dashboard.convert import JSON, dumps

#: The fields of one packed stream, in order (module doc).
STREAM_FIELDS = ("proto", "role", "status", "age", "close", "in", "out", "bwIn", "bwOut")


def pack(snapshot: JSON) -> JSON:
    """``PAGE_SNAPSHOT`` (module doc) of a converted snapshot (which is not changed)."""
    ts = snapshot["ts"]
    strings: dict[str, int] = {}
    index = strings.setdefault
    lists: dict[tuple[str, ...], int] = {}
    conns: list[JSON] = []
    streams: list[list[Any]] = []
    for conn in snapshot["conns"]:
        packed: list[Any] = []
        add = packed.extend
        protocols: dict[str, None] = {}
        for s in conn["streams"]:
            protocols[s["proto"]] = None
            add((
                index(s["proto"], len(strings)), index(s["role"], len(strings)),
                index(s["status"], len(strings)), ts - s["open"] if s["open"] else None,
                s["close"], s["in"], s["out"], s["bwIn"], s["bwOut"],
            ))  # fmt: skip
        streams.append(packed)
        out = {k: v for k, v in conn.items() if k != "streams"}
        out["ns"] = len(conn["streams"])
        out["sp"] = lists.setdefault(tuple(protocols), len(lists))
        info = conn.get("peerInfo")
        if info is not None:
            protocols_of_peer = tuple(info["protocols"])
            out["peerInfo"] = {**info, "protocols": lists.setdefault(protocols_of_peer, len(lists))}
        conns.append(out)
    return {**snapshot, "conns": conns, "lists": list(lists), "strs": list(strings),
            "streams": dumps(streams)}  # fmt: skip


def page_text(snapshot: JSON) -> str:
    """The JSON text of :func:`pack` of ``snapshot``."""
    return dumps(pack(snapshot))
