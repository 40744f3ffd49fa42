"""Sources the server can serve besides a live host.

- :mod:`.replay`: a recording served as a live node (``ReplaySource``).
- :mod:`.synthetic`: a simulated node for load tests (``SyntheticSource``,
  ``SyntheticOptions``).

Import them from their modules. Neither loads py-libp2p: the synthetic node
shares the event vocabulary of :mod:`libp2p_introspection.protocol.events`
with the introspector, not the introspector itself.
"""
