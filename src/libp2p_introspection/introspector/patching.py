"""Method replacement on individual objects that can be undone.

The introspector replaces a method on *one object* and remembers what was
there so :meth:`InstancePatcher.unpatch` / :meth:`InstancePatcher.restore_all`
can put it back exactly. It does so in one of two ways:

* :meth:`InstancePatcher.patch` sets an instance attribute that shadows the
  class attribute (for example ``raw_conn.read``); an instance attribute that
  existed before is restored, one that did not is deleted so the class's
  method shows through again. Used for the methods that run on every read and
  write, where the replacement must cost no more than one attribute lookup.
* :meth:`InstancePatcher.hook_through_class` leaves the instance alone and
  installs, once per class and method name, a *dispatcher* on the class: it
  runs the replacement registered for that very object, and the class's own
  function for every other instance (another host's connections, streams of
  a node that is not introspected). Used for lifecycle methods that run
  rarely (``close``, ``reset``, ``set_protocol``, a muxer's stream
  finalizer). An instance attribute that shadows a method keeps CPython from
  specialising the calls of that method, on every object of the class (the
  receiving side's too); the dispatcher keeps the class's layout, at the cost
  of one dict lookup per call of a rare method. It is removed from the class
  again by :meth:`InstancePatcher.restore_all` once no live object uses it.

Neither way asks an object for its ``__dict__`` (:func:`instance_attribute`):
that alone would move every attribute read on the object to CPython's generic
path for the rest of its life.

Patched objects are held by weak reference where possible, so the patcher
does not keep closed connections and streams alive.
"""

from __future__ import annotations

import functools
import inspect
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FunctionType, MethodType
from typing import Any

logger = logging.getLogger(__name__)

_MISSING = object()
#: The ``original`` of an :class:`_Entry` name replaced through its class's dispatcher.
_THROUGH_CLASS = object()


def _defining_class(cls: type, name: str) -> tuple[type, Any] | None:
    """The first class of ``cls``'s MRO whose own namespace holds ``name``, and the
    value it holds there (as stored: a function, not a bound method), or None."""
    for klass in cls.__mro__:
        value = vars(klass).get(name, _MISSING)
        if value is not _MISSING:
            return klass, value
    return None


def instance_attribute(obj: object, name: str, default: Any = None) -> Any:
    """``obj``'s own (instance) attribute ``name``, or ``default`` when the instance
    has none and the name comes from its class; never raises.

    Read without asking for ``obj.__dict__``: CPython 3.11 keeps an object's
    attributes inline until something asks for its ``__dict__`` (``vars(obj)``,
    ``hasattr(obj, "__dict__")``); from then on every attribute read on that
    object leaves the specialised path for the generic one (measured with
    cachegrind on a bulk transfer: ``vars()`` on one connection's objects costs
    the node 1.6% more instructions). Where the class's attribute is a plain
    function, an instance attribute is whatever ``object.__getattribute__`` finds
    that is not that function bound to ``obj``; for any other class attribute (a
    descriptor, a slot) the instance's ``__dict__`` is consulted after all.
    """
    try:
        defined = _defining_class(type(obj), name)
    except Exception:
        return default
    return _own_attribute(obj, name, default, defined)


def _own_attribute(obj: object, name: str, default: Any, defined: tuple[type, Any] | None) -> Any:
    """:func:`instance_attribute`, given ``_defining_class(type(obj), name)``."""
    try:
        class_value = _MISSING if defined is None else defined[1]
        if class_value is not _MISSING and type(class_value) is not FunctionType:
            if type(obj).__dictoffset__ == 0:
                return default
            return vars(obj).get(name, default)
        value = object.__getattribute__(obj, name)
    except Exception:
        return default
    if class_value is _MISSING:
        return value
    if type(value) is MethodType and value.__func__ is class_value and value.__self__ is obj:
        return default
    return value


