"""The CLI's options: the server's derived from their one definition, and the others.

:func:`server_options` makes one click option per entry of
:data:`~libp2p_introspection.server.config.SERVER_OPTIONS` that has a flag:
its default, help text and the values it accepts (a click range from the
option's bounds, then the option's own check) come from the definition, and
:func:`server_config` builds the ``ServerConfig`` from what was given, turning a
refused combination (a max retention below the interval, a non-loopback host
without ``--allow-remote``) into a usage error that names the flags.
"""

from __future__ import annotations

import inspect as pyinspect
import math
from collections.abc import Callable
from typing import Any

import click

from libp2p_introspection import config as defaults
from libp2p_introspection.protocol.admission import is_loopback
from libp2p_introspection.protocol.limits import Option, OptionError
from libp2p_introspection.server.config import OPTIONS_BY_NAME, SERVER_OPTIONS, ServerConfig

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def _click_type(option: Option) -> click.ParamType | None:
    """The click type of a number option: a range from its bounds."""
    if option.kind is int:
        low = None if option.minimum is None else int(option.minimum)
        high = None if option.maximum is None else int(option.maximum)
        return click.IntRange(low, high, min_open=option.above)
    if option.kind is float:
        return click.FloatRange(option.minimum, option.maximum, min_open=option.above)
    return None


