"""The README's library example runs as is and serves a real py-libp2p node."""

from __future__ import annotations

import re
import signal

import trio
from cli_process import running
from conftest import REPO

from libp2p_introspection.client import connect


def _example() -> str:
    text = (REPO / "README.md").read_text()
    match = re.search(
        r"<!-- readme-example: start -->\s*```python\n(.*?)```\s*<!-- readme-example: end -->",
        text,
        re.S,
    )
    assert match, "README lost its marked library example"
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


def test_readme_example_ends_cleanly_on_ctrl_c(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(_example())
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
