"""ponder: build reasoning models — data construction, learning to reason, test-time scaling."""

__version__ = "0.1.0"
