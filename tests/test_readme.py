"""The README's library example runs as is and serves a real py-libp2p node."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys

import pytest
import trio
from cli_process import running
from conftest import REPO

from libp2p_introspection.client import connect
from libp2p_introspection.client.connection import Command, Source


def _example(marker: str = "readme-example") -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(
        rf"<!-- {marker}: start -->\s*```python\n(.*?)```\s*<!-- {marker}: end -->", text, re.S
    )
    assert match, f"README lost its marked example {marker}"
    return match.group(1)


def test_readme_example_serves_the_host(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_example())
    with running([str(script)]) as (_, line):
        assert line.startswith("introspection at ws://127.0.0.1:")
        url = line.split()[-1]

        async def check() -> None:
            with trio.fail_after(30):
                async with connect(url) as client:
                    runtime = (await client.receive_kind("runtime")).message.runtime
                    assert runtime.implementation == "py-libp2p"
                    state = (await client.receive_kind("state")).message.state
                    assert state.instant_ts > 0

        trio.run(check)


def test_readme_application_data_example_declares_publishes_and_tags(tmp_path):
    script = tmp_path / "app_example.py"
    script.write_text(_example("readme-example-app"))
    with running([str(script)]) as (_, line):
        assert line.startswith("introspection at ws://127.0.0.1:")
        url = line.split()[-1]

        async def check() -> None:
            with trio.fail_after(30):
                async with connect(url) as client:
                    runtime = (await client.receive_kind("runtime")).message.runtime
                    (declared,) = [t for t in runtime.event_types if t.name == "BlockReceived"]
                    assert [(p.name, p.has_multiple) for p in declared.property_types] == [
                        ("from", False),
                        ("height", False),
                        ("topics", True),
                    ]
                    state = (await client.receive_kind("state")).message.state
                    for _ in range(20):  # a snapshot taken before the dial shows none
                        tags = [list(c.user_provided_tags) for c in state.subsystems.connections]
                        if tags:
                            break
                        await client.ready()
                        state = (await client.receive_kind("state")).message.state
                    assert tags == [["validator"]]
                    await client.send(Command.PUSH_ENABLE, Source.EVENTS, command_id=1)
                    for _ in range(100):
                        event = (await client.receive_kind("event")).message.event
                        if event.type.name == "BlockReceived":
                            break
                    content = json.loads(event.content)
                    assert content["from"] == connected_peer(state)
                    assert content["height"] >= 1 and content["topics"] == ["blocks"]

        trio.run(check)


def connected_peer(state) -> str:
    (conn,) = state.subsystems.connections
    return conn.peer_id


@pytest.mark.parametrize("marker", ["readme-example", "readme-example-app"])
def test_readme_example_ends_cleanly_on_ctrl_c(tmp_path, marker):
    script = tmp_path / "example.py"
    script.write_text(_example(marker))
    with running([str(script)]) as (process, line):
        assert line.startswith("introspection at ws://127.0.0.1:")
        process.send_signal(signal.SIGINT)  # a real Ctrl-C, as a terminal sends it
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr and "ExceptionGroup" not in stderr
    assert stderr.strip() == "" and stdout.strip() in ("", "stopped")


def _shell_commands(text: str) -> list[str]:
    """Every command of the README's ``sh`` blocks and inline code that runs a program."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            commands += [part.strip() for part in re.split(r"&&|\|", line) if part.strip()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [span for span in re.findall(r"`([^`\n]+)`", prose) if " " in span]
    return commands


def test_every_readme_command_runs_where_the_two_commands_leave_things():
    text = (REPO / "README.md").read_text()
    commands = _shell_commands(text)
    assert len(commands) > 10
    bare = re.compile(r"^(python|python3|pip|pytest|libp2p-introspect)(\s|$)")
    for command in commands:
        # The two commands make .venv but do not activate it: a bare program is not on PATH.
        assert not bare.match(command), f"README runs {command!r} outside the venv"
        # A placeholder host ("ws://host:9000") fails as written.
        assert not re.search(r"://host\b", command), command
    assert ". .venv/bin/activate" in text  # said once, for those who prefer it


def test_readme_follow_example_follows_a_running_server(tmp_path):
    """The "From a script" example, against a real `serve --source mock` it finds in the
    registry (the test's own, tests/conftest.py)."""
    script = tmp_path / "follow_example.py"
    script.write_text(_example("readme-example-follow"))
    mock = ["-m", "libp2p_introspection", "serve", "--source", "mock", "--connections", "3",
            "--interval-ms", "100", "--events-per-second", "50", "--port", "0"]  # fmt: skip
    with running(mock) as (_, line):
        url = line.split()[-1]
        assert url.startswith("ws://127.0.0.1:")
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("following ") and len(lines) == 4, result.stdout
    assert lines[1].endswith(" 3 connections") and int(lines[1].split()[0]) > 0
    assert lines[2].startswith("event ")
    assert lines[3].startswith(url + " ")


def test_readme_server_options_table_is_rendered_from_the_option_table():
    """The README's table of server options is what their one definition renders (flag,
    default, help), so it cannot drift from ``--help`` (it once said ``--port`` 8845 and
    that ``--max-handshakes`` closes the new connection, where the oldest is closed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "readme_options", REPO / "scripts" / "readme_options.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    text = (REPO / "README.md").read_text()
    assert script.rewritten(text) == text, "run scripts/readme_options.py"
    table = text.partition(script.BEGIN)[2].partition(script.END)[0]
    assert "| `--max-handshakes` | `128` |" in table and "oldest" in table


def test_max_handshakes_help_says_the_oldest_handshake_is_closed():
    from libp2p_introspection.server.config import OPTIONS_BY_NAME

    text = OPTIONS_BY_NAME["max_handshakes"].help
    assert "oldest" in text and "as soon as it is accepted" not in text


def test_queue_bound_help_says_it_also_bounds_replies():
    from libp2p_introspection.server.config import OPTIONS_BY_NAME

    assert "repl" in OPTIONS_BY_NAME["queue_bound"].help
