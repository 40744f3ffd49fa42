"""The README's library example runs as is and serves a real py-libp2p node."""

from __future__ import annotations

import re

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
