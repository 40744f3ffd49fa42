"""Sources the server can serve besides a live host: a recording replayed, a synthetic node."""