def _checked_by(option: Option) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A click callback refusing what ``option`` refuses (beyond click's range: a NaN,
    the option's own check), as a usage error naming the flag."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        reason = option.refusal(value)
        if reason is not None:
            raise click.BadParameter(reason.removeprefix("{0}: ").format(option.cli_flag))
        return value

    return callback


def cli_option(option: Option) -> Decorator:
    """The click option of a server option (its value under the option's name)."""
    settings: dict[str, Any] = {"help": option.help, "callback": _checked_by(option)}
    if option.kind is bool:
        settings["is_flag"] = True
        if "/" in option.cli_flag:  # --x/--no-x: either way, the default shown
            settings.update(default=option.default, show_default=True)
    elif option.kind is tuple:
        settings.update(multiple=True, metavar=option.metavar or None)
    else:
        settings.update(default=option.default, type=_click_type(option))
        settings["show_default"] = option.default is not None
        if option.metavar:
            settings["metavar"] = option.metavar
    if option.envvar:
        settings.update(envvar=option.envvar, show_envvar=True)
    return click.option(option.cli_flag, option.name, **settings)


def server_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The server options every serving command shares."""
    for option in reversed(SERVER_OPTIONS):
        if option.cli_flag:
            func = cli_option(option)(func)
    return func


def spell_flag(name: str) -> str:
    """How the CLI names the server option ``name``: its flag."""
    return OPTIONS_BY_NAME[name].cli_flag


def server_config(kw: dict[str, Any]) -> ServerConfig:
    """The ``ServerConfig`` of a command's server options; a usage error naming the
    flags for a refused combination, and a warning naming what is exposed when the
    host is not a loopback address."""
    given = {o.name: kw[o.name] for o in SERVER_OPTIONS if o.cli_flag}
    given["allowed_origins"] = tuple(given["allowed_origins"])
    given["token"] = given["token"] or None
    try:
        config = ServerConfig(**given)
    except OptionError as exc:
        raise click.UsageError(exc.spelled(spell_flag)) from None
    if not is_loopback(config.host):
        click.echo(
            f"WARNING: serving introspection on {config.host}, beyond this machine: whoever "
            "reaches the port sees this node's peer ids, their IP addresses, every stream's "
            "protocol, traffic volumes and DHT routing table"
            + ("" if config.token else ", and no --token is set")
            + ". See SECURITY.md.",
            err=True,
        )
    return config


def demo_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The demo network's own flags (:class:`~libp2p_introspection.demo.DemoOptions`),
    apart from the server's; ``--seed`` also seeds the mock source."""
    from libp2p_introspection.demo.options import DemoOptions

    options = [
        click.option("--nodes", default=DemoOptions.nodes, show_default=True,
                     type=click.IntRange(min=DemoOptions.MIN_NODES),
                     help="Demo source: number of py-libp2p nodes."),
        click.option("--no-churn", is_flag=True,
                     help="Demo source: nodes never leave and rejoin (they do by default)."),
        click.option("--seed", default=DemoOptions.seed, type=int,
                     help="Demo and mock sources: seed for their random choices "
                     "(default: a fresh one each run, logged at start)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def verbose_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """``-v``/``-vv``: more log output."""
    return click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")(
        func
    )


def dashboard_port_option(flag: str, help: str) -> Decorator:
    """A dashboard page's port; ``None`` when not given: 8846, or the first free one of
    8870-8889 (PROTOCOL.md §6)."""
    from libp2p_introspection.protocol.discovery import DASHBOARD_PORTS

    return click.option(flag, default=None, type=click.IntRange(0, 65535),
                        help=f"{help} Default: {DASHBOARD_PORTS.describe()}, the first "
                             "free one.")  # fmt: skip


def limit_options(what: str) -> Decorator:
    """``--max-connections`` and ``--max-streams``: the cap on what one snapshot of
    ``what`` may hold before it is skipped with a notice (protocol/wire.py)."""
    from libp2p_introspection.protocol.wire import MAX_CONNECTIONS, MAX_STREAMS

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--max-streams", default=MAX_STREAMS, show_default=True, type=click.IntRange(min=1),
            help=f"{what}: skip, with a notice, a snapshot holding more streams than this.",
        )(func)  # fmt: skip
        return click.option(
            "--max-connections", default=MAX_CONNECTIONS, show_default=True,
            type=click.IntRange(min=1),
            help=f"{what}: skip, with a notice, a snapshot holding more connections than this.",
        )(func)  # fmt: skip

    return decorate


def record_limits(kw: dict[str, Any]) -> Any:
    """The ``RecordLimits`` of ``--max-connections`` and ``--max-streams``."""
    from libp2p_introspection.protocol.wire import RecordLimits

    return RecordLimits(max_connections=kw["max_connections"], max_streams=kw["max_streams"])


def check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A client's URL argument, normalized (``None``: not given); a usage error that
    never quotes its token."""
    if value is None:
        return None
    try:
        return defaults.normalize_url(value)
    except ValueError as exc:  # the message quotes the URL: never its token
        raise click.BadParameter(defaults.redact(str(exc), defaults.token_secrets(value))) from None


def check_token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A client's ``--token``, if it can be sent in an HTTP header."""
    try:
        return defaults.check_token(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def check_finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A number of seconds that is not infinite."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number of seconds")
    return value


def client_token_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """A client command's ``--token`` (also from the environment)."""
    return click.option("--token", envvar=defaults.TOKEN_ENV, default=None, show_envvar=True,
                        callback=check_token,
                        help="The server's shared token, if it requires one.")(func)  # fmt: skip


def default_url_in_help(func: Callable[..., Any]) -> Callable[..., Any]:
    """Say in a client command's ``--help`` which server it reaches without a URL."""
    func.__doc__ = (
        pyinspect.cleandoc(func.__doc__ or "")
        + f"\n\nURL defaults to {defaults.default_url()} (HOST:PORT works too)."
    )
    return func


def discovered_url_in_help(func: Callable[..., Any]) -> Callable[..., Any]:
    """Say in a client command's ``--help`` which server it reaches without a URL
    (the registry's, PROTOCOL.md §6)."""
    func.__doc__ = (
        pyinspect.cleandoc(func.__doc__ or "")
        + "\n\nWithout a URL: the server registered on this machine (`libp2p-introspect "
        "nodes` lists them; with several, you are asked which on a terminal); with none, "
        f"URL defaults to {defaults.default_url()}. HOST:PORT works too. --token goes to "
        "that one server only."
    )
    return func


def _shown_default(option: Option) -> str:
    """An option's default as the README's table shows it."""
    value = option.default
    if option.kind is bool:
        return "on" if value else "off"
    if value is None or value == ():
        return "unset"
    if option.kind is float:
        return f"`{value:g}`"
    return f"`{value}`"


def options_table(options: tuple[Option, ...] = SERVER_OPTIONS) -> str:
    """The Markdown table (flag, default, help) of the ``options`` that have a flag:
    what the README shows for ``demo`` and ``serve``, rendered from their definition
    (``scripts/readme_options.py`` writes it there; a test checks it is up to date)."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for option in options:
        if not option.cli_flag:
            continue
        flag = f"`{option.cli_flag}`"
        if option.metavar:
            flag = f"`{option.cli_flag} {option.metavar}`"
        if option.envvar:
            flag += f" / `{option.envvar}`"
        text = option.help.replace("|", "\\|")
        rows.append(f"| {flag} | {_shown_default(option)} | {text} |")
    return "\n".join(rows) + "\n"
