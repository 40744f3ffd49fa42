from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INITIATOR: _ClassVar[Role]
    RESPONDER: _ClassVar[Role]

class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVE: _ClassVar[Status]
    CLOSED: _ClassVar[Status]
    OPENING: _ClassVar[Status]
    CLOSING: _ClassVar[Status]
    ERROR: _ClassVar[Status]
INITIATOR: Role
RESPONDER: Role
ACTIVE: Status
CLOSED: Status
OPENING: Status
CLOSING: Status
ERROR: Status

class Version(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class ResultCounter(_message.Message):
    __slots__ = ("total", "ok", "err")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERR_FIELD_NUMBER: _ClassVar[int]
    total: int
    ok: int
    err: int
    def __init__(self, total: _Optional[int] = ..., ok: _Optional[int] = ..., err: _Optional[int] = ...) -> None: ...

class SlidingCounter(_message.Message):
    __slots__ = ("over_1m", "over_5m", "over_15m", "over_30m", "over_1hr", "over_2hr", "over_4hr", "over_8hr", "over_12hr", "over_24hr")
    OVER_1M_FIELD_NUMBER: _ClassVar[int]
    OVER_5M_FIELD_NUMBER: _ClassVar[int]
    OVER_15M_FIELD_NUMBER: _ClassVar[int]
    OVER_30M_FIELD_NUMBER: _ClassVar[int]
    OVER_1HR_FIELD_NUMBER: _ClassVar[int]
    OVER_2HR_FIELD_NUMBER: _ClassVar[int]
    OVER_4HR_FIELD_NUMBER: _ClassVar[int]
    OVER_8HR_FIELD_NUMBER: _ClassVar[int]
    OVER_12HR_FIELD_NUMBER: _ClassVar[int]
    OVER_24HR_FIELD_NUMBER: _ClassVar[int]
    over_1m: int
    over_5m: int
    over_15m: int
    over_30m: int
    over_1hr: int
    over_2hr: int
    over_4hr: int
    over_8hr: int
    over_12hr: int
    over_24hr: int
    def __init__(self, over_1m: _Optional[int] = ..., over_5m: _Optional[int] = ..., over_15m: _Optional[int] = ..., over_30m: _Optional[int] = ..., over_1hr: _Optional[int] = ..., over_2hr: _Optional[int] = ..., over_4hr: _Optional[int] = ..., over_8hr: _Optional[int] = ..., over_12hr: _Optional[int] = ..., over_24hr: _Optional[int] = ...) -> None: ...

class DataGauge(_message.Message):
    __slots__ = ("cum_bytes", "cum_packets", "inst_bw")
    CUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    CUM_PACKETS_FIELD_NUMBER: _ClassVar[int]
    INST_BW_FIELD_NUMBER: _ClassVar[int]
    cum_bytes: int
    cum_packets: int
    inst_bw: int
    def __init__(self, cum_bytes: _Optional[int] = ..., cum_packets: _Optional[int] = ..., inst_bw: _Optional[int] = ...) -> None: ...

class EventType(_message.Message):
    __slots__ = ("name", "property_types")
    class EventProperty(_message.Message):
        __slots__ = ("name", "type", "has_multiple")
        class PropertyType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            STRING: _ClassVar[EventType.EventProperty.PropertyType]
            NUMBER: _ClassVar[EventType.EventProperty.PropertyType]
            TIME: _ClassVar[EventType.EventProperty.PropertyType]
            PEERID: _ClassVar[EventType.EventProperty.PropertyType]
            MULTIADDR: _ClassVar[EventType.EventProperty.PropertyType]
            JSON: _ClassVar[EventType.EventProperty.PropertyType]
        STRING: EventType.EventProperty.PropertyType
        NUMBER: EventType.EventProperty.PropertyType
        TIME: EventType.EventProperty.PropertyType
        PEERID: EventType.EventProperty.PropertyType
        MULTIADDR: EventType.EventProperty.PropertyType
        JSON: EventType.EventProperty.PropertyType
        NAME_FIELD_NUMBER: _ClassVar[int]
        TYPE_FIELD_NUMBER: _ClassVar[int]
        HAS_MULTIPLE_FIELD_NUMBER: _ClassVar[int]
        name: str
        type: EventType.EventProperty.PropertyType
        has_multiple: bool
        def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[EventType.EventProperty.PropertyType, str]] = ..., has_multiple: bool = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROPERTY_TYPES_FIELD_NUMBER: _ClassVar[int]
    name: str
    property_types: _containers.RepeatedCompositeFieldContainer[EventType.EventProperty]
    def __init__(self, name: _Optional[str] = ..., property_types: _Optional[_Iterable[_Union[EventType.EventProperty, _Mapping]]] = ...) -> None: ...

