"""Run the CLI (``python tests/no_libp2p_cli.py serve ...``) with py-libp2p made unimportable.

Any import of ``libp2p`` or ``libp2p.*``, eager or lazy (at the first snapshot, the
first client), raises ImportError naming the module; at exit the process prints
``libp2p modules loaded: N`` to stderr, N from ``sys.modules``.
"""

from __future__ import annotations

import atexit
import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType


def _is_libp2p(name: str) -> bool:
    return name == "libp2p" or name.startswith("libp2p.")


class _NoLibp2p(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if _is_libp2p(fullname):
            raise ImportError(f"blocked import of py-libp2p module {fullname!r}")
        return None


def _report() -> None:
    loaded = [name for name in sys.modules if _is_libp2p(name)]
    print(f"libp2p modules loaded: {len(loaded)} {loaded[:5]}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.meta_path.insert(0, _NoLibp2p())
    atexit.register(_report)
    from libp2p_introspection.cli import main

    sys.argv[0] = "libp2p-introspection"
    main()
