"""Every py-libp2p internal the introspector relies on, in one table.

py-libp2p's interfaces (``libp2p.abc``: ``INetConn``, ``INetStream``,
``IMuxedConn``, ``IMuxedStream``, ``ISecureConn``, ``INetwork``, ...) do not
say everything the introspector needs: the KadDHT's RPC methods, yamux's and
mplex's stream flags, a stream's direction, when a connection was created.
Each such attribute, method or constant, and each method the introspector
replaces on an instance (see :mod:`~libp2p_introspection.introspector.patching`),
is one :class:`Touchpoint` in :data:`TOUCHPOINTS`: the py-libp2p class that
has it, its name, what the introspector uses it for, and what happens without
it. The other introspector modules reach them only through this table
(``TOUCHPOINT.get(obj)``, ``TOUCHPOINT.hook(...)``); a test checks every
entry against the installed py-libp2p (:meth:`Touchpoint.present`) and that no
other module names a py-libp2p internal.

When a touchpoint is missing on an instance of its class (another py-libp2p
version), a warning is logged once and the introspector degrades as the
entry's ``without`` says; an object of another class (a QUIC connection, a
stand-in) simply has nothing to read, and nothing is logged.

Checked against py-libp2p 0.8.1.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import logging
import textwrap
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FunctionType, ModuleType
from typing import Any

from libp2p.discovery.random_walk.rt_refresh_manager import RTRefreshManager
from libp2p.host.autonat import AutoNATService, AutoNATStatus
from libp2p.host.basic_host import BasicHost
from libp2p.identity.identify import identify as identify_module
from libp2p.identity.identify_push import identify_push as identify_push_module
from libp2p.io.exceptions import ConnectionClosedError, IncompleteReadError, IOException
from libp2p.io.trio import TrioTCPStream
from libp2p.kad_dht import common as kad_common
from libp2p.kad_dht.kad_dht import KadDHT, KadDhtEvent
from libp2p.kad_dht.peer_routing import PeerRouting
from libp2p.kad_dht.provider_store import ProviderStore
from libp2p.kad_dht.routing_table import KBucket, RoutingTable
from libp2p.kad_dht.value_store import ValueStore
from libp2p.network.connection.exceptions import RawConnError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.network.connection.swarm_connection import SwarmConn
from libp2p.network.stream.net_stream import NetStream
from libp2p.network.swarm import Swarm
from libp2p.pubsub.gossipsub import GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.score import PeerScorer
from libp2p.rcmgr.connection_limits import ConnectionLimits
from libp2p.rcmgr.connection_tracker import ConnectionTracker
from libp2p.rcmgr.manager import ResourceManager
from libp2p.rcmgr.metrics import Metrics
from libp2p.security.noise.io import NoiseTransportReadWriter
from libp2p.security.secure_session import SecureSession
from libp2p.stream_muxer.mplex.mplex import Mplex
from libp2p.stream_muxer.mplex.mplex_stream import MplexStream
from libp2p.stream_muxer.yamux.yamux import Yamux, YamuxStream
from libp2p.transport.tcp.tcp import TCPListener
from libp2p.transport.upgrader import TransportUpgrader

from libp2p_introspection.introspector.patching import InstancePatcher, instance_attribute

logger = logging.getLogger(__name__)

#: Kinds of touchpoint.
READ = "read"  #: an attribute read on instances
CALL = "call"  #: a method called
HOOK = "hook"  #: a method replaced for one object, on it or via its class (undone on detach)
SWAP = "swap"  #: an attribute replaced for the duration of one call, then put back
WALK = "walk"  #: an attribute :func:`find_in_graph` follows (read with getattr)
CONSTANT = "constant"  #: a module-level constant

_MISSING = object()


@dataclass(frozen=True)
class Touchpoint:
    """One py-libp2p attribute, method or constant outside its interfaces.

    :param owners: the py-libp2p classes (or the module) that have it.
    :param name: the attribute's name.
    :param kind: :data:`READ`, :data:`CALL`, :data:`HOOK`, :data:`SWAP`,
        :data:`WALK` or :data:`CONSTANT`.
    :param use: what the introspector uses it for.
    :param without: what the introspector does when it is missing.
    :param body: for a :data:`HOOK` whose method body the introspector runs itself
        (to count inside the method's own frame instead of wrapping it in one more
        coroutine frame): the :func:`body_digest` of the method it was checked
        against; ``""`` for every other entry. Where a class's method has another
        body (another py-libp2p version, a subclass), the introspector wraps it
        instead (:meth:`runs_checked_body`).
    """

    owners: tuple[type | ModuleType, ...]
    name: str
    kind: str
    use: str
    without: str
    body: str = ""

    @property
    def owner(self) -> str:
        """The owners' names, e.g. ``"Yamux/Mplex"``."""
        return "/".join(owner.__name__.rsplit(".", 1)[-1] for owner in self.owners)

    def get(self, obj: object, default: Any = None) -> Any:
        """``obj.<name>``, or ``default`` when it is missing or reading it failed.

        A miss on an instance of one of :attr:`owners` is logged once as a
        warning (:meth:`missing`); never raises.
        """
        try:
            return getattr(obj, self.name)
        except AttributeError:
            if self._owned(obj):
                self.missing()
        except Exception:
            logger.debug("introspector: reading %s.%s failed", self.owner, self.name, exc_info=True)
        return default

    def has(self, obj: object) -> bool:
        """Whether ``obj`` has the attribute (a miss is logged as :meth:`get` does)."""
        return self.get(obj, _MISSING) is not _MISSING

    def set(self, obj: object, value: Any) -> None:
        """``obj.<name> = value`` (a :data:`SWAP`)."""
        setattr(obj, self.name, value)

    def hook(
        self,
        patcher: InstancePatcher,
        obj: object,
        wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
        *,
        once: bool = True,
        through_class: bool = False,
    ) -> bool:
        """Replace ``obj.<name>`` with ``wrap(original)`` through ``patcher``.

        ``original`` is what ``obj.<name>`` is now (another hook's wrapper,
        when ``once`` is false and the method was replaced before). Returns
        False (and changes nothing) when ``obj`` has no such method, or
        ``once`` is true and ``patcher`` already replaced it.

        ``through_class``: for a method called rarely (once per connection or
        stream), leave ``obj``'s attributes alone and dispatch from its class
        (:meth:`InstancePatcher.hook_through_class`), so that the hot methods of
        every object of that class keep CPython's specialised attribute lookups.
        """
        if obj is None or (once and patcher.is_patched(obj, self.name)):
            return False
        original = self.get(obj)
        if not callable(original):
            return False
        if through_class:
            patcher.hook_through_class(obj, self.name, wrap)
        else:
            patcher.patch(obj, self.name, wrap(original))
        return True

    def runs_checked_body(self, obj: object) -> bool:
        """Whether ``obj.<name>`` is the very body :attr:`body` was checked against:
        the method of ``obj``'s class (not replaced on the instance) is a plain
        function, not a wrapper of one, with that digest. False for an entry without a
        body, an object without ``__dict__``, a class whose method differs (a subclass,
        another py-libp2p version), a method wrapped by the application (a
        ``functools.wraps`` decorator, a wrapt proxy: ``inspect.getsource`` reads the
        wrapped function's source, and running our body would skip the wrapper);
        never raises.
        """
        if not self.body or obj is None:
            return False
        try:
            if instance_attribute(obj, self.name, _MISSING) is not _MISSING:
                return False  # replaced on this instance: wrap what is there
            function = getattr(type(obj), self.name, None)
            if type(function) is not FunctionType or "__wrapped__" in vars(function):
                return False  # a wrapper (or not a function): wrap it, so that it runs
            return body_digest(function) == self.body
        except Exception:
            return False

    def missing(self) -> None:
        """Log, once per touchpoint, that py-libp2p no longer has this attribute."""
        if self not in _warned:
            _warned.add(self)
            logger.warning(
                "introspector: py-libp2p %s.%s not found (%s); %s",
                self.owner,
                self.name,
                self.use,
                self.without,
            )

    def present(self) -> list[str]:
        """The owners of the installed py-libp2p that lack it (``[]``: all have it).

        A class has it when the class (or a base) defines it, or one of its
        methods assigns ``self.<name>``; a :data:`CALL`/:data:`HOOK` must be
        a method; a :data:`CONSTANT` must be in the module.
        """
        lacking = []
        for owner in self.owners:
            if isinstance(owner, ModuleType):
                found = hasattr(owner, self.name)
            elif self.kind in (CALL, HOOK):
                found = callable(getattr(owner, self.name, None))
            else:
                found = hasattr(owner, self.name) or self.name in instance_attributes(owner)
            if found and self.body:
                found = body_digest(getattr(owner, self.name)) == self.body
            if not found:
                lacking.append(owner.__name__)
        return lacking

    def _owned(self, obj: object) -> bool:
        return any(isinstance(obj, owner) for owner in self.owners if isinstance(owner, type))