class Runtime(_message.Message):
    __slots__ = ("implementation", "version", "platform", "peer_id", "event_types")
    IMPLEMENTATION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    implementation: str
    version: str
    platform: str
    peer_id: str
    event_types: _containers.RepeatedCompositeFieldContainer[EventType]
    def __init__(self, implementation: _Optional[str] = ..., version: _Optional[str] = ..., platform: _Optional[str] = ..., peer_id: _Optional[str] = ..., event_types: _Optional[_Iterable[_Union[EventType, _Mapping]]] = ...) -> None: ...

class EndpointPair(_message.Message):
    __slots__ = ("src_multiaddr", "dst_multiaddr")
    SRC_MULTIADDR_FIELD_NUMBER: _ClassVar[int]
    DST_MULTIADDR_FIELD_NUMBER: _ClassVar[int]
    src_multiaddr: str
    dst_multiaddr: str
    def __init__(self, src_multiaddr: _Optional[str] = ..., dst_multiaddr: _Optional[str] = ...) -> None: ...

class Traffic(_message.Message):
    __slots__ = ("traffic_in", "traffic_out")
    TRAFFIC_IN_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_OUT_FIELD_NUMBER: _ClassVar[int]
    traffic_in: DataGauge
    traffic_out: DataGauge
    def __init__(self, traffic_in: _Optional[_Union[DataGauge, _Mapping]] = ..., traffic_out: _Optional[_Union[DataGauge, _Mapping]] = ...) -> None: ...

