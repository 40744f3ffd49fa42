"""libp2p-introspection: introspection data streaming for py-libp2p nodes.

The library entry point is :func:`attach_introspection` (import it from
:mod:`libp2p_introspection.attach`; importing it here would load py-libp2p
for every user of the protocol modules).
"""

__version__ = "0.1.0"
