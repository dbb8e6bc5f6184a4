"""The agent's version, in the kernel so every package can name it without importing the application."""

__version__ = "0.1.0"
