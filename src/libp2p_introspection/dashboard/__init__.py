"""The live dashboard: a protocol client (PROTOCOL.md §5) with a web page.

``libp2p-introspect dashboard [URL]`` follows the introspection server at URL
(``ws://127.0.0.1:8845/introspect`` by default) and serves a page at
``http://127.0.0.1:8846/``; ``--file X.mock`` shows a recording instead.

Modules, each about one thing:

- :mod:`.convert`: protobuf to the compact JSON the page reads (once per snapshot:
  the connections that vanished carried on, the text held to a budget), from
  the parts :mod:`.convert_swarm` (connections, streams, DHT), :mod:`.convert_ext`
  (the §3.1 extensions) and :mod:`.convert_events` (runtime, events) convert,
  with the caps of :mod:`.caps`;
- :mod:`.store`: the time-indexed store of snapshots and events, bounded by the
  retention window (pure);
- :mod:`.feed`: the protocol client loop (pull, events, pause/resume,
  reconnect with backoff, switch URL);
- :mod:`.recording`: a recording file loaded into a store;
- :mod:`.model`: what the dashboard shows and the messages to browsers;
- :mod:`.browsers`: bounded per-browser mailboxes (resync for slow pages);
- :mod:`.app`: HTTP routes and the browser feed (Starlette), behind the
  :mod:`.guards` (Host/Origin checks, security headers, CSP) and reading
  bodies through :mod:`.bodies` (bounded in size and time);
- :mod:`.serving`: hypercorn's HTTP/WebSocket code on trio listeners, with
  every write to a browser bounded in time;
- :mod:`.server`: :class:`Dashboard`, the feed and the page together;
- ``static/``: the page (plain JS modules) and its vendored libraries
  (``static/vendor/VENDOR.md``).

Use from Python::

    async with trio.open_nursery() as nursery:
        dashboard = await nursery.start(Dashboard(DashboardConfig(url=server.url, port=0)).run)
        print(dashboard.url)
"""

from libp2p_introspection.config import DEFAULT_DASHBOARD_PORT
from libp2p_introspection.dashboard.server import Dashboard, DashboardConfig

__all__ = ["DEFAULT_DASHBOARD_PORT", "Dashboard", "DashboardConfig"]
