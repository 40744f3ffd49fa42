"""``/metrics`` over HTTP: the introspection port's admission rules, the port options, and
the health families of the server it belongs to."""

from __future__ import annotations

import errno

import pytest
import trio
from metrics_helpers import samples

from libp2p_introspection.attach import attach_introspection
from libp2p_introspection.protocol.limits import OptionError
from libp2p_introspection.server import ServerConfig, open_introspection_server
from libp2p_introspection.server.metrics import MetricsEndpoint
from libp2p_introspection.server.metrics.http import metrics_refusal
from libp2p_introspection.server.sources.synthetic import SyntheticOptions, SyntheticSource

TOKEN = "s3cret-token"


async def http_get(port: int, target: str = "/metrics", headers: dict[str, str] | None = None,
                   method: str = "GET") -> tuple[int, dict[str, str], str]:  # fmt: skip
    """One raw HTTP/1.1 request to 127.0.0.1:``port``; (status, headers, body)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    found = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), found, body.decode()


def _source() -> SyntheticSource:
    return SyntheticSource(SyntheticOptions(connections=5, dht_peers=4, events_per_second=0))


def test_the_admission_rules():
    host = [(b"host", b"127.0.0.1:8847")]
    assert metrics_refusal("GET", "/metrics", host, token=None) is None
    assert metrics_refusal("POST", "/metrics", host, token=None).status == 405
    assert metrics_refusal("GET", "/", host, token=None).status == 404
    # a name rebound to 127.0.0.1 by a web page sends its own name: refused on loopback
    rebound = [(b"host", b"attacker.example:8847")]
    assert metrics_refusal("GET", "/metrics", rebound, token=None).status == 403
    assert metrics_refusal("GET", "/metrics", rebound, token=None, loopback_only=False) is None
    assert metrics_refusal("GET", "/metrics", [(b"host", b"[::1]:1")], token=None) is None
    origin = [*host, (b"origin", b"https://attacker.example")]
    assert metrics_refusal("GET", "/metrics", origin, token=None).status == 403
    assert metrics_refusal("GET", "/metrics", host, token=TOKEN).status == 401
    bearer = [*host, (b"authorization", f"Bearer {TOKEN}".encode())]
    assert metrics_refusal("GET", "/metrics", bearer, token=TOKEN) is None
    wrong = [*host, (b"authorization", b"Bearer nope")]
    refusal = metrics_refusal("GET", "/metrics", wrong, token=TOKEN)
    assert refusal.status == 401 and TOKEN not in refusal.reason


async def test_the_token_is_required_when_set_and_prometheus_bearer_is_accepted():
    config = ServerConfig(port=0, metrics_port=0, token=TOKEN, interval_ms=100)
    async with open_introspection_server(_source(), config) as server:
        port = server.metrics.port
        status, headers, body = await http_get(port)
        assert status == 401 and headers["www-authenticate"] == "Bearer" and TOKEN not in body
        assert (await http_get(port, headers={"Authorization": "Bearer wrong"}))[0] == 401
        status, headers, body = await http_get(port, headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        assert samples(body)["libp2p_introspection_snapshot_number"][0][1] >= 1
        assert (await http_get(port, f"/metrics?token={TOKEN}"))[0] == 200
        assert (await http_get(port, "/other", {"Authorization": f"Bearer {TOKEN}"}))[0] == 404
        status, _, body = await http_get(port, headers={"Authorization": f"Bearer {TOKEN}"},
                                         method="HEAD")  # fmt: skip
        assert status == 200 and body == ""
        health = samples((await http_get(port, headers={"Authorization": f"Bearer {TOKEN}"}))[2])
        assert health["libp2p_introspection_refused_total"][0][1] == 3  # the three 401s
        assert health["libp2p_introspection_sessions"][0][1] == 0


async def test_a_rebound_host_name_and_garbage_are_refused_and_the_endpoint_goes_on():
    async with open_introspection_server(_source(), ServerConfig(port=0, metrics_port=0)) as server:
        port = server.metrics.port
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: attacker.example\r\n\r\n")
            with trio.fail_after(10):
                answer = await stream.receive_some(4096)
        assert answer.startswith(b"HTTP/1.1 403 ")
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"\x16\x03\x01 not http at all\r\n\r\n")
            with trio.fail_after(10):
                answer = await stream.receive_some(4096)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert (await http_get(port))[0] == 200


def test_a_non_loopback_metrics_endpoint_needs_allow_remote():
    with pytest.raises(OptionError, match="allow_remote"):
        ServerConfig(host="0.0.0.0", metrics_port=8847)
    assert ServerConfig(host="0.0.0.0", metrics_port=8847, allow_remote=True).metrics_port == 8847
    assert ServerConfig().metrics_port is None  # off by default
    with pytest.raises(OptionError, match="metrics_port must be at most 65535"):
        ServerConfig(metrics_port=70_000)


async def test_attach_refuses_a_remote_metrics_endpoint_before_touching_the_host():
    with pytest.raises(ValueError, match="allow_remote"):
        async with attach_introspection(object(), host="0.0.0.0", metrics_port=0):
            raise AssertionError("attach must refuse first")


async def test_a_taken_metrics_port_falls_back_only_when_a_range_is_given():
    taken = trio.socket.socket()
    await taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        endpoint = MetricsEndpoint(None, host="127.0.0.1", ports=[port])  # type: ignore[arg-type]
        with pytest.raises(OSError) as raised:
            await endpoint.bind()
        assert raised.value.errno == errno.EADDRINUSE
        fallback = MetricsEndpoint(None, host="127.0.0.1", ports=[port, 0])  # type: ignore[arg-type]
        assert await fallback.bind() not in (port, 0)
        for listener in fallback._listeners or ():
            await listener.aclose()
        config = ServerConfig(port=0, metrics_port=port)
        with pytest.raises(OSError):
            async with open_introspection_server(_source(), config):
                raise AssertionError("the port is taken")
    finally:
        taken.close()
