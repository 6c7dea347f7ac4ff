"""The ``trainatlas`` command: the same answers as the MCP tools, in a terminal or as JSON.

``parser`` declares the commands, ``commands`` runs them, ``rendering`` draws what they print."""

from trainatlas.cli.commands import main

__all__ = ["main"]
