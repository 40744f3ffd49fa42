"""Issue 9, case 9: a token is never printed or logged; URLs are shown with it redacted.

The token goes in the URL (``?token=``), in ``--token`` and in the environment,
and the clients run as a user runs them (subprocesses, real servers on
loopback) into each failure they report: connection refused, HTTP 401, a bad
URL, the server going away. Neither stdout nor stderr (logs included) may
contain any of the tokens; the dashboard's status, which its page reads, not
either. Library-level: trio-websocket's DEBUG line naming the URL, the feed's
logs.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
import trio
from cli_process import read_line, running
from trio_websocket import HandshakeError

from libp2p_introspection import config
from libp2p_introspection.client.connection import connect
from libp2p_introspection.dashboard.feed import ConnectionState, LiveFeed

CLI = [sys.executable, "-m", "libp2p_introspection"]
IN_URL = "url-secret-5f1c0e"
IN_OPTION = "option-secret-9a2b4d"
IN_ENV = "env-secret-77d0aa"
RIGHT = "right-secret-31b7c2"
SECRETS = (IN_URL, IN_OPTION, IN_ENV, RIGHT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], env_token: str | None = None, timeout: float = 60):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop(config.TOKEN_ENV, None)
    if env_token is not None:
        env[config.TOKEN_ENV] = env_token
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


def iter_queue(lines: queue.Queue[str]):
    """What is left in ``lines`` once the process has ended (its reader has, or soon)."""
    while True:
        try:
            yield lines.get(timeout=2)
        except queue.Empty:
            return


def _assert_no_token(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} shown in:\n{text}"


def _ways(url: str, tmp_path, command: str) -> list[tuple[list[str], str | None]]:
    """The token in the URL and in --token; in the URL and in the environment."""
    with_token = f"{url}?token={IN_URL}"
    out = ["-o", str(tmp_path / "out.mock")] if command == "record" else []
    return [
        ([command, with_token, *out, "--token", IN_OPTION, "--count", "2"], IN_ENV),
        ([command, with_token, *out, "--count", "2"], IN_ENV),
    ]


@pytest.mark.parametrize("command", ["record", "watch"])
def test_connection_refused_does_not_show_the_token(tmp_path, command):
    url = f"ws://127.0.0.1:{_free_port()}/introspect"  # nothing listens there
    for args, env_token in _ways(url, tmp_path, command):
        result = _run(args, env_token)
        assert result.returncode == 1, result.stderr
        assert "Error: cannot" in result.stderr and "Traceback" not in result.stderr
        assert "?token=***" in result.stderr  # the URL is shown, redacted
        _assert_no_token(result.stdout, result.stderr)


@pytest.mark.parametrize("command", ["record", "watch"])
def test_a_refused_token_is_not_shown_by_the_client_or_the_server(tmp_path, command):
    with running([*CLI[1:], "serve", "--source", "mock", "--connections", "3", "--port", "0",
                  "-vv", "--token", RIGHT]) as (server, url):  # fmt: skip
        for args, env_token in _ways(url, tmp_path, command):
            result = _run(args, env_token)
            assert result.returncode == 1, result.stderr
            assert "401" in result.stderr
            _assert_no_token(result.stdout, result.stderr)
        server.send_signal(signal.SIGINT)
        _, server_log = server.communicate(timeout=30)
    assert "missing or wrong token" in server_log  # the refusals were logged
    _assert_no_token(server_log)


@pytest.mark.parametrize(
    "bad_url",
    [
        f"http://127.0.0.1:8845/introspect?token={IN_URL}",
        f"ws://127.0.0.1:notaport/introspect?token={IN_URL}",
        f"ws:///introspect?token={IN_URL}",
    ],
)
@pytest.mark.parametrize("command", ["record", "watch", "dashboard"])
def test_a_bad_url_is_reported_without_its_token(tmp_path, command, bad_url):
    args = [command, bad_url, "--token", IN_OPTION]
    if command == "record":
        args += ["-o", str(tmp_path / "out.mock")]
    result = _run(args, IN_ENV)
    assert result.returncode == 2, result.stderr
    assert "Invalid value" in result.stderr
    _assert_no_token(result.stdout, result.stderr)


def test_a_token_that_cannot_go_in_a_header_is_refused_without_echoing_it(tmp_path):
    """(The HTTP library's own error quotes the header value: a traceback with the token.)"""
    bad = f"{IN_OPTION}\nX-Injected: 1"
    with running([*CLI[1:], "serve", "--source", "mock", "--connections", "3",
                  "--port", "0"]) as (_, url):  # fmt: skip
        for command in (["watch", "--count", "1"], ["record", "-o", str(tmp_path / "x.mock")]):
            result = _run([*command, url, "--token", bad])
            assert result.returncode == 2, result.stderr
            assert "control characters" in result.stderr and "Traceback" not in result.stderr
            _assert_no_token(result.stdout, result.stderr)


@pytest.mark.parametrize("command", ["record", "watch"])
@pytest.mark.parametrize("where", ["url", "option", "env"])
def test_the_server_going_away_is_reported_without_the_token(tmp_path, command, where):
    with running([*CLI[1:], "serve", "--source", "mock", "--connections", "3", "--port", "0",
                  "--interval-ms", "50", "--token", RIGHT]) as (server, url):  # fmt: skip
        args = [command, f"{url}?token={RIGHT}" if where == "url" else url]
        if where == "option":
            args += ["--token", RIGHT]
        if command == "record":
            args += ["-o", str(tmp_path / "cut.mock")]
        client = subprocess.Popen(
            [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, config.TOKEN_ENV: RIGHT if where == "env" else ""},
        )  # fmt: skip
        try:
            if command == "watch":
                read_line(client, 30)  # the Runtime line: connected
            else:
                deadline = time.monotonic() + 30
                out = tmp_path / "cut.mock"
                while (not out.exists() or out.stat().st_size < 2_000) and (
                    time.monotonic() < deadline
                ):
                    time.sleep(0.02)
            server.send_signal(signal.SIGINT)
            stdout, stderr = client.communicate(timeout=30)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(timeout=10)
    assert client.returncode == 1, stderr
    assert "1001" in stderr + stdout  # the server's "going away"
    _assert_no_token(stdout, stderr)


def test_the_dashboard_shows_and_logs_the_url_redacted(tmp_path):
    url = f"ws://127.0.0.1:{_free_port()}/introspect?token={IN_URL}"  # nothing listens
    env = {**os.environ, config.TOKEN_ENV: IN_ENV, "PYTHONUNBUFFERED": "1"}
    dashboard = subprocess.Popen(
        [*CLI, "dashboard", url, "--port", "0", "-vv", "--token", IN_OPTION],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    errors: queue.Queue[str] = queue.Queue()  # read as it comes: -vv must never fill the pipe
    for stream, into in ((dashboard.stdout, lines), (dashboard.stderr, errors)):
        threading.Thread(target=lambda s=stream, q=into: [q.put(x) for x in s], daemon=True).start()
    try:
        page = lines.get(timeout=60).strip().rstrip("/")
        about = lines.get(timeout=30)
        deadline = time.monotonic() + 30
        while True:  # the feed has tried and failed at least once
            with urllib.request.urlopen(f"{page}/api/status", timeout=10) as response:
                status = response.read().decode()
            if json.loads(status)["error"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # The page offers its status URL back to connect to: it means our URL, token and all.
        body = json.dumps({"url": json.loads(status)["url"]}).encode()
        request = urllib.request.Request(f"{page}/api/connect", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = response.read().decode()
    finally:
        dashboard.send_signal(signal.SIGINT)
        try:
            dashboard.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dashboard.kill()
            dashboard.wait(timeout=10)
        log = "".join(iter_queue(errors))
        rest = "".join(iter_queue(lines))
    assert json.loads(status)["url"].endswith("/introspect?token=***")
    assert json.loads(status)["error"]
    assert "?token=***" in about
    assert "Connecting to" in log  # trio-websocket's DEBUG line, with the URL
    _assert_no_token(page, about, status, answer, rest, log)


async def test_library_logs_never_show_the_token(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"ws://127.0.0.1:{_free_port()}/introspect?token={IN_URL}"
    with pytest.raises(HandshakeError):  # the refused TCP connection, wrapped
        async with connect(url, token=IN_OPTION, connect_timeout=5):
            pass
    assert "Connecting to" in caplog.text
    _assert_no_token(caplog.text)


class _Sink:
    def __getattr__(self, name):
        return lambda *args: None


async def test_the_feed_reports_and_logs_without_the_token(caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(config.TOKEN_ENV, IN_ENV)
    url = f"ws://127.0.0.1:{_free_port()}/introspect?token={IN_URL}"
    feed = LiveFeed(url, _Sink(), token=IN_OPTION, connect_timeout_s=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        with trio.fail_after(30):
            while feed.state != ConnectionState.RECONNECTING:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    assert feed.error and feed.display_url.endswith("?token=***")
    _assert_no_token(feed.error, feed.display_url, caplog.text)
    feed.switch(feed.display_url)  # what the page would send back: our URL itself
    assert feed.url == url and feed.token_for(feed.url) == IN_OPTION
    feed.switch("ws://127.0.0.1:9/introspect?token=***")  # another server: nothing of ours
    assert feed.url.endswith("?token=***") and feed.token_for(feed.url) == ""


def test_redact_hides_tokens_in_urls_headers_and_given_secrets():
    text = (
        f"ws://h:1/introspect?a=1&token={IN_URL}#x (b'x-introspection-token', b'{IN_ENV}') "
        f"Authorization: Bearer {RIGHT}, {IN_OPTION}"
    )
    clean = config.redact(text, config.token_secrets(None, IN_OPTION))
    assert clean == (
        "ws://h:1/introspect?a=1&token=***#x (b'x-introspection-token', b'***') "
        "Authorization: Bearer ***, ***"
    )
    spaced = "ws://h:1/introspect?token=two%20words here"
    assert config.redact(spaced, config.token_secrets(spaced)) == "ws://h:1/introspect?token=***"