@dataclass
class _Entry:
    """What was replaced on one object: attribute name -> (original, replacement)."""

    ref: Any  # weakref.ref to the object, or the object itself if not weak-referenceable
    weak: bool
    names: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: name replaced through its class -> (its :class:`_ClassHook`, the replacement it
    #: replaced there, ``_MISSING`` for the class's own method)
    through: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def target(self) -> Any:
        return self.ref() if self.weak else self.ref


class _ClassHook:
    """The dispatcher installed on ``owner.<name>`` and its per-object replacements.

    ``replacements`` maps ``id(obj)`` to ``(weakref to obj, weakref to replacement)``;
    an entry disappears when its object dies. The dispatcher calls ``replacement(*args,
    **kwargs)`` for a registered live object, ``function(self, *args, **kwargs)``
    (the class's own function, found when the dispatcher was installed) otherwise.
    """

    def __init__(self, owner: type, name: str, function: FunctionType) -> None:
        self.owner = owner
        self.name = name
        self.function = function
        self.replacements: dict[int, tuple[weakref.ref[Any], Callable[[], Any]]] = {}
        self.dispatcher = self._dispatcher()

    def _dispatcher(self) -> Callable[..., Any]:
        function = self.function
        replacements = self.replacements
        dispatcher: Callable[..., Any]
        if inspect.iscoroutinefunction(function):

            async def dispatcher(self: Any, *args: Any, **kwargs: Any) -> Any:
                slot = replacements.get(id(self))
                if slot is not None and slot[0]() is self:
                    replacement = slot[1]()
                    if replacement is not None:
                        return await replacement(*args, **kwargs)
                return await function(self, *args, **kwargs)

        else:

            def dispatcher(self: Any, *args: Any, **kwargs: Any) -> Any:
                slot = replacements.get(id(self))
                if slot is not None and slot[0]() is self:
                    replacement = slot[1]()
                    if replacement is not None:
                        return replacement(*args, **kwargs)
                return function(self, *args, **kwargs)

        return functools.wraps(function)(dispatcher)

    def current(self, obj: object) -> Any:
        """The replacement registered for ``obj``, or ``_MISSING``."""
        slot = self.replacements.get(id(obj))
        if slot is None or slot[0]() is not obj:
            return _MISSING
        replacement = slot[1]()
        return _MISSING if replacement is None else replacement

    def register(self, obj: object, replacement: Any) -> None:
        """Dispatch ``obj``'s calls to ``replacement``. Both are held weakly: the
        patcher that registered them owns them (its entry holds the replacement),
        so a patcher dropped without restoring leaks nothing here."""
        key = id(obj)
        replacements = self.replacements

        def forget(ref: weakref.ref[Any]) -> None:
            slot = replacements.get(key)
            if slot is not None and slot[0] is ref:
                del replacements[key]

        try:
            deref: Callable[[], Any] = weakref.ref(replacement)
        except TypeError:  # not weakly referenceable: held by the dispatcher
            deref = lambda: replacement  # noqa: E731
        replacements[key] = (weakref.ref(obj, forget), deref)

    def unregister(self, obj: object) -> None:
        self.replacements.pop(id(obj), None)

    def install(self) -> None:
        setattr(self.owner, self.name, self.dispatcher)

    def uninstall_if_unused(self) -> None:
        """Put the class's own function back once no live object uses the dispatcher."""
        # A slot whose replacement is gone (its patcher restored or was dropped,
        # e.g. patchers restored out of order) dispatches to the class's function:
        # unused too.
        slots = self.replacements.values()
        if any(ref() is not None and deref() is not None for ref, deref in slots):
            return
        self.replacements.clear()
        if _class_hooks.get((self.owner, self.name)) is not self:
            return  # already uninstalled (by another patcher's restore_all)
        try:
            if vars(self.owner).get(self.name) is self.dispatcher:
                setattr(self.owner, self.name, self.function)
                del _class_hooks[(self.owner, self.name)]
            else:
                # Someone replaced the dispatcher on the class (a mock, say): leave
                # theirs, and stay registered so the dispatcher is recognised if
                # they put it back.
                logger.debug("not restoring %s.%s: replaced by someone else", self.owner, self.name)
        except Exception:
            logger.exception("failed to restore %s on %r", self.name, self.owner)


#: (class, name) -> the dispatcher installed there, shared by every patcher.
_class_hooks: dict[tuple[type, str], _ClassHook] = {}


def _class_hook_for(obj: object, name: str) -> _ClassHook | None:
    """The :class:`_ClassHook` that dispatches ``obj.<name>`` (installing it on the
    class that defines the method), or None when ``obj`` cannot be hooked that way:
    the name is set on the instance, the class's attribute is not a plain function
    (a staticmethod, a property, a C method, someone else's descriptor), or the
    object has no ``__dict__`` or cannot be weakly referenced."""
    try:
        if type(obj).__dictoffset__ == 0:
            return None
        defined = _defining_class(type(obj), name)
        if defined is None or _own_attribute(obj, name, _MISSING, defined) is not _MISSING:
            return None
        weakref.ref(obj)
        klass, value = defined
        hook = _class_hooks.get((klass, name))
        if hook is not None and value is hook.dispatcher:
            return hook
        if type(value) is not FunctionType:
            return None
        hook = _ClassHook(klass, name, value)
        hook.install()
        _class_hooks[(klass, name)] = hook
        return hook
    except Exception:  # not weakly referenceable, a class that refuses setattr, ...
        return None


class InstancePatcher:
    """Replace methods of individual objects and restore them later."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}
        #: every dispatcher this patcher registered an object with; removed from its
        #: class by :meth:`restore_all` once no live object uses it (not by
        #: :meth:`unpatch`: one stream's end must not put the class back and forth)
        self._hooks: dict[tuple[type, str], _ClassHook] = {}

    def __len__(self) -> int:
        """Number of objects currently patched."""
        return len(self._entries)

    def is_patched(self, obj: object, name: str) -> bool:
        """Whether ``name`` on ``obj`` is currently replaced by this patcher."""
        entry = self._entries.get(id(obj))
        return entry is not None and entry.target() is obj and name in entry.names

    def patch(self, obj: object, name: str, replacement: Any) -> None:
        """Set ``obj.<name> = replacement``, remembering the previous value.

        Patching the same name twice keeps the first original, so restoring
        always returns to the pre-introspector state.
        """
        entry = self._entry(obj)
        if name in entry.names and entry.names[name][0] is _THROUGH_CLASS:
            # Replaced through the class before: replace it there again.
            self._register(obj, entry, name, replacement)
            return
        if name not in entry.names:
            original = instance_attribute(obj, name, _MISSING)
            entry.names[name] = (original, replacement)
        else:
            original, _ = entry.names[name]
            entry.names[name] = (original, replacement)
        setattr(obj, name, replacement)

    def hook_through_class(
        self, obj: object, name: str, wrap: Callable[[Callable[..., Any]], Any]
    ) -> None:
        """Make ``obj.<name>(...)`` run ``wrap(original)(...)`` without setting an
        attribute on ``obj``: through a dispatcher on its class (see the module's
        docstring). ``original`` is what ``obj.<name>`` did before: the class's
        method bound to ``obj``, or the replacement installed before this one.

        Falls back to :meth:`patch` (an instance attribute) where the class's
        method cannot be dispatched (:func:`_class_hook_for`). Raises what ``wrap``
        raises, and on that fallback what reading ``obj.<name>`` raises (a property
        that raises, a missing name, as with :meth:`patch`); then nothing is changed.
        """
        entry = self._entries.get(id(obj))
        replaced_here = (
            entry is not None and entry.target() is obj and name in entry.names
            and entry.names[name][0] is not _THROUGH_CLASS
        )  # fmt: skip
        hook = None if replaced_here else _class_hook_for(obj, name)
        if hook is None:
            self.patch(obj, name, wrap(getattr(obj, name)))
            return
        current = hook.current(obj)
        original = current if current is not _MISSING else hook.function.__get__(obj, type(obj))
        try:
            replacement = wrap(original)
        except BaseException:
            hook.uninstall_if_unused()  # installed for this object alone: take it back
            raise
        self._register(obj, self._entry(obj), name, replacement, hook)

    def unpatch(self, obj: object) -> None:
        """Restore every attribute this patcher replaced on ``obj``."""
        entry = self._entries.pop(id(obj), None)
        if entry is None or entry.target() is not obj:
            return
        self._restore(obj, entry)

    def restore_all(self) -> None:
        """Restore every patched attribute on every object still alive."""
        self._restore_entries()  # (its own frame: the entries it drops die with it)
        hooks = list(self._hooks.values())
        self._hooks.clear()
        for hook in hooks:
            hook.uninstall_if_unused()

    def _restore_entries(self) -> None:
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            obj = entry.target()
            if obj is not None:
                self._restore(obj, entry)

    def _entry(self, obj: object) -> _Entry:
        key = id(obj)
        entry = self._entries.get(key)
        if entry is not None and entry.target() is not obj:
            # A dead object's id was reused; forget the stale entry.
            entry = None
            self._entries.pop(key, None)
        if entry is None:
            try:
                ref: Any = weakref.ref(obj, lambda _r, k=key: self._forget(k, _r))
                weak = True
            except TypeError:
                ref, weak = obj, False
            entry = _Entry(ref=ref, weak=weak)
            self._entries[key] = entry
        return entry

    def _register(
        self,
        obj: object,
        entry: _Entry,
        name: str,
        replacement: Any,
        hook: _ClassHook | None = None,
    ) -> None:
        hook = hook or _class_hook_for(obj, name)
        if hook is None:  # the class's method was replaced since: shadow it on the instance
            entry.through.pop(name, None)
            entry.names[name] = (_MISSING, replacement)
            setattr(obj, name, replacement)
            return
        if name not in entry.names:
            entry.through[name] = (hook, hook.current(obj))
        entry.names[name] = (_THROUGH_CLASS, replacement)
        hook.register(obj, replacement)
        self._hooks[(hook.owner, hook.name)] = hook

    def _forget(self, key: int, ref: Any) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.ref is ref:
            del self._entries[key]

    @staticmethod
    def _restore(obj: object, entry: _Entry) -> None:
        for name, (original, replacement) in entry.names.items():
            try:
                if original is _THROUGH_CLASS:
                    _restore_through_class(obj, name, replacement, entry.through[name])
                    continue
                current = instance_attribute(obj, name, _MISSING)
                if current is not replacement:
                    # Someone replaced our replacement; leave theirs in place.
                    logger.debug("not restoring %s.%s: replaced by someone else", obj, name)
                    continue
                if original is _MISSING:
                    delattr(obj, name)
                else:
                    setattr(obj, name, original)
            except Exception:
                logger.exception("failed to restore %s on %r", name, obj)


def _restore_through_class(obj: object, name: str, replacement: Any, through: Any) -> None:
    hook, previous = through
    current = hook.current(obj)
    if current is _MISSING:
        return  # its dispatcher was removed from the class already
    if current is not replacement:
        logger.debug("not restoring %s.%s: replaced by someone else", obj, name)
    elif previous is _MISSING:
        hook.unregister(obj)
    else:
        hook.register(obj, previous)
