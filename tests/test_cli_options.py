"""The server's options are defined once: the CLI, ServerConfig, attach_introspection and
SessionLimits take the same defaults and refuse the same values."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from libp2p_introspection.attach import attach_introspection
from libp2p_introspection.cli import main
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.limits import SESSION_OPTIONS, OptionError, SessionLimits
from libp2p_introspection.server import ServerConfig
from libp2p_introspection.server.config import OPTIONS_BY_NAME, SERVER_OPTIONS

CLI = [sys.executable, "-m", "libp2p_introspection"]
FLAGGED = [option for option in SERVER_OPTIONS if option.cli_flag]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), terminal_width=80)


def _param(command: str, name: str) -> click.Parameter:
    return next(p for p in main.commands[command].params if p.name == name)


def test_every_server_option_is_a_field_of_server_config_and_back():
    fields = {f.name for f in dataclasses.fields(ServerConfig)} - {"limits"}
    assert fields == set(OPTIONS_BY_NAME)
    limit_fields = {f.name for f in dataclasses.fields(SessionLimits)}
    assert {option.limit for option in SESSION_OPTIONS} == limit_fields
    defaults = ServerConfig()
    for option in SERVER_OPTIONS:
        assert getattr(defaults, option.name) == option.default, option.name
    for option in SESSION_OPTIONS:
        assert getattr(SessionLimits(), option.limit) == option.default, option.name
        assert getattr(defaults.limits, option.limit) == option.default, option.name


@pytest.mark.parametrize("command", ["serve", "demo"])
@pytest.mark.parametrize("option", FLAGGED, ids=lambda o: o.name)
def test_every_server_option_is_in_the_cli_with_its_default_and_help(command, option):
    param = _param(command, option.name)
    assert param.opts == [option.cli_flag]
    assert param.help == option.help
    ctx = click.Context(main.commands[command])
    default = param.get_default(ctx)
    if option.kind is tuple:  # what click passes when the option is not given
        assert param.multiple and tuple(param.type_cast_value(ctx, None) or ()) == option.default
    elif option.kind is bool:
        assert param.is_flag and default is option.default is False
    else:
        assert default == option.default
    if option.unit in ("ms", "bytes"):
        assert option.unit in option.help
    if option.unit == "s":
        assert "seconds" in option.help.lower()
    result = invoke(command, "--help")
    assert option.cli_flag in result.output


def _below(option) -> int | float:
    """A value of the option's kind just outside its lower bound."""
    if option.above:
        return option.minimum
    return option.minimum - 1 if option.kind is int else option.minimum / 2 - 0.01


NUMBERS = [o for o in FLAGGED if o.kind in (int, float) and o.minimum is not None]


@pytest.mark.parametrize("option", NUMBERS, ids=lambda o: o.name)
def test_a_value_below_an_options_bound_is_refused_by_the_cli_and_by_server_config(option):
    bad = _below(option)
    with pytest.raises(ValueError, match=option.name):
        ServerConfig(**{option.name: bad})
    result = invoke("serve", "--source", "mock", option.cli_flag, str(bad))
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option.cli_flag}'" in result.output


def test_a_port_above_65535_is_refused_by_both():
    with pytest.raises(ValueError, match="port must be at most 65535"):
        ServerConfig(port=65_536)
    assert invoke("serve", "--source", "mock", "--port", "65536").exit_code == 2


def test_not_a_number_is_refused_by_both():
    with pytest.raises(ValueError, match="write_timeout_s"):
        ServerConfig(write_timeout_s=math.nan)
    result = invoke("serve", "--source", "mock", "--write-timeout", "nan")
    assert result.exit_code == 2 and "--write-timeout must be at least 0.1, got nan" in result.output


