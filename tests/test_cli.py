"""The CLI as a user runs it: `serve` prints its URL, `watch` reads live snapshots from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cli_process import running


def test_serve_prints_url_then_watch_reads_a_live_demo_node():
    with running(
        ["-m", "libp2p_introspection", "serve", "--port", "0", "--interval-ms", "200",
         "--nodes", "3", "--no-churn", "--seed", "7"]
    ) as (_, url):  # fmt: skip
        assert url.startswith("ws://127.0.0.1:") and url.endswith("/introspect")
        watched = subprocess.run(
            [sys.executable, "-m", "libp2p_introspection",
             "watch", url, "--count", "8", "--json"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert watched.returncode == 0, watched.stderr
        lines = [json.loads(line) for line in watched.stdout.splitlines()]
        runtime = lines[0]
        assert runtime["kind"] == "runtime"
        assert runtime["implementation"] == "py-libp2p"
        assert runtime["peer_id"].startswith("12D3KooW") or runtime["peer_id"].startswith("Qm")
        states = [line for line in lines if line["kind"] == "state"]
        assert len(states) == 8
        instants = [s["instant_ts"] for s in states]
        assert instants == sorted(set(instants))
        assert states[-1]["connections"] >= 1
        assert states[-1]["bytes_in"] > 0 and states[-1]["bytes_out"] > 0


def test_serve_reports_a_busy_port_clearly():
    with running(
        ["-m", "libp2p_introspection", "serve", "--port", "0", "--nodes", "2", "--no-churn"]
    ) as (_, url):
        port = url.rsplit(":", 1)[1].split("/")[0]
        second = subprocess.run(
            [sys.executable, "-m", "libp2p_introspection", "serve", "--port", port,
             "--nodes", "2", "--no-churn"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert second.returncode != 0
        assert "cannot serve" in second.stderr


def test_unknown_source_is_a_usage_error():
    result = subprocess.run(
        [sys.executable, "-m", "libp2p_introspection", "serve", "--source", "nope"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown source" in result.stderr


def test_token_protected_server_and_clients(tmp_path):
    out = tmp_path / "t.mock"
    with running(
        ["-m", "libp2p_introspection", "serve", "--source", "mock", "--connections", "5",
         "--port", "0", "--interval-ms", "100", "--token", "abc123"]
    ) as (_, url):  # fmt: skip
        refused = subprocess.run(
            [sys.executable, "-m", "libp2p_introspection", "record", url, "-o", str(out), "--count", "2"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "LIBP2P_INTROSPECTION_TOKEN": ""},
        )  # fmt: skip
        assert refused.returncode == 1
        assert "401" in refused.stderr
        accepted = subprocess.run(
            [sys.executable, "-m", "libp2p_introspection", "record", url, "-o", str(out), "--count", "2"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "LIBP2P_INTROSPECTION_TOKEN": "abc123"},
        )  # fmt: skip
        assert accepted.returncode == 0, accepted.stderr
        assert "2 snapshots" in accepted.stderr


def test_non_loopback_bind_needs_allow_remote():
    result = subprocess.run(
        [sys.executable, "-m", "libp2p_introspection", "serve", "--source", "mock", "--host", "0.0.0.0"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "--allow-remote" in result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_clients_report_an_unreachable_server_in_one_line(tmp_path):
    port = _free_port()  # nothing listens there
    precious = tmp_path / "precious.mock"
    precious.write_bytes(b"\x01\x00\x00\x00" + b"keep me" * 100)
    for args in (["watch", f"127.0.0.1:{port}"], ["record", f"ws://127.0.0.1:{port}/introspect", "-o", str(precious)]):
        result = subprocess.run([sys.executable, "-m", "libp2p_introspection", *args],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert result.returncode == 1, result.stderr
        assert "Error: cannot" in result.stderr and "Traceback" not in result.stderr
    assert precious.read_bytes().endswith(b"keep me")  # a failed record destroys nothing


def test_attach_takes_the_bind_address_as_an_option():
    import inspect

    from libp2p_introspection.attach import attach_introspection

    parameters = inspect.signature(attach_introspection).parameters
    assert parameters["host"].kind is inspect.Parameter.POSITIONAL_ONLY  # so host= is the bind address


def test_an_allowed_origin_must_be_exactly_scheme_host_port():
    for bad in ("http://evil.com\\@127.0.0.1", "http://user@observer.example.org",
                "https://observer.example.org/path"):  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "libp2p_introspection", "serve", "--source", "mock",
             "--port", "0", "--allow-origin", bad],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2, (bad, result.stderr)
        assert "is not an origin" in result.stderr


def test_an_unknown_host_is_said_in_words():
    """A name that does not resolve: "cannot resolve host X", not "[Errno -2] Name or
    service not known" (the newcomer's report); the exception as trio-websocket raises it
    (an OSError from getaddrinfo, inside a group)."""
    import socket

    from libp2p_introspection.cli.running import unreachable

    lookup = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    wrapped = OSError()
    wrapped.__cause__ = lookup
    for error in (lookup, wrapped, BaseExceptionGroup("g", [wrapped])):
        text = unreachable("ws://nohost.example:8845/introspect", error)
        assert text.startswith("cannot resolve host nohost.example ("), text
        assert "Errno" not in text
