"""A first run without rough edges: errors that say what to do, quiet healthy runs, --help.

Commands run as a user runs them: in-process through click's runner where the
message is all that matters, in a subprocess where stderr's log lines or real
ports and signals do. Every port is a free one picked here (never 8845/8846,
which a developer's own demo may hold).
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from cli_process import running
from click.testing import CliRunner

from libp2p_introspection import config
from libp2p_introspection.cli import main

CLI = [sys.executable, "-m", "libp2p_introspection"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), terminal_width=80)


@contextmanager
def held_port() -> Iterator[int]:
    """A loopback port something listens on for the block (so nobody else can bind it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def warnings_in(stderr: str) -> list[str]:
    """Log lines at WARNING or above (the CLI's format: ``date time LEVEL name: text``)."""
    return [line for line in stderr.splitlines()
            if re.match(r"\S+ \S+ (WARNING|ERROR|CRITICAL) ", line)]  # fmt: skip


# ------------------------------------------------------------ 5. a busy port


@pytest.mark.parametrize(
    ("command", "option"),
    [(["serve", "--source", "mock"], "--port"), (["dashboard"], "--port")],
    ids=["serve", "dashboard"],
)
def test_a_busy_port_is_named_with_the_option_that_moves_it(command, option):
    with held_port() as port:
        result = invoke(*command, "--port", str(port))
    assert result.exit_code == 1, result.output
    assert f"127.0.0.1:{port}" in result.output and "already in use" in result.output
    assert f"{option} N" in result.output and f"{option} 0 picks a free one" in result.output
    assert "Errno" not in result.output


def test_demo_names_whichever_of_its_two_ports_is_busy():
    for busy, others, option in (
        ("--port", ["--dashboard-port", "0"], "--port"),
        ("--dashboard-port", ["--port", "0"], "--dashboard-port"),
    ):
        with held_port() as port:
            result = subprocess.run(
                [*CLI, "demo", "--nodes", "2", "--no-churn", busy, str(port), *others],
                capture_output=True, text=True, timeout=90,
            )  # fmt: skip
        assert result.returncode == 1, result.stderr
        message = result.stderr.strip().splitlines()[-1]
        assert f"127.0.0.1:{port}" in message and "already in use" in message, message
        assert f"choose another with {option} N" in message, message
        what = "dashboard" if busy == "--dashboard-port" else "introspection endpoint"
        assert what in message and "Traceback" not in result.stderr
    assert "--no-dashboard" in message  # the dashboard's port can also be given up


# ----------------------------------------------- 6. healthy runs log no WARNING


def test_serving_and_recording_a_healthy_recording_log_at_info_only(tmp_path, fixtures_dir):
    out = tmp_path / "copy.mock"
    with running(
        ["-m", "libp2p_introspection", "serve", "--source", str(fixtures_dir / "sample-1min.mock"),
         "--port", "0", "--speed", "20"]
    ) as (server, url):  # fmt: skip
        recorded = subprocess.run(
            [*CLI, "record", url, "-o", str(out), "--count", "3", "--no-progress"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert recorded.returncode == 0, recorded.stderr
        server.send_signal(signal.SIGINT)
        _, served = server.communicate(timeout=30)
    # record's progress lines (stderr is no terminal here) are INFO, and shown.
    assert re.search(r" INFO libp2p_introspection\.record: recorded \d+ snapshots?", recorded.stderr)
    assert warnings_in(recorded.stderr) == [], recorded.stderr
    # serve's "serving recording ..." line is INFO, and shown.
    assert re.search(rf" INFO \S+: serving recording \S*sample-1min.mock .* at {url}", served)
    assert warnings_in(served) == [], served


# --------------------------------------------------------- 9. errors that teach


def test_a_missing_recording_file_is_named_as_missing(tmp_path):
    missing = tmp_path / "missing.mock"
    result = invoke("serve", "--source", str(missing))
    assert result.exit_code == 2
    assert f"the file {missing} does not exist" in result.output
    result = invoke("serve", "--source", "missing.mock")
    assert "the file missing.mock does not exist" in result.output


@pytest.mark.parametrize("command", ["watch", "record"])
def test_a_client_of_a_port_where_nothing_listens_is_told_how_to_start_a_server(
    command, tmp_path
):
    port = free_port()
    args = [command, f"127.0.0.1:{port}"] + (["-o", str(tmp_path / "x.mock")] if command == "record" else [])
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert f"nothing is listening on 127.0.0.1:{port}" in result.output
    assert f"demo --port {port}" in result.output
    assert f"serve --source FILE.mock --port {port}" in result.output


def test_a_client_pointed_at_the_dashboard_is_told_it_reached_the_dashboard():
    with running(["-m", "libp2p_introspection", "dashboard", "--port", "0"]) as (_, page):
        port = page.rsplit(":", 1)[1].strip("/")
        result = invoke("watch", f"127.0.0.1:{port}")
    assert result.exit_code == 1
    assert "this is the libp2p-introspection dashboard" in result.output
    assert "not an introspection endpoint" in result.output
    assert f"the endpoint it follows is {config.default_url()}" in result.output


def test_a_plain_get_on_demos_endpoint_names_its_dashboard_and_demo_stays_quiet():
    args = ["-m", "libp2p_introspection", "demo", "--port", "0", "--dashboard-port", "0",
            "--nodes", "2", "--no-churn", "--seed", "5"]  # fmt: skip
    with running(args, first_line_timeout=90) as (process, url):
        try:
            urllib.request.urlopen(url.replace("ws://", "http://"), timeout=10)
            raise AssertionError("a plain GET of the endpoint should get 426")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode()
        assert status == 426
        assert f"libp2p introspection endpoint, {url}" in body
        named = re.search(r"Open its dashboard at (http://127\.0\.0\.1:\d+/)\.", body)
        assert named, body
        with urllib.request.urlopen(named[1] + "api/status", timeout=10) as response:
            assert json.loads(response.read())["url"] == url  # that page follows this node
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    assert warnings_in(stderr) == [], stderr
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "stopped"


def test_a_non_loopback_host_names_the_cli_flag():
    result = invoke("serve", "--source", "mock", "--host", "0.0.0.0")
    assert result.exit_code == 2
    assert "not a loopback address" in result.output and "add --allow-remote" in result.output
    assert "allow_remote=True" not in result.output


@pytest.mark.parametrize("command", ["watch", "record", "dashboard"])
def test_text_that_is_not_a_url_is_a_usage_error_not_a_dns_lookup(command, tmp_path):
    extra = ["-o", str(tmp_path / "x.mock")] if command == "record" else []
    # A subprocess, bounded: a dashboard that took the text would serve for ever.
    result = subprocess.run([*CLI, command, "not a url", *extra],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2, result.stderr  # refused before any connection
    assert "not a URL: 'not a url'" in result.stderr


def test_urls_are_checked_for_a_host_name_or_an_address():
    for good, expected in [
        ("localhost", "ws://localhost:8845/introspect"),
        ("node-1.example.org:9000", "ws://node-1.example.org:9000/introspect"),
        ("[::1]:8845", "ws://[::1]:8845/introspect"),
        ("wss://example.org/x", "wss://example.org:443/x"),
    ]:
        assert config.normalize_url(good) == expected
    for bad in ("not a url", "ws://a b:1/introspect", "ws://-x:1", "a..b", "ws://[zz::1]:1"):
        with pytest.raises(ValueError):
            config.normalize_url(bad)


# ------------------------------------------------------------------- 10. --help


def test_the_command_list_is_whole_sentences():
    result = invoke("--help")
    assert result.exit_code == 0
    commands = result.output.split("Commands:\n", 1)[1]
    entries = re.findall(r"^  (\S+)\s+(.+(?:\n {4,}.+)*)", commands, re.M)
    assert {name for name, _ in entries} == set(main.commands)
    for name, text in entries:
        text = " ".join(text.split())
        assert not text.endswith("...") and text.endswith("."), (name, text)


@pytest.mark.parametrize("command", ["watch", "record", "dashboard"])
def test_each_client_command_states_its_default_url(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert f"URL defaults to {config.default_url()}" in " ".join(result.output.split())


def test_default_ports_live_in_config():
    from libp2p_introspection.dashboard import DEFAULT_DASHBOARD_PORT, DashboardConfig
    from libp2p_introspection.protocol.discovery import (
        DASHBOARD_PORTS,
        INTROSPECTION_PORTS,
        METRICS_PORTS,
    )

    assert DEFAULT_DASHBOARD_PORT == config.DEFAULT_DASHBOARD_PORT == DashboardConfig().port
    # A port not given is the first free one of the plan (PROTOCOL.md §6), which
    # starts at the documented default.
    assert DASHBOARD_PORTS.first == config.DEFAULT_DASHBOARD_PORT
    assert INTROSPECTION_PORTS.first == config.DEFAULT_PORT
    assert METRICS_PORTS.first == config.DEFAULT_METRICS_PORT
    for name in ("demo", "dashboard"):
        option = "dashboard_port" if name == "demo" else "port"
        param = next(p for p in main.commands[name].params if p.name == option)
        assert param.default is None


def test_each_default_port_is_written_once():
    """The default ports (8845, 8846, 8847) are numbers in config.py only: the port plans
    of protocol/discovery.py and every other module take them from there, so changing
    one changes it everywhere (issue 11: they were written twice)."""
    import ast
    from pathlib import Path

    package = Path(config.__file__).resolve().parent
    defaults = {config.DEFAULT_PORT, config.DEFAULT_DASHBOARD_PORT, config.DEFAULT_METRICS_PORT}
    written = sorted(
        (str(path.relative_to(package)), node.value)
        for path in package.rglob("*.py")
        if "_pb2" not in path.name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and type(node.value) is int and node.value in defaults
    )
    assert written == [("config.py", port) for port in sorted(defaults)], written
