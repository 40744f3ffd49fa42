"""``python -m libp2p_introspection.cli``: the same CLI as ``libp2p-introspect``."""

from libp2p_introspection.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
