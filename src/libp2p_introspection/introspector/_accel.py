"""Whether the introspector's C accelerator (``_snapcode.c``) is used, and the module.

It is built by ``setup.py`` where a C compiler is found; without it (or with the
environment variable ``LIBP2P_INTROSPECTION_PURE_PYTHON`` set to a non-empty value
other than ``0``, read once at import) the introspector runs its pure-Python code,
which gives the same snapshots byte for byte.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["PURE_PYTHON_ENV", "snapcode"]

#: The environment variable that turns the C accelerator off (tests, debugging).
PURE_PYTHON_ENV = "LIBP2P_INTROSPECTION_PURE_PYTHON"


def _load() -> Any:
    if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
        return None
    try:
        from libp2p_introspection.introspector import _snapcode  # type: ignore[attr-defined]
    except ImportError:  # built without a C compiler
        return None
    return _snapcode


#: The C module (``None``: not built, or turned off by :data:`PURE_PYTHON_ENV`).
snapcode: Any = _load()
