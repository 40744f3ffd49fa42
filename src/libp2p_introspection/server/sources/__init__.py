"""Sources the server can serve besides a live host: a recording replayed, a synthetic node."""

from libp2p_introspection.server.sources.synthetic import SyntheticOptions as SyntheticOptions
from libp2p_introspection.server.sources.synthetic import SyntheticSource as SyntheticSource