class Connection(_message.Message):
    __slots__ = ("id", "peer_id", "status", "transport_id", "endpoints", "timeline", "role", "traffic", "attribs", "latency_ns", "streams", "conn_id", "conn", "user_provided_tags", "peer")
    class Timeline(_message.Message):
        __slots__ = ("open_ts", "upgraded_ts", "close_ts")
        OPEN_TS_FIELD_NUMBER: _ClassVar[int]
        UPGRADED_TS_FIELD_NUMBER: _ClassVar[int]
        CLOSE_TS_FIELD_NUMBER: _ClassVar[int]
        open_ts: int
        upgraded_ts: int
        close_ts: int
        def __init__(self, open_ts: _Optional[int] = ..., upgraded_ts: _Optional[int] = ..., close_ts: _Optional[int] = ...) -> None: ...
    class Attributes(_message.Message):
        __slots__ = ("multiplexer", "encryption")
        MULTIPLEXER_FIELD_NUMBER: _ClassVar[int]
        ENCRYPTION_FIELD_NUMBER: _ClassVar[int]
        multiplexer: str
        encryption: str
        def __init__(self, multiplexer: _Optional[str] = ..., encryption: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    ATTRIBS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    CONN_ID_FIELD_NUMBER: _ClassVar[int]
    CONN_FIELD_NUMBER: _ClassVar[int]
    USER_PROVIDED_TAGS_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    peer_id: str
    status: Status
    transport_id: bytes
    endpoints: EndpointPair
    timeline: Connection.Timeline
    role: Role
    traffic: Traffic
    attribs: Connection.Attributes
    latency_ns: int
    streams: StreamList
    conn_id: bytes
    conn: Connection
    user_provided_tags: _containers.RepeatedScalarFieldContainer[str]
    peer: PeerInfo
    def __init__(self, id: _Optional[bytes] = ..., peer_id: _Optional[str] = ..., status: _Optional[_Union[Status, str]] = ..., transport_id: _Optional[bytes] = ..., endpoints: _Optional[_Union[EndpointPair, _Mapping]] = ..., timeline: _Optional[_Union[Connection.Timeline, _Mapping]] = ..., role: _Optional[_Union[Role, str]] = ..., traffic: _Optional[_Union[Traffic, _Mapping]] = ..., attribs: _Optional[_Union[Connection.Attributes, _Mapping]] = ..., latency_ns: _Optional[int] = ..., streams: _Optional[_Union[StreamList, _Mapping]] = ..., conn_id: _Optional[bytes] = ..., conn: _Optional[_Union[Connection, _Mapping]] = ..., user_provided_tags: _Optional[_Iterable[str]] = ..., peer: _Optional[_Union[PeerInfo, _Mapping]] = ...) -> None: ...

class StreamList(_message.Message):
    __slots__ = ("stream_ids", "streams")
    STREAM_IDS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_FIELD_NUMBER: _ClassVar[int]
    stream_ids: _containers.RepeatedScalarFieldContainer[bytes]
    streams: _containers.RepeatedCompositeFieldContainer[Stream]
    def __init__(self, stream_ids: _Optional[_Iterable[bytes]] = ..., streams: _Optional[_Iterable[_Union[Stream, _Mapping]]] = ...) -> None: ...

class Stream(_message.Message):
    __slots__ = ("id", "protocol", "role", "traffic", "conn", "timeline", "status", "latency_ns", "user_provided_tags")
    class ConnectionRef(_message.Message):
        __slots__ = ("conn", "conn_id")
        CONN_FIELD_NUMBER: _ClassVar[int]
        CONN_ID_FIELD_NUMBER: _ClassVar[int]
        conn: Connection
        conn_id: bytes
        def __init__(self, conn: _Optional[_Union[Connection, _Mapping]] = ..., conn_id: _Optional[bytes] = ...) -> None: ...
    class Timeline(_message.Message):
        __slots__ = ("open_ts", "close_ts")
        OPEN_TS_FIELD_NUMBER: _ClassVar[int]
        CLOSE_TS_FIELD_NUMBER: _ClassVar[int]
        open_ts: int
        close_ts: int
        def __init__(self, open_ts: _Optional[int] = ..., close_ts: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    CONN_FIELD_NUMBER: _ClassVar[int]
    TIMELINE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    USER_PROVIDED_TAGS_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    protocol: str
    role: Role
    traffic: Traffic
    conn: Stream.ConnectionRef
    timeline: Stream.Timeline
    status: Status
    latency_ns: int
    user_provided_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[bytes] = ..., protocol: _Optional[str] = ..., role: _Optional[_Union[Role, str]] = ..., traffic: _Optional[_Union[Traffic, _Mapping]] = ..., conn: _Optional[_Union[Stream.ConnectionRef, _Mapping]] = ..., timeline: _Optional[_Union[Stream.Timeline, _Mapping]] = ..., status: _Optional[_Union[Status, str]] = ..., latency_ns: _Optional[int] = ..., user_provided_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class DHT(_message.Message):
    __slots__ = ("protocol", "enabled", "start_ts", "params", "buckets", "incoming_queries", "outgoing_queries")
    class Params(_message.Message):
        __slots__ = ("k", "alpha", "disjoint_paths", "beta")
        K_FIELD_NUMBER: _ClassVar[int]
        ALPHA_FIELD_NUMBER: _ClassVar[int]
        DISJOINT_PATHS_FIELD_NUMBER: _ClassVar[int]
        BETA_FIELD_NUMBER: _ClassVar[int]
        k: int
        alpha: int
        disjoint_paths: int
        beta: int
        def __init__(self, k: _Optional[int] = ..., alpha: _Optional[int] = ..., disjoint_paths: _Optional[int] = ..., beta: _Optional[int] = ...) -> None: ...
    class PeerInDHT(_message.Message):
        __slots__ = ("peer_id", "status", "age_in_bucket")
        class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
            __slots__ = ()
            ACTIVE: _ClassVar[DHT.PeerInDHT.Status]
            MISSING: _ClassVar[DHT.PeerInDHT.Status]
            REJECTED: _ClassVar[DHT.PeerInDHT.Status]
            CANDIDATE: _ClassVar[DHT.PeerInDHT.Status]
        ACTIVE: DHT.PeerInDHT.Status
        MISSING: DHT.PeerInDHT.Status
        REJECTED: DHT.PeerInDHT.Status
        CANDIDATE: DHT.PeerInDHT.Status
        PEER_ID_FIELD_NUMBER: _ClassVar[int]
        STATUS_FIELD_NUMBER: _ClassVar[int]
        AGE_IN_BUCKET_FIELD_NUMBER: _ClassVar[int]
        peer_id: str
        status: DHT.PeerInDHT.Status
        age_in_bucket: int
        def __init__(self, peer_id: _Optional[str] = ..., status: _Optional[_Union[DHT.PeerInDHT.Status, str]] = ..., age_in_bucket: _Optional[int] = ...) -> None: ...
    class Bucket(_message.Message):
        __slots__ = ("cpl", "peers")
        CPL_FIELD_NUMBER: _ClassVar[int]
        PEERS_FIELD_NUMBER: _ClassVar[int]
        cpl: int
        peers: _containers.RepeatedCompositeFieldContainer[DHT.PeerInDHT]
        def __init__(self, cpl: _Optional[int] = ..., peers: _Optional[_Iterable[_Union[DHT.PeerInDHT, _Mapping]]] = ...) -> None: ...
    class QueryGauge(_message.Message):
        __slots__ = ("success", "error", "timeout")
        SUCCESS_FIELD_NUMBER: _ClassVar[int]
        ERROR_FIELD_NUMBER: _ClassVar[int]
        TIMEOUT_FIELD_NUMBER: _ClassVar[int]
        success: int
        error: int
        timeout: int
        def __init__(self, success: _Optional[int] = ..., error: _Optional[int] = ..., timeout: _Optional[int] = ...) -> None: ...
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    START_TS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    BUCKETS_FIELD_NUMBER: _ClassVar[int]
    INCOMING_QUERIES_FIELD_NUMBER: _ClassVar[int]
    OUTGOING_QUERIES_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    enabled: bool
    start_ts: int
    params: DHT.Params
    buckets: _containers.RepeatedCompositeFieldContainer[DHT.Bucket]
    incoming_queries: DHT.QueryGauge
    outgoing_queries: DHT.QueryGauge
    def __init__(self, protocol: _Optional[str] = ..., enabled: bool = ..., start_ts: _Optional[int] = ..., params: _Optional[_Union[DHT.Params, _Mapping]] = ..., buckets: _Optional[_Iterable[_Union[DHT.Bucket, _Mapping]]] = ..., incoming_queries: _Optional[_Union[DHT.QueryGauge, _Mapping]] = ..., outgoing_queries: _Optional[_Union[DHT.QueryGauge, _Mapping]] = ...) -> None: ...

class Subsystems(_message.Message):
    __slots__ = ("connections", "dht", "pubsub", "resources")
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    DHT_FIELD_NUMBER: _ClassVar[int]
    PUBSUB_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    connections: _containers.RepeatedCompositeFieldContainer[Connection]
    dht: DHT
    pubsub: PubSub
    resources: ResourceManager
    def __init__(self, connections: _Optional[_Iterable[_Union[Connection, _Mapping]]] = ..., dht: _Optional[_Union[DHT, _Mapping]] = ..., pubsub: _Optional[_Union[PubSub, _Mapping]] = ..., resources: _Optional[_Union[ResourceManager, _Mapping]] = ...) -> None: ...

class State(_message.Message):
    __slots__ = ("subsystems", "traffic", "instant_ts", "start_ts", "snapshot_duration_ms", "node", "protocols")
    SUBSYSTEMS_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    INSTANT_TS_FIELD_NUMBER: _ClassVar[int]
    START_TS_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    subsystems: Subsystems
    traffic: Traffic
    instant_ts: int
    start_ts: int
    snapshot_duration_ms: int
    node: NodeInfo
    protocols: _containers.RepeatedCompositeFieldContainer[ProtocolStats]
    def __init__(self, subsystems: _Optional[_Union[Subsystems, _Mapping]] = ..., traffic: _Optional[_Union[Traffic, _Mapping]] = ..., instant_ts: _Optional[int] = ..., start_ts: _Optional[int] = ..., snapshot_duration_ms: _Optional[int] = ..., node: _Optional[_Union[NodeInfo, _Mapping]] = ..., protocols: _Optional[_Iterable[_Union[ProtocolStats, _Mapping]]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("type", "ts", "content")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    ts: int
    content: str
    def __init__(self, type: _Optional[_Union[EventType, _Mapping]] = ..., ts: _Optional[int] = ..., content: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("version", "state", "runtime", "event", "response", "notice")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    version: Version
    state: State
    runtime: Runtime
    event: Event
    response: CommandResponse
    notice: ServerNotice
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ..., state: _Optional[_Union[State, _Mapping]] = ..., runtime: _Optional[_Union[Runtime, _Mapping]] = ..., event: _Optional[_Union[Event, _Mapping]] = ..., response: _Optional[_Union[CommandResponse, _Mapping]] = ..., notice: _Optional[_Union[ServerNotice, _Mapping]] = ...) -> None: ...

class Configuration(_message.Message):
    __slots__ = ("retention_period_ms", "state_snapshot_interval_ms")
    RETENTION_PERIOD_MS_FIELD_NUMBER: _ClassVar[int]
    STATE_SNAPSHOT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    retention_period_ms: int
    state_snapshot_interval_ms: int
    def __init__(self, retention_period_ms: _Optional[int] = ..., state_snapshot_interval_ms: _Optional[int] = ...) -> None: ...

class ClientCommand(_message.Message):
    __slots__ = ("version", "id", "command", "source", "config")
    class Source(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE: _ClassVar[ClientCommand.Source]
        RUNTIME: _ClassVar[ClientCommand.Source]
        EVENTS: _ClassVar[ClientCommand.Source]
    STATE: ClientCommand.Source
    RUNTIME: ClientCommand.Source
    EVENTS: ClientCommand.Source
    class Command(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        HELLO: _ClassVar[ClientCommand.Command]
        REQUEST: _ClassVar[ClientCommand.Command]
        PUSH_ENABLE: _ClassVar[ClientCommand.Command]
        PUSH_DISABLE: _ClassVar[ClientCommand.Command]
        PUSH_PAUSE: _ClassVar[ClientCommand.Command]
        PUSH_RESUME: _ClassVar[ClientCommand.Command]
        UPDATE_CONFIG: _ClassVar[ClientCommand.Command]
    HELLO: ClientCommand.Command
    REQUEST: ClientCommand.Command
    PUSH_ENABLE: ClientCommand.Command
    PUSH_DISABLE: ClientCommand.Command
    PUSH_PAUSE: ClientCommand.Command
    PUSH_RESUME: ClientCommand.Command
    UPDATE_CONFIG: ClientCommand.Command
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    version: Version
    id: int
    command: ClientCommand.Command
    source: ClientCommand.Source
    config: Configuration
    def __init__(self, version: _Optional[_Union[Version, _Mapping]] = ..., id: _Optional[int] = ..., command: _Optional[_Union[ClientCommand.Command, str]] = ..., source: _Optional[_Union[ClientCommand.Source, str]] = ..., config: _Optional[_Union[Configuration, _Mapping]] = ...) -> None: ...

class CommandResponse(_message.Message):
    __slots__ = ("id", "result", "error", "effective_config")
    class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        OK: _ClassVar[CommandResponse.Result]
        ERR: _ClassVar[CommandResponse.Result]
    OK: CommandResponse.Result
    ERR: CommandResponse.Result
    ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    id: int
    result: CommandResponse.Result
    error: str
    effective_config: Configuration
    def __init__(self, id: _Optional[int] = ..., result: _Optional[_Union[CommandResponse.Result, str]] = ..., error: _Optional[str] = ..., effective_config: _Optional[_Union[Configuration, _Mapping]] = ...) -> None: ...

class ServerNotice(_message.Message):
    __slots__ = ("kind",)
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DISCARDING_EVENTS: _ClassVar[ServerNotice.Kind]
    DISCARDING_EVENTS: ServerNotice.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: ServerNotice.Kind
    def __init__(self, kind: _Optional[_Union[ServerNotice.Kind, str]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("listen_addrs", "observed_addrs", "reachability", "protocols")
    class Reachability(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[NodeInfo.Reachability]
        PUBLIC: _ClassVar[NodeInfo.Reachability]
        PRIVATE: _ClassVar[NodeInfo.Reachability]
        NOT_RUNNING: _ClassVar[NodeInfo.Reachability]
    UNKNOWN: NodeInfo.Reachability
    PUBLIC: NodeInfo.Reachability
    PRIVATE: NodeInfo.Reachability
    NOT_RUNNING: NodeInfo.Reachability
    LISTEN_ADDRS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_ADDRS_FIELD_NUMBER: _ClassVar[int]
    REACHABILITY_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    listen_addrs: _containers.RepeatedScalarFieldContainer[str]
    observed_addrs: _containers.RepeatedScalarFieldContainer[str]
    reachability: NodeInfo.Reachability
    protocols: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, listen_addrs: _Optional[_Iterable[str]] = ..., observed_addrs: _Optional[_Iterable[str]] = ..., reachability: _Optional[_Union[NodeInfo.Reachability, str]] = ..., protocols: _Optional[_Iterable[str]] = ...) -> None: ...

class ProtocolStats(_message.Message):
    __slots__ = ("protocol", "traffic", "active_streams", "streams_opened")
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_STREAMS_FIELD_NUMBER: _ClassVar[int]
    STREAMS_OPENED_FIELD_NUMBER: _ClassVar[int]
    protocol: str
    traffic: Traffic
    active_streams: int
    streams_opened: int
    def __init__(self, protocol: _Optional[str] = ..., traffic: _Optional[_Union[Traffic, _Mapping]] = ..., active_streams: _Optional[int] = ..., streams_opened: _Optional[int] = ...) -> None: ...

class PeerInfo(_message.Message):
    __slots__ = ("agent_version", "protocol_version", "protocols", "listen_addrs", "observed_addr")
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOLS_FIELD_NUMBER: _ClassVar[int]
    LISTEN_ADDRS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_ADDR_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    protocol_version: str
    protocols: _containers.RepeatedScalarFieldContainer[str]
    listen_addrs: _containers.RepeatedScalarFieldContainer[str]
    observed_addr: str
    def __init__(self, agent_version: _Optional[str] = ..., protocol_version: _Optional[str] = ..., protocols: _Optional[_Iterable[str]] = ..., listen_addrs: _Optional[_Iterable[str]] = ..., observed_addr: _Optional[str] = ...) -> None: ...

class PubSub(_message.Message):
    __slots__ = ("router", "topics", "peers")
    class Topic(_message.Message):
        __slots__ = ("name", "subscribed", "mesh_peers", "fanout_peers", "peers", "messages_in", "messages_out")
        NAME_FIELD_NUMBER: _ClassVar[int]
        SUBSCRIBED_FIELD_NUMBER: _ClassVar[int]
        MESH_PEERS_FIELD_NUMBER: _ClassVar[int]
        FANOUT_PEERS_FIELD_NUMBER: _ClassVar[int]
        PEERS_FIELD_NUMBER: _ClassVar[int]
        MESSAGES_IN_FIELD_NUMBER: _ClassVar[int]
        MESSAGES_OUT_FIELD_NUMBER: _ClassVar[int]
        name: str
        subscribed: bool
        mesh_peers: _containers.RepeatedScalarFieldContainer[str]
        fanout_peers: _containers.RepeatedScalarFieldContainer[str]
        peers: _containers.RepeatedScalarFieldContainer[str]
        messages_in: DataGauge
        messages_out: DataGauge
        def __init__(self, name: _Optional[str] = ..., subscribed: bool = ..., mesh_peers: _Optional[_Iterable[str]] = ..., fanout_peers: _Optional[_Iterable[str]] = ..., peers: _Optional[_Iterable[str]] = ..., messages_in: _Optional[_Union[DataGauge, _Mapping]] = ..., messages_out: _Optional[_Union[DataGauge, _Mapping]] = ...) -> None: ...
    ROUTER_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    router: str
    topics: _containers.RepeatedCompositeFieldContainer[PubSub.Topic]
    peers: _containers.RepeatedCompositeFieldContainer[PubSubPeer]
    def __init__(self, router: _Optional[str] = ..., topics: _Optional[_Iterable[_Union[PubSub.Topic, _Mapping]]] = ..., peers: _Optional[_Iterable[_Union[PubSubPeer, _Mapping]]] = ...) -> None: ...

class PubSubPeer(_message.Message):
    __slots__ = ("peer_id", "protocol", "score", "topics")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    peer_id: str
    protocol: str
    score: float
    topics: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, peer_id: _Optional[str] = ..., protocol: _Optional[str] = ..., score: _Optional[float] = ..., topics: _Optional[_Iterable[str]] = ...) -> None: ...

class ResourceManager(_message.Message):
    __slots__ = ("scopes", "blocked")
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    scopes: _containers.RepeatedCompositeFieldContainer[ResourceScope]
    blocked: int
    def __init__(self, scopes: _Optional[_Iterable[_Union[ResourceScope, _Mapping]]] = ..., blocked: _Optional[int] = ...) -> None: ...

class ResourceScope(_message.Message):
    __slots__ = ("name", "usage", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    usage: ResourceUsage
    limit: ResourceUsage
    def __init__(self, name: _Optional[str] = ..., usage: _Optional[_Union[ResourceUsage, _Mapping]] = ..., limit: _Optional[_Union[ResourceUsage, _Mapping]] = ...) -> None: ...

class ResourceUsage(_message.Message):
    __slots__ = ("conns_inbound", "conns_outbound", "streams_inbound", "streams_outbound", "memory", "fds", "conns_total", "streams_total")
    CONNS_INBOUND_FIELD_NUMBER: _ClassVar[int]
    CONNS_OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    STREAMS_INBOUND_FIELD_NUMBER: _ClassVar[int]
    STREAMS_OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    FDS_FIELD_NUMBER: _ClassVar[int]
    CONNS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STREAMS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    conns_inbound: int
    conns_outbound: int
    streams_inbound: int
    streams_outbound: int
    memory: int
    fds: int
    conns_total: int
    streams_total: int
    def __init__(self, conns_inbound: _Optional[int] = ..., conns_outbound: _Optional[int] = ..., streams_inbound: _Optional[int] = ..., streams_outbound: _Optional[int] = ..., memory: _Optional[int] = ..., fds: _Optional[int] = ..., conns_total: _Optional[int] = ..., streams_total: _Optional[int] = ...) -> None: ...