async def test_a_retention_below_the_interval_is_refused_by_server_config_and_attach():
    with pytest.raises(OptionError) as raised:
        ServerConfig(interval_ms=2_000, max_retention_ms=1_000)
    assert str(raised.value) == "max_retention_ms (1000 ms) must be at least interval_ms (2000 ms)"
    with pytest.raises(ValueError, match="must be at least interval_ms"):
        async with attach_introspection(object(), port=0, max_retention_ms=500):
            raise AssertionError("attach must refuse before it touches the host")
    with pytest.raises(ValueError, match="must be at least base_interval_ms"):
        SessionLimits(base_interval_ms=2_000, max_retention_ms=1_000)


def test_a_retention_below_the_interval_is_a_usage_error_naming_the_flags():
    # A subprocess, bounded: a CLI that took the values would serve for ever.
    result = subprocess.run(
        [*CLI, "serve", "--source", "mock", "--port", "0", "--interval-ms", "2000",
         "--max-retention-ms", "1000"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "--max-retention-ms (1000 ms) must be at least --interval-ms (2000 ms)" in result.stderr
    assert "max_retention_ms" not in result.stderr and "Traceback" not in result.stderr


def test_a_source_declared_interval_raises_the_retention_as_section_4_10_says():
    config = ServerConfig(max_retention_ms=1_000).for_source(5_000)
    assert (config.interval_ms, config.max_retention_ms) == (5_000, 5_000)
    assert config.limits.base_interval_ms == config.limits.max_retention_ms == 5_000
    fast = ServerConfig().for_source(3)  # a replay at a high speed: §4.10's max(1, ...)
    assert fast.limits.base_interval_ms == 3


def test_an_origin_or_token_the_cli_refuses_server_config_refuses_too():
    with pytest.raises(ValueError, match="is not an origin"):
        ServerConfig(allowed_origins=("http://evil.com\\@127.0.0.1",))
    with pytest.raises(ValueError, match="control characters"):
        ServerConfig(token="a\nX-Injected: 1")
    result = invoke("serve", "--source", "mock", "--token", "a\nX-Injected: 1")
    assert result.exit_code == 2 and "control characters" in result.output
    assert "X-Injected" not in result.output


def test_the_demo_flags_take_their_defaults_from_demo_options():
    from libp2p_introspection.demo.options import DemoOptions

    for command in ("serve", "demo"):
        assert _param(command, "nodes").default == DemoOptions.nodes
        assert _param(command, "seed").default == DemoOptions.seed
        assert _param(command, "nodes").type.min == DemoOptions.MIN_NODES
    assert invoke("demo", "--nodes", str(DemoOptions.MIN_NODES - 1)).exit_code == 2


def test_the_cli_loads_without_py_libp2p():
    code = (
        "import sys, libp2p_introspection.cli; "
        "print(sorted(m for m in sys.modules if m == 'libp2p' or m.startswith('libp2p.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)  # fmt: skip
    assert result.stdout.strip() == "[]"


def test_the_mock_flags_take_the_synthetic_nodes_defaults():
    from libp2p_introspection.server.sources.synthetic import SyntheticOptions
    from libp2p_introspection.server.sources.synthetic.options import SHAPE_OPTIONS

    for option in SHAPE_OPTIONS:
        name = option.name
        assert getattr(SyntheticOptions, name) == option.default == _param("serve", name).default
        assert _param("serve", name).help == f"Mock: {option.help}"


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--pubsub-topics", "5000"),
        ("--pubsub-topics", "-1"),
        ("--events-per-second", "inf"),
        ("--events-per-second", "nan"),
        ("--churn", "1.5"),
        ("--dht-peers", "6000"),
        ("--connections", "-1"),
    ],
)
def test_a_mock_flag_out_of_range_is_a_usage_error_naming_the_flag(flag, value):
    """The synthetic node's ranges are the flags' own: ``--pubsub-topics 5000`` used to
    pass click and fail later as "SyntheticOptions.pubsub_topics must be <= 1000"."""
    result = invoke("serve", "--source", "mock", flag, value)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{flag}'" in result.output
    assert "SyntheticOptions" not in result.output


def test_every_synthetic_option_is_a_mock_flag_or_set_elsewhere():
    """A shape of the synthetic node a user can ask for has its ``serve --source mock``
    flag (issue 12: ``--pubsub-topics`` was missing, so the node "at scale, pubsub on 50
    topics" could not be served from the CLI)."""
    from libp2p_introspection.server.sources.synthetic import SyntheticOptions
    from libp2p_introspection.server.sources.synthetic.options import SHAPE_OPTIONS

    elsewhere = {
        "seed",  # --seed, shared with the demo
        "closed_connection_lifetime_ms",  # the server option of that name
        "clock_ms",  # the API's (a fake clock in tests)
        "max_stream_events_per_snapshot",  # the API's: sampling bounds
        "max_subscription_events_per_snapshot",
    }
    flagged = {option.name for option in SHAPE_OPTIONS}
    assert flagged <= {p.name for p in main.commands["serve"].params}
    assert flagged.isdisjoint(elsewhere)
    assert flagged | elsewhere == {f.name for f in dataclasses.fields(SyntheticOptions)}


def test_the_mock_flags_shape_the_node_served():
    from libp2p_introspection.server.sources import factory

    def opened(*flags: str):
        context = main.commands["serve"].make_context("serve", ["--source", "mock", *flags])
        return factory.open_mock(ServerConfig(), context.params)

    source, what = opened(
        "--connections", "30", "--pubsub-topics", "50", "--no-resource-manager", "--seed", "3"
    )
    state = source.state()
    assert sum(c.status == pb.ACTIVE for c in state.subsystems.connections) == 30
    assert len(state.subsystems.pubsub.topics) == 50
    assert not state.subsystems.HasField("resources")
    assert what == "a synthetic node (30 connections x 4 streams, gossipsub on 50 topics; seed 3)"
    source, what = opened("--connections", "5", "--pubsub-topics", "0", "--seed", "0")
    state = source.state()
    assert not state.subsystems.HasField("pubsub") and state.subsystems.HasField("resources")
    assert what == "a synthetic node (5 connections x 4 streams; seed 0)"
    with pytest.raises(click.BadParameter, match=r"1001 is not in the range 0<=x<=1000"):
        opened("--pubsub-topics", "1001")
    assert invoke("serve", "--source", "mock", "--pubsub-topics", "-1").exit_code == 2


def test_two_mocks_without_a_seed_are_two_nodes_and_say_their_seed():
    """``serve --source mock &`` twice (README, "Many nodes"): two different peer ids, each
    run's log naming its seed; ``--seed N`` gives that node again, byte for byte."""
    import re

    from libp2p_introspection.server.sources import factory

    def opened(*flags: str):
        context = main.commands["serve"].make_context("serve", ["--source", "mock", *flags])
        source, what = factory.open_mock(ServerConfig(), context.params)
        return source.runtime().peer_id, what

    (first, first_what), (second, second_what) = opened(), opened()
    assert first != second
    seed = re.fullmatch(r"a synthetic node \(.*; seed (\d+)\)", first_what)
    assert seed is not None and re.search(r"; seed \d+\)$", second_what)
    again, again_what = opened("--seed", seed.group(1))
    assert again == first and again_what == first_what
    assert opened("--seed", "5")[0] == opened("--seed", "5")[0]


def test_client_flag_defaults_are_their_components_own():
    """``dashboard --retention-ms`` and ``record --idle-timeout`` default to the store's and
    the recorder's one definition (a drift guard: they were restated as literals)."""
    from libp2p_introspection.client import recorder
    from libp2p_introspection.dashboard import store
    from libp2p_introspection.server.config import OPTIONS_BY_NAME

    assert _param("dashboard", "retention_ms").default == store.DEFAULT_RETENTION_MS
    assert OPTIONS_BY_NAME["max_retention_ms"].default == store.DEFAULT_RETENTION_MS
    assert _param("record", "idle_timeout").default == recorder.IDLE_TIMEOUT_S
