"""The trainatlas MCP server: tools, resources, prompts and subscriptions over a runs root."""

from trainatlas.server.app import build_server, serve

__all__ = ["build_server", "serve"]
