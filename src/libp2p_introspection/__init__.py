"""libp2p-introspection: introspection data streaming for py-libp2p nodes."""

__version__ = "0.1.0"
