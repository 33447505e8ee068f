"""The async shell: composition root, main loop, CLI."""

__version__ = "0.1.0"
