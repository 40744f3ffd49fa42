"""The session options, defined once, and :class:`SessionLimits`, built from them.

An :class:`Option` holds everything about one server option: its name (the
field of ``ServerConfig`` and keyword of ``attach_introspection``), type,
default, unit, help text and the values it accepts. Everything else is derived
from it: the ``SessionLimits`` and ``ServerConfig`` defaults and checks
(:func:`check_options`), and the CLI's flags, defaults, help and validation
(``libp2p_introspection.cli.options``). The options that govern a session
(PROTOCOL.md §4) are here, with the session; the server's own are in
``libp2p_introspection.server.config``.

A refused value raises :class:`OptionError` (a ``ValueError``) that names the
options involved, spelled for whoever set them: field names for the API,
``--flags`` for the CLI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.config import DEFAULT_MAX_RETENTION_MS
from libp2p_introspection.protocol.framing import MAX_COMMAND_SIZE


class OptionError(ValueError):
    """A value, or a combination of values, of server options that is refused.

    ``template`` is the message with ``{0}``, ``{1}``, ... where the names of
    ``names`` (option names) go; ``spell`` turns a name into the way the reader
    set it (the field name by default; ``--flag`` for the CLI: :meth:`spelled`).
    """

    def __init__(
        self, template: str, *names: str, spell: Callable[[str], str] | None = None
    ) -> None:
        self.template = template
        self.names = names
        self.spell = spell or (lambda name: name)
        super().__init__(self.spelled(self.spell))

    def spelled(self, spell: Callable[[str], str]) -> str:
        """The message with each option named by ``spell(name)``."""
        return self.template.format(*(spell(name) for name in self.names))

    def respelled(self, spell: Callable[[str], str]) -> OptionError:
        """The same error, naming the options by ``spell``."""
        return OptionError(self.template, *self.names, spell=spell)


@dataclass(frozen=True)
class Option:
    """One server option: what a user may set, and what values it takes.

    ``kind`` is ``int``, ``float``, ``bool``, ``str`` (for a ``str`` or a number,
    ``default`` ``None`` means unset, and ``None`` is accepted) or ``tuple`` (of
    ``str``, repeatable on the CLI). ``unit`` names the
    unit of a number (``ms``, ``s``, ``bytes``, ...; ``""`` for none); ``help``
    is the sentence ``--help`` shows. A number must be at least ``minimum``
    (above it if ``above``) and at most ``maximum``; ``check`` returns why a
    value is refused beyond that (``None``: accepted). ``flag`` is the CLI flag
    (``--`` and the name with ``_`` as ``-``, without an ``_s`` unit suffix, if
    not given; ``""``: the option has no flag, it is set through the API only).
    ``limit`` names the :class:`SessionLimits` field it sets, if any; ``envvar``
    an environment variable the CLI reads it from; ``metavar`` how ``--help``
    names its value.
    """

    name: str
    kind: type
    default: Any
    unit: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    check: Callable[[Any], str | None] | None = None
    flag: str | None = None
    limit: str = ""
    envvar: str = ""
    metavar: str = ""

    @property
    def cli_flag(self) -> str:
        """The CLI flag (``--interval-ms``), or ``""`` if the option has none."""
        if self.flag is not None:
            return self.flag
        name = self.name.removesuffix("_s")
        return "--" + name.replace("_", "-")

    def refusal(self, value: Any) -> str | None:
        """Why ``value`` is refused, with ``{0}`` for the option's name; ``None`` if accepted.

        ``None`` is accepted for an option whose default is ``None`` (unset)."""
        if value is None and self.default is None and self.kind is not bool:
            return None
        if self.kind is int or self.kind is float:
            number = self.kind is float and isinstance(value, int | float)
            if isinstance(value, bool) or not (isinstance(value, int) or number):
                what = "a whole number" if self.kind is int else "a number"
                return f"{{0}} must be {what}, got {value!r}"
            low, high = self.minimum, self.maximum
            if low is not None and not (value > low if self.above else value >= low):
                bound = "above" if self.above else "at least"
                return f"{{0}} must be {bound} {low:g}, got {value!r}"
            if high is not None and not value <= high:
                return f"{{0}} must be at most {high:g}, got {value!r}"
            if isinstance(value, float) and math.isnan(value):
                return "{0} must be a number, got nan"
        elif self.kind is bool and not isinstance(value, bool):
            return f"{{0}} must be True or False, got {value!r}"
        elif self.kind is str and not (value is None or isinstance(value, str)):
            return f"{{0}} must be a string or None, got {value!r}"
        elif self.kind is tuple and not (
            isinstance(value, tuple) and all(isinstance(item, str) for item in value)
        ):
            return f"{{0}} must be a tuple of strings, got {value!r}"
        if self.check is not None:
            reason = self.check(value)
            if reason is not None:
                return "{0}: " + reason.replace("{", "{{").replace("}", "}}")
        return None


#: Rules between options: each takes the values by option name and raises
#: :class:`OptionError` naming the options it compares.
Relation = Callable[[Mapping[str, Any]], None]


def check_options(
    options: Iterable[Option],
    values: Mapping[str, Any],
    relations: Iterable[Relation] = (),
    spell: Callable[[str], str] | None = None,
) -> None:
    """Check ``values`` (by option name) against each of ``options`` and ``relations``.

    Raises :class:`OptionError` for the first refused value, naming options by
    ``spell`` (their names by default).
    """
    for option in options:
        reason = option.refusal(values[option.name])
        if reason is not None:
            raise OptionError(reason, option.name, spell=spell)
    for relation in relations:
        try:
            relation(values)
        except OptionError as error:
            raise error.respelled(spell or (lambda name: name)) from None


def _retention_covers_interval(values: Mapping[str, Any]) -> None:
    """§4.7: retention is clamped to [base interval, max retention], so the range
    must not be empty."""
    retention, interval = values["max_retention_ms"], values["interval_ms"]
    if retention < interval:
        raise OptionError(
            f"{{0}} ({retention} ms) must be at least {{1}} ({interval} ms)",
            "max_retention_ms", "interval_ms",
        )  # fmt: skip


def _session_option(*args: Any, limit: str = "", **kw: Any) -> Option:
    """An option that sets the :class:`SessionLimits` field ``limit`` (default: its name)."""
    return Option(*args, limit=limit or args[0], **kw)


#: The options that govern every session (PROTOCOL.md §4), in ``--help`` order.
SESSION_OPTIONS: tuple[Option, ...] = (
    _session_option("interval_ms", int, 1_000, "ms",
           "Base snapshot interval, ms (PROTOCOL.md §4.1).", minimum=1, limit="base_interval_ms"),
    _session_option("max_retention_ms", int, DEFAULT_MAX_RETENTION_MS, "ms",
           "Upper clamp of a client's retention_period_ms, ms.", minimum=1),
    _session_option("push_byte_budget", int, 32 * 1024 * 1024, "bytes",
           "Per-session pause buffer budget, bytes.", minimum=1),
    _session_option("push_item_budget", int, 262_144, "items",
           "Per-session pause buffer limit, events and snapshots.", minimum=1),
    _session_option("queue_bound", int, 256, "messages",
           "Per-session outgoing queue bound, messages: push data past it is dropped, and "
           "a client's commands wait while its replies exceed it.", minimum=1),
    _session_option("write_timeout_s", float, 10.0, "s",
           "Disconnect (1008) a client that reads nothing this long, seconds.", minimum=0.1),
    _session_option("commands_per_second", float, 50.0, "commands/s",
           "Sustained commands per session per second (then ERR).", minimum=0, above=True),
    _session_option("command_burst", int, 100, "commands",
           "Commands a session may send in one burst.", minimum=1),
    _session_option("max_command_size", int, MAX_COMMAND_SIZE, "bytes",
           "The largest command accepted (bigger ones close the session with 1009), bytes.",
           minimum=1, flag=""),
)  # fmt: skip

#: Rules between session options.
SESSION_RELATIONS: tuple[Relation, ...] = (_retention_covers_interval,)

_SESSION = {option.name: option for option in SESSION_OPTIONS}


def _default(name: str) -> Any:
    return _SESSION[name].default


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The session options in force for every session (defined in :data:`SESSION_OPTIONS`).

    ``base_interval_ms`` is the server's snapshot interval, ms (``interval_ms``;
    a replay declares its own, §4.10); ``max_retention_ms`` the upper clamp of
    ``retention_period_ms``, ms, at least the base interval;
    ``push_byte_budget`` the pause buffer's size limit, bytes;
    ``push_item_budget`` its limit in items (events and snapshots), however small;
    ``queue_bound`` the outgoing queue's bound, messages (push data past it is
    dropped; commands are not read while replies exceed it);
    ``write_timeout_s`` how long a client may read nothing, seconds;
    ``max_command_size`` the largest command accepted, bytes;
    ``commands_per_second`` and ``command_burst`` the token bucket that limits
    commands (past it a command gets ``ERR``; a session that keeps sending
    through a burst's worth of refusals is closed with 1008).
    Raises :class:`OptionError` for a value its option refuses.
    """

    base_interval_ms: int = _default("interval_ms")
    max_retention_ms: int = _default("max_retention_ms")
    push_byte_budget: int = _default("push_byte_budget")
    push_item_budget: int = _default("push_item_budget")
    queue_bound: int = _default("queue_bound")
    write_timeout_s: float = _default("write_timeout_s")
    max_command_size: int = _default("max_command_size")
    commands_per_second: float = _default("commands_per_second")
    command_burst: int = _default("command_burst")

    def __post_init__(self) -> None:
        check_options(
            SESSION_OPTIONS,
            {option.name: getattr(self, option.limit) for option in SESSION_OPTIONS},
            SESSION_RELATIONS,
            spell=lambda name: _SESSION[name].limit,
        )
