"""Instance-level method replacement that can be undone.

The introspector never patches py-libp2p classes globally. It replaces a
method on *one object* by setting an instance attribute that shadows the class
attribute (for example ``raw_conn.read``), and remembers what was there so
:meth:`InstancePatcher.unpatch` / :meth:`InstancePatcher.restore_all` can put
it back exactly: an instance attribute that existed before is restored, one
that did not is deleted so the class's method shows through again.

Patched objects are held by weak reference where possible, so the patcher
does not keep closed connections and streams alive.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

_MISSING = object()


@dataclass
class _Entry:
    """What was replaced on one object: attribute name -> (original, replacement)."""

    ref: Any  # weakref.ref to the object, or the object itself if not weak-referenceable
    weak: bool
    names: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def target(self) -> Any:
        return self.ref() if self.weak else self.ref


class InstancePatcher:
    """Replace attributes on individual objects and restore them later."""

    def __init__(self) -> None:
        self._entries: dict[int, _Entry] = {}

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
        if name not in entry.names:
            original = vars(obj).get(name, _MISSING) if hasattr(obj, "__dict__") else _MISSING
            entry.names[name] = (original, replacement)
        else:
            original, _ = entry.names[name]
            entry.names[name] = (original, replacement)
        setattr(obj, name, replacement)

    def unpatch(self, obj: object) -> None:
        """Restore every attribute this patcher replaced on ``obj``."""
        entry = self._entries.pop(id(obj), None)
        if entry is None or entry.target() is not obj:
            return
        self._restore(obj, entry)

    def restore_all(self) -> None:
        """Restore every patched attribute on every object still alive."""
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            obj = entry.target()
            if obj is not None:
                self._restore(obj, entry)

    def _forget(self, key: int, ref: Any) -> None:
        entry = self._entries.get(key)
        if entry is not None and entry.ref is ref:
            del self._entries[key]

    @staticmethod
    def _restore(obj: object, entry: _Entry) -> None:
        for name, (original, replacement) in entry.names.items():
            try:
                current = vars(obj).get(name, _MISSING)
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