_warned: set[Touchpoint] = set()

#: function -> its :func:`body_digest` (None: no source), computed once per function.
_digests: dict[Any, str | None] = {}


def body_digest(function: Any) -> str | None:
    """A short digest (16 hex digits of SHA-256) of a function's source, independent
    of its formatting, comments and docstring (``ast.unparse`` of its definition);
    None when the source cannot be read (a builtin, a function made by ``exec``).
    Cached per function object."""
    try:
        return _digests[function]
    except KeyError:
        pass
    except TypeError:  # not hashable
        return None
    digest: str | None = None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        definition = tree.body[0]
        if isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef):
            body = definition.body
            if (
                len(body) > 1
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                definition.body = body[1:]
            text = ast.unparse(definition).encode()
            digest = hashlib.sha256(text).hexdigest()[:16]
    except Exception:  # no source, or not a function's: never the checked body
        digest = None
    _digests[function] = digest
    return digest


def instance_attributes(cls: type) -> set[str]:
    """Names a class and its bases assign as ``self.<name>`` in their methods (from source)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        names.update(getattr(klass, "__annotations__", {}))
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return names


def _tp(
    owners: Any, name: str, kind: str, use: str, without: str, body: str = ""
) -> Touchpoint:
    owners = owners if isinstance(owners, tuple) else (owners,)
    return Touchpoint(owners, name, kind, use, without, body)


_MUXERS = (Yamux, Mplex)
_MUXED_STREAMS = (YamuxStream, MplexStream)

# ------------------------------------------------------------------ swarm

SWARM_UPGRADER = _tp(Swarm, "upgrader", READ, "the TransportUpgrader to hook",
                     "connections time from their SwarmConn; handshake bytes not counted")
SWARM_NOTIFEES = _tp(Swarm, "notifees", READ, "removing our notifee without remove_notifee",
                     "the notifee stays registered after detach (it ignores calls)")
# The node's listen addresses (node.NodeTracker): BasicHost.get_transport_addrs is the
# swarm's listeners' get_addrs(), and a TCPListener's are its sockets' bound addresses;
# where both are these bodies, the addresses are read again only when the listeners or
# their sockets change (not at every snapshot).
HOST_TRANSPORT_ADDRS = _tp(BasicHost, "get_transport_addrs", CALL,
                           "listen_addrs; where it is this body, cached while the listeners stay",
                           "listen_addrs is empty", body="6b5bc69b1ef43127")
SWARM_LISTENERS = _tp(Swarm, "listeners", READ, "the listeners listen_addrs come from",
                      "listen_addrs read again at every snapshot")
TCP_LISTENER_ADDRS = _tp(TCPListener, "get_addrs", CALL,
                         "a TCP listener's addresses: where it is this body, its sockets'",
                         "listen_addrs read again at every snapshot", body="1e62bd2815c03d98")
TCP_LISTENER_SOCKETS = _tp(TCPListener, "listeners", READ,
                           "a TCP listener's sockets (its addresses change only with them)",
                           "listen_addrs read again at every snapshot")
UPGRADE_SECURITY = _tp(TransportUpgrader, "upgrade_security", HOOK,
                       "open_ts and raw byte counting from the first handshake byte",
                       "connections time from their SwarmConn; handshake bytes not counted")
UPGRADE_CONNECTION = _tp(TransportUpgrader, "upgrade_connection", HOOK,
                         "upgraded_ts (muxer negotiated)", "upgraded_ts = open_ts")

# ------------------------------------------------------------- connections

CONN_DIRECTION = _tp(SwarmConn, "direction", READ, "connection role (who dialed)",
                     "role read from the muxer's is_initiator")
CONN_CREATED_AT = _tp(SwarmConn, "_created_at", READ,
                      "open_ts of a connection adopted at attach (seconds since epoch)",
                      "open_ts is the attach time")
CONN_STREAMS = _tp(SwarmConn, "streams", READ, "its streams, when get_streams() fails",
                   "streams found through get_streams() only")
CONN_TRANSPORT_FAMILY = _tp(SwarmConn, "get_transport_family", CALL, "transport_id",
                            "transport read from the remote multiaddr")
CONN_SECURITY = _tp(SwarmConn, "get_negotiated_security_protocol", CALL,
                    "attribs.encryption", "encryption reported as ''")
CONN_MUXER = _tp(SwarmConn, "get_negotiated_muxer_protocol", CALL,
                 "attribs.multiplexer", "multiplexer reported as ''")
CONN_CLOSE = _tp(SwarmConn, "close", HOOK, "closed locally / closed by remote",
                 "a closed connection's reason is 'closed'")
MUXER_SECURED_CONN = _tp(_MUXERS, "secured_conn", READ,
                         "the security session: failure hooks, the raw connection under it",
                         "no traffic counted, transport/security failures read as a clean end")
YAMUX_RTT = _tp(Yamux, "rtt", CALL, "latency_ns (yamux ping RTT, seconds)",
                "latency from the peerstore's EWMA, else 0")
SECURED_READ = _tp(SecureSession, "read", HOOK, "transport/security failures (TCP reset, MAC)",
                   "a failed connection reads as CLOSED")
# SecureSession.write is one ``await self.conn.write_msg(data)``: where a session's
# class still has that body, the failure hook runs it itself (endings.hook_failures).
SECURED_WRITE = _tp(SecureSession, "write", HOOK, "transport/security failures (broken pipe)",
                    "a failed connection reads as CLOSED", body="5313f151195cfd8e")
# RawConnection's read and write (py-libp2p 0.8.1, network/connection/raw_connection.py)
# are one call to its stream's read/write and a mapping of IOException and
# ConnectionResetError to RawConnError; where a connection's class still has those
# bodies, the introspector runs them itself and counts in the same frame (one
# coroutine frame per read and write of every connection, not two). RAW_ERRORS are
# the exceptions they name.
RAW_READ = _tp(RawConnection, "read", HOOK, "connection bytes in", "connection traffic is 0",
               body="bef198e59a121687")
RAW_WRITE = _tp(RawConnection, "write", HOOK, "connection bytes out", "connection traffic is 0",
                body="e3f40e27c516e188")
#: RawConnection.read/write's exceptions: passed through, mapped, raised instead.
RAW_ERRORS = (ConnectionClosedError, (IOException, ConnectionResetError), RawConnError)

# The walk from a security session to its transport connection and
# socket: the route py-libp2p 0.8.1 takes with Noise over TCP.
SESSION_CONN = _tp(SecureSession, "conn", WALK, "walk: security session -> Noise reader",
                   "no raw connection: traffic counted at the security layer, no localAddr")
NOISE_CONN = _tp(NoiseTransportReadWriter, "conn", WALK, "walk: Noise reader -> RawConnection",
                 "no raw connection: traffic counted at the security layer, no localAddr")
RAW_STREAM = _tp(RawConnection, "stream", WALK, "walk: RawConnection -> TrioTCPStream",
                 "no socket: localAddr is ''")
TCP_STREAM = _tp(TrioTCPStream, "stream", WALK, "walk: TrioTCPStream -> trio.SocketStream",
                 "no socket: localAddr is ''")

# ----------------------------------------------------------------- streams

STREAM_SWARM_CONN = _tp(NetStream, "swarm_conn", READ, "the stream's connection",
                        "a stream seen before its connection is ignored")
STREAM_MUXED = _tp(NetStream, "muxed_stream", READ, "the muxed stream (endings, role)",
                   "endings read from the notifee only; role from _direction")
STREAM_PROTOCOL = _tp(NetStream, "protocol_id", READ,
                      "the negotiated protocol; payload counted once it is set",
                      "protocol '' and no stream traffic")
STREAM_DIRECTION = _tp(NetStream, "_direction", READ, "stream role without a muxed stream",
                       "such a stream is INITIATOR")
NETSTREAM_STATE = _tp(NetStream, "_state", READ,
                      "StreamState; ERROR after an unexpected I/O error on the stream",
                      "such a stream ends CLOSED, not 'stream error'")
STREAM_SET_PROTOCOL = _tp(NetStream, "set_protocol", HOOK, "StreamOpened when negotiated",
                          "StreamOpened only for streams negotiated before they were seen")
STREAM_READ = _tp(NetStream, "read", HOOK, "stream payload in; the DHT's request reader",
                  "stream traffic is 0; inbound DHT requests unnamed")
STREAM_WRITE = _tp(NetStream, "write", HOOK, "stream payload out", "stream traffic is 0")
STREAM_METRIC_CHANNEL = _tp(NetStream, "metric_send_channel", SWAP,
                            "KadDHT reports each handled request on it (inbound SUCCESS)",
                            "inbound DHT requests count as ERROR")
MUXED_IS_INITIATOR = _tp(_MUXED_STREAMS, "is_initiator", READ, "stream role (who opened it)",
                         "role from NetStream._direction")
MUXED_RESET = _tp(_MUXED_STREAMS, "reset", HOOK, "tells a local reset from a remote one",
                  "a local reset reads as 'reset by remote'")

# --------------------------------------------------------- muxer endings

YAMUX_STREAM_RESET = _tp(YamuxStream, "reset_received", READ,
                         "True once an RST arrived or the stream was reset locally",
                         "resets read as orderly ends")
YAMUX_STREAM_CLOSED = _tp(YamuxStream, "closed", READ, "True once both directions closed, or reset",
                          "endings seen only when py-libp2p notifies them")
YAMUX_SHUTTING_DOWN = _tp(Yamux, "event_shutting_down", READ,
                          "set when the connection starts closing, for any reason",
                          "a connection closed by the remote reads as 'closed locally'")
YAMUX_FINALIZE = _tp(Yamux, "_finalize_stream_locked", HOOK,
                     "called whenever a stream's close, FIN or RST is processed",
                     "endings are found at the next snapshot")
MPLEX_STREAM_RESET = _tp(MplexStream, "event_reset", READ, "set on a local or remote reset",
                         "resets read as orderly ends")
MPLEX_STREAM_LOCAL_CLOSED = _tp(MplexStream, "event_local_closed", READ,
                                "set once we closed (or reset) our side",
                                "endings seen only when py-libp2p notifies them")
MPLEX_STREAM_REMOTE_CLOSED = _tp(MplexStream, "event_remote_closed", READ,
                                 "set once the remote closed (or reset) its side",
                                 "endings seen only when py-libp2p notifies them")
MPLEX_STREAMS = _tp(Mplex, "streams", READ, "StreamID -> MplexStream, for the frame hooks",
                    "endings are found at the next snapshot")
MPLEX_SHUTTING_DOWN = _tp(Mplex, "event_shutting_down", READ,
                          "set when the connection starts closing, for any reason",
                          "a connection closed by the remote reads as 'closed locally'")
MPLEX_HANDLE_CLOSE = _tp(Mplex, "_handle_close", HOOK, "processes a remote close frame",
                         "endings are found at the next snapshot")
MPLEX_HANDLE_RESET = _tp(Mplex, "_handle_reset", HOOK, "processes a remote reset frame",
                         "endings are found at the next snapshot")
MPLEX_READ_MESSAGE = _tp(Mplex, "read_message", HOOK,
                         "reads one frame; its failures are mplex framing errors",
                         "an mplex framing error reads as CLOSED")
INCOMPLETE_READ_RECEIVED = _tp(IncompleteReadError, "received_bytes", READ,
                               "EOF at a frame boundary (0) is a clean end",
                               "every EOF is a failure")

# -------------------------------------------------------------------- DHT

DHT_LOCAL_PEER = _tp(KadDHT, "local_peer_id", READ, "our Kademlia key; calls to ourselves",
                     "cpl 0 for every peer; calls to ourselves counted")
DHT_ROUTING_TABLE = _tp(KadDHT, "routing_table", READ, "the routing table (buckets, add_peer)",
                        "no DHT buckets in snapshots")
DHT_PEER_ROUTING = _tp(KadDHT, "peer_routing", READ, "owner of FIND_NODE and a refresh",
                       "FIND_NODE not counted")
DHT_VALUE_STORE = _tp(KadDHT, "value_store", READ, "owner of GET_VALUE/PUT_VALUE",
                      "GET_VALUE/PUT_VALUE not counted")
DHT_PROVIDER_STORE = _tp(KadDHT, "provider_store", READ, "owner of GET/ADD_PROVIDER(S)",
                         "GET_PROVIDERS/ADD_PROVIDER not counted")
DHT_RT_REFRESH = _tp(KadDHT, "rt_refresh_manager", READ, "owner of the random-walk refresh",
                     "random-walk RPCs are API, not DISCOVERY")
DHT_REFRESH = _tp(KadDHT, "refresh_routing_table", HOOK, "RPCs it sends are DISCOVERY",
                  "they are API")
DHT_HANDLE_STREAM = _tp(KadDHT, "_do_handle_stream", HOOK,
                        "one call per inbound Kademlia stream", "inbound queries not counted")
DHT_MANAGER = _tp(KadDHT, "get_manager", CALL, "DHT.enabled (the service is running)",
                  "enabled is False")
PEER_ROUTING_QUERY = _tp(PeerRouting, "_query_peer_for_closest", HOOK, "one FIND_NODE RPC",
                         "FIND_NODE not counted")
PEER_ROUTING_REFRESH = _tp(PeerRouting, "refresh_routing_table", HOOK,
                           "RPCs it sends are DISCOVERY", "they are API")
VALUE_GET = _tp(ValueStore, "_get_from_peer", HOOK, "one GET_VALUE RPC", "GET_VALUE not counted")
VALUE_PUT = _tp(ValueStore, "_store_at_peer", HOOK, "one PUT_VALUE RPC", "PUT_VALUE not counted")
PROVIDERS_GET = _tp(ProviderStore, "_get_providers_from_peer_with_closers", HOOK,
                    "one GET_PROVIDERS RPC", "GET_PROVIDERS not counted")
PROVIDER_ADD = _tp(ProviderStore, "_send_add_provider", HOOK, "one ADD_PROVIDER RPC",
                   "ADD_PROVIDER not counted")
RT_REFRESH_DO = _tp(RTRefreshManager, "_do_refresh", HOOK,
                    "the random walk's refresh: RPCs it sends are DISCOVERY", "they are API")
TABLE_ADD_PEER = _tp(RoutingTable, "add_peer", HOOK, "when a peer entered the table",
                     "age_in_bucket counts from the snapshot that first saw the peer")
TABLE_BUCKETS = _tp(RoutingTable, "buckets", READ, "the KBuckets", "no DHT buckets in snapshots")
TABLE_PEER_IN = _tp(RoutingTable, "peer_in_table", CALL, "add_peer really added the peer",
                    "age_in_bucket counts from the snapshot that first saw the peer")
BUCKET_PEERS = _tp(KBucket, "peers", READ, "peer_id -> (PeerInfo, last_seen seconds)",
                   "no DHT buckets in snapshots")
BUCKET_SIZE = _tp(KBucket, "bucket_size", READ, "params.k", "k is common.BUCKET_SIZE")
EVENT_FLAGS = tuple(
    _tp(KadDhtEvent, flag, READ, "names an inbound request whose bytes were not seen",
        "such a request is PING")
    for flag in ("find_node", "get_value", "put_value", "get_providers", "add_provider")
)
KAD_QUERY_TIMEOUT = _tp(kad_common, "QUERY_TIMEOUT", CONSTANT, "TIMEOUT of an outbound query",
                        "10 s")
KAD_MAX_MESSAGE = _tp(kad_common, "MAX_DHT_MESSAGE_SIZE", CONSTANT,
                      "the request reader's size limit", "4 MiB")
KAD_PROTOCOL = _tp(kad_common, "PROTOCOL_ID", CONSTANT, "DHT.protocol", "/ipfs/kad/1.0.0")
KAD_BUCKET_SIZE = _tp(kad_common, "BUCKET_SIZE", CONSTANT, "params.k without buckets", "20")
KAD_ALPHA = _tp(kad_common, "ALPHA", CONSTANT, "params.alpha", "10")
KAD_BETA = _tp(kad_common, "BETA", CONSTANT, "params.beta", "0")
KAD_STALE = _tp(kad_common, "STALE_PEER_THRESHOLD", CONSTANT,
                "a peer unseen for longer is MISSING, seconds", "3600 s")

# --------------------------------------------------------------- identify

IDENTIFY_PROTOCOL = _tp(identify_module, "ID", CONSTANT,
                        "the identify protocol: the peer's answer on our streams is its PeerInfo",
                        "/ipfs/id/1.0.0")
IDENTIFY_PUSH_PROTOCOL = _tp(identify_push_module, "ID_PUSH", CONSTANT,
                             "identify/push: what a peer pushes us updates its PeerInfo",
                             "/ipfs/id/push/1.0.0")

# ---------------------------------------------------------------- AutoNAT

AUTONAT_GET_STATUS = _tp(AutoNATService, "get_status", CALL,
                         "NodeInfo.reachability (an AutoNATStatus value)",
                         "reachability UNKNOWN")
AUTONAT_UPDATE_STATUS = _tp(AutoNATService, "update_status", HOOK,
                            "ReachabilityChanged as soon as the verdicts change the status",
                            "ReachabilityChanged at the next snapshot")
AUTONAT_STATUSES = tuple(
    _tp(AutoNATStatus, name, CONSTANT, f"the AutoNAT status read as {name}",
        f"the value {value} read as {name}")
    for name, value in (("UNKNOWN", 0), ("PUBLIC", 1), ("PRIVATE", 2))
)

# -------------------------------------------------------- resource manager

SWARM_RESOURCE_MANAGER = _tp(Swarm, "_resource_manager", READ,
                             "the ResourceManager set_resource_manager() installed",
                             "no Subsystems.resources")
RM_STATS = _tp(ResourceManager, "get_stats", CALL,
               "system scope: connections, streams, memory bytes and their limits",
               "system scope usage and limits 0")
RM_METRICS = _tp(ResourceManager, "metrics", READ, "its Metrics (streams per direction)",
                 "streams_inbound/outbound 0")
METRICS_SUMMARY = _tp(Metrics, "get_summary", CALL, "streams per direction (current)",
                      "streams_inbound/outbound 0")
RM_TRACKER = _tp(ResourceManager, "connection_tracker", READ,
                 "established connections per direction", "conns_inbound/outbound 0")
TRACKER_COUNT = _tp(ConnectionTracker, "get_connection_count", CALL,
                    "established_inbound/outbound counts", "conns_inbound/outbound 0")
RM_CONNECTION_LIMITS = _tp(ResourceManager, "connection_limits", READ,
                           "per-direction established-connection limits",
                           "limit conns_inbound/outbound 0")
CONNECTION_LIMITS_SUMMARY = _tp(ConnectionLimits, "get_limits_summary", CALL,
                                "max_established_inbound/outbound",
                                "limit conns_inbound/outbound 0")
RM_PROTOCOL_LIMITS = _tp(ResourceManager, "_protocol_stream_limits", READ,
                         "protocol:<id> scopes' stream limits", "no protocol scopes")
RM_PROTOCOL_COUNTS = _tp(ResourceManager, "_protocol_stream_counts", READ,
                         "protocol:<id> scopes' stream counts", "no protocol scopes")
RM_SERVICE_LIMITS = _tp(ResourceManager, "_service_stream_limits", READ,
                        "service:<name> scopes' stream limits", "no service scopes")
RM_SERVICE_COUNTS = _tp(ResourceManager, "_service_stream_counts", READ,
                        "service:<name> scopes' stream counts", "no service scopes")
RM_RECORD_BLOCKED = _tp(ResourceManager, "_record_blocked_resource", HOOK,
                        "ResourceManager.blocked: every refused reservation passes here",
                        "blocked stays 0")

# ----------------------------------------------------------------- pubsub

PUBSUB_ROUTER = _tp(Pubsub, "router", READ, "the router (FloodSub/GossipSub): mesh, fanout, peers",
                    "no Subsystems.pubsub")
PUBSUB_PEER_TOPICS = _tp(Pubsub, "peer_topics", READ, "topic -> peers known to be subscribed",
                         "topics list no known subscribers; peers have no topics")
PUBSUB_IS_SUBSCRIBED_TO_MSG = _tp(Pubsub, "_is_subscribed_to_msg", HOOK,
                                  "called once per message received, duplicates included",
                                  "messages_in stays 0")
PUBSUB_WRITE_MSG = _tp(Pubsub, "write_msg", HOOK,
                       "writes one RPC to a peer; True when written: its messages are copies sent",
                       "messages_out stays 0")
PUBSUB_HANDLE_SUBSCRIPTION = _tp(Pubsub, "handle_subscription", HOOK,
                                 "one subscription change a peer announced",
                                 "no PubsubSubscriptionChanged for peers")
PUBSUB_SUBSCRIBE = _tp(Pubsub, "subscribe", HOOK, "we subscribed (event at once)",
                       "our subscription events come at the next snapshot")
PUBSUB_UNSUBSCRIBE = _tp(Pubsub, "unsubscribe", HOOK, "we unsubscribed (event at once)",
                         "our unsubscription events come at the next snapshot")
GOSSIPSUB_EMIT_CONTROL = _tp(GossipSub, "emit_control_message", HOOK,
                             "every GRAFT/PRUNE we send: our mesh changes (OUTBOUND)",
                             "no OUTBOUND PubsubGraft/PubsubPrune")
GOSSIPSUB_HANDLE_GRAFT = _tp(GossipSub, "handle_graft", HOOK, "a GRAFT a peer sent (INBOUND)",
                             "no INBOUND PubsubGraft")
GOSSIPSUB_HANDLE_PRUNE = _tp(GossipSub, "handle_prune", HOOK, "a PRUNE a peer sent (INBOUND)",
                             "no INBOUND PubsubPrune")
GOSSIPSUB_LEAVE = _tp(GossipSub, "leave", HOOK,
                      "we left a topic: its mesh is dropped after the PRUNEs went out",
                      "no PubsubPrune when we leave a topic")
GOSSIPSUB_REMOVE_PEER = _tp(GossipSub, "remove_peer", HOOK,
                            "a peer's pubsub stream died: out of every mesh, no PRUNE",
                            "such a peer, grafted again before the next snapshot, has no event")
GOSSIPSUB_SCORER = _tp(GossipSub, "scorer", READ, "the PeerScorer (PubSubPeer.score)", "score 0")
SCORER_SCORE = _tp(PeerScorer, "score", CALL, "a peer's score over a list of topics", "score 0")

#: The whole table, in the order above.
TOUCHPOINTS: tuple[Touchpoint, ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, Touchpoint)
) + EVENT_FLAGS + AUTONAT_STATUSES


def constant(touchpoint: Touchpoint, default: Any) -> Any:
    """A :data:`CONSTANT` touchpoint's value, or ``default`` (warned once) if gone."""
    value = getattr(touchpoint.owners[0], touchpoint.name, _MISSING)
    if value is _MISSING:
        touchpoint.missing()
        return default
    return value


# ------------------------------------------------------------- the walk

#: Attributes never followed by :func:`find_in_graph` (back references to the
#: whole node, or bulky unrelated state).
SKIP_ATTRS = frozenset(
    {
        "swarm",
        "host",
        "peerstore",
        "_resource_scope",
        "resource_manager",
        "streams",
        "new_stream_send_channel",
        "new_stream_receive_channel",
        "noise_state",
        "local_private_key",
        "remote_permanent_pubkey",
        "_nursery",
    }
)


#: The :data:`WALK` touchpoints, the route :func:`find_in_graph` takes where it applies.
_WALKS = (SESSION_CONN, NOISE_CONN, RAW_STREAM, TCP_STREAM)


def find_in_graph(
    root: object, predicate: Callable[[object], bool], max_depth: int = 5
) -> Any | None:
    """Breadth-first search of ``root``'s instance attributes for an object matching
    ``predicate``.

    Only follows objects from ``libp2p`` and ``trio`` modules, at most
    ``max_depth`` levels deep; returns the first match or ``None``. From an object
    that owns :data:`WALK` touchpoints (py-libp2p 0.8.1's Noise over TCP) it
    follows those alone, read with ``getattr``; from any other object, everything
    ``vars()`` holds.
    """
    seen: set[int] = set()
    queue: deque[tuple[object, int]] = deque([(root, 0)])
    while queue:
        obj, depth = queue.popleft()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if obj is not root and predicate(obj):
            return obj
        if depth >= max_depth:
            continue
        route = [tp for tp in _WALKS if isinstance(obj, tp.owners)]  # type: ignore[arg-type]
        if route:
            # The known route, read attribute by attribute: vars() would take the
            # object's attributes off CPython's fast path for the rest of its life
            # (see patching.instance_attribute), and these are a connection's
            # objects that every byte goes through.
            values = [tp.get(obj) for tp in route]
        else:
            try:
                values = [v for name, v in vars(obj).items() if name not in SKIP_ATTRS]
            except TypeError:
                continue
        for value in values:
            if value is None:
                continue
            module = type(value).__module__ or ""
            if module.startswith(("libp2p", "trio")):
                queue.append((value, depth + 1))
    return None
