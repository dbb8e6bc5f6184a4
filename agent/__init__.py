"""giamsat agent core: configuration, site inventory, scheduling, result store and lifecycle."""

__version__ = "0.1.0"
