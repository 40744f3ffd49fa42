"""Sources the server can serve besides a live host.

- :mod:`.replay`: a recording served as a live node (``ReplaySource``).
- :mod:`.synthetic`: a simulated node for load tests (``SyntheticSource``,
  ``SyntheticOptions``).

Import them from their modules: the synthetic node shares the introspector's
event types and so loads py-libp2p, which a replay does not need.
"""
