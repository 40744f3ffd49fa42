"""WebSocket close codes (RFC 6455 §7.4.1) this project sends or reports, defined once.

Which rule closes with which code is decided elsewhere: the session rules
(PROTOCOL.md §4.6, §4.8) in :mod:`libp2p_introspection.protocol.session`, the
WebSocket rules in :mod:`libp2p_introspection.server.wire`.
"""

from __future__ import annotations

#: The server (or the node it serves) stops.
CLOSE_GOING_AWAY = 1001
#: The client broke RFC 6455 (a bad opcode, RSV bits, an unmasked frame).
CLOSE_PROTOCOL_ERROR = 1002
#: Reported, never sent: the connection ended without a close frame.
CLOSE_ABNORMAL = 1006
#: A text frame that is not UTF-8 (the server), a payload that is not data (a client).
CLOSE_INVALID_DATA = 1007
#: The write timeout, a dead peer, a command flood (§4.6).
CLOSE_POLICY_VIOLATION = 1008
#: A command over the size limit (§4.8).
CLOSE_MESSAGE_TOO_BIG = 1009
#: Handling the session's input failed on our side.
CLOSE_INTERNAL_ERROR = 1011
