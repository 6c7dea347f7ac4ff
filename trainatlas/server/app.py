"""``build_server(root)`` assembles the trainatlas MCP server; ``serve`` runs it over stdio or
streamable HTTP.

Start-up stays lean: the analysis modules import numpy and DuckDB only, never torch, and
matplotlib loads on the first plot.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastmcp import FastMCP

from trainatlas import __version__
from trainatlas.server.state import RootState
from trainatlas.server.subscriptions import Subscriptions

TOKEN_ENV = "TRAINATLAS_TOKEN"
# Quiet, offline start: no banner on stderr, no update check against the package index, warnings only.
FASTMCP_QUIET = {"show_server_banner": False, "check_for_updates": "off", "log_level": "WARNING",
                 "enable_rich_tracebacks": False}  # fmt: skip
INSTRUCTIONS = """\
trainatlas answers questions about PyTorch training runs recorded under one root directory.
Start with list_runs; diagnose finds problems (each issue has evidence and a fix_prompt to act on);
training_status gives phase, ETA, forecast and whether to stop; query_sql runs read-only DuckDB SQL
(read trainatlas://schema first). Keep a belief about the run and save it with record_belief."""


def build_server(root: str | Path | None = None, token: str | None = None, poll_s: float | None = None) -> FastMCP:
    """The MCP server over ``root``; ``token`` requires ``Authorization: Bearer <token>`` over HTTP."""
    from trainatlas.server.errors import PlainErrors
    from trainatlas.server.prompts import register_completions, register_prompts
    from trainatlas.server.resources import register_resources
    from trainatlas.server.tools import register_tools

    state = RootState(root)
    subscriptions = Subscriptions(state) if poll_s is None else Subscriptions(state, poll_s)

    @asynccontextmanager
    async def lifespan(_server: FastMCP) -> AsyncIterator[dict[str, Any]]:
        # A plain task: the lifespan is entered and left in different tasks, which a task group forbids.
        watcher = asyncio.get_running_loop().create_task(subscriptions.watch())
        try:
            yield {"root": str(state.root)}
        finally:
            watcher.cancel()
            state.close()

    mcp = FastMCP(
        "trainatlas",
        instructions=INSTRUCTIONS,
        version=__version__,
        mask_error_details=True,
        lifespan=lifespan,
        auth=_bearer(token) if token else None,
    )
    mcp.add_middleware(PlainErrors(mcp, state.root))
    register_tools(mcp, state)
    register_resources(mcp, state)
    register_prompts(mcp, state)
    register_completions(mcp, state)
    subscriptions.install(mcp)
    return mcp


def _bearer(token: str) -> Any:
    from fastmcp.server.auth.providers.debug import DebugTokenVerifier

    return DebugTokenVerifier(validate=lambda given: hmac.compare_digest(given.encode(), token.encode()))


def quiet_fastmcp() -> None:
    """Apply ``FASTMCP_QUIET`` when serving, not at import, so that importing the server changes nothing.
    FastMCP read its environment when it was imported, so its settings are set here; a ``FASTMCP_*``
    variable the user set still wins."""
    import fastmcp
    from fastmcp.utilities.logging import configure_logging

    for name, value in FASTMCP_QUIET.items():
        if f"FASTMCP_{name.upper()}" not in os.environ:
            setattr(fastmcp.settings, name, value)
    configure_logging(level=fastmcp.settings.log_level)


def serve(
    root: str | Path | None = None,
    http: bool = False,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    path: str = "/mcp",
    allowed_hosts: list[str] | None = None,
) -> None:
    """Run the server until interrupted: stdio by default, streamable HTTP with ``http=True``."""
    quiet_fastmcp()
    warnings.filterwarnings("ignore", message=".*deprecated.*", module="mcp.*")
    token = token or os.environ.get(TOKEN_ENV) or None
    if not http:
        build_server(root).run(show_banner=False)
        return
    loopback = host in ("127.0.0.1", "localhost", "::1")
    if not loopback and not token:
        warnings.warn(f"trainatlas: serving {host} without --token: anyone who can reach it can read the runs",
                      stacklevel=2)  # fmt: skip
    run_http(build_server(root, token=token), host, port, path, allowed_hosts)


def run_http(
    mcp: FastMCP, host: str = "127.0.0.1", port: int = 8765, path: str = "/mcp", allowed_hosts: list[str] | None = None
) -> None:
    """Serve ``mcp`` over streamable HTTP until interrupted, rejecting requests whose Host or Origin
    header is not this server's (DNS rebinding); ``allowed_hosts`` adds the names clients use to reach it."""
    quiet_fastmcp()
    loopback = host in ("127.0.0.1", "localhost", "::1")
    allowed = [*(allowed_hosts or []), *([] if loopback else [host, f"{host}:{port}"])] or None
    mcp.run(transport="http", host=host, port=port, path=path, show_banner=False,
            host_origin_protection=True, allowed_hosts=allowed)  # fmt: skip
