"""Error answers an MCP client can act on: bad arguments as one line per field (no pydantic banner,
no documentation URLs), a prompt's missing argument by name, and no absolute root path in any
error, since the client has no access to the server's disk and the path only leaks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastmcp import FastMCP
from fastmcp.exceptions import PromptError, ResourceError, ToolError
from fastmcp.exceptions import ValidationError as ArgumentsError
from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
from pydantic import ValidationError

MAX_INPUT_CHARS = 60  # enough to recognise the value sent, short enough to keep one line per field


def condensed(error: ValidationError, tool: str) -> str:
    """``field: what is wrong (got value)``, one line per field, under a one-line heading."""
    lines = [f"invalid arguments for {tool}:"]
    for detail in error.errors(include_url=False, include_context=False):
        field = ".".join(str(part) for part in detail["loc"]) or "arguments"
        got = "" if detail["type"].startswith("missing") else f" (got {_short(detail.get('input'))})"
        lines.append(f"  {field}: {detail['msg']}{got}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_INPUT_CHARS else text[: MAX_INPUT_CHARS - 1] + "…"


def _first_part(description: str) -> str:
    """A prompt argument's own description, without the JSON-schema advice fastmcp appends after a blank line."""
    return description.split("\n\n", 1)[0]


class PlainErrors(Middleware):
    """Rewrite tool, resource and prompt errors for a client that sees neither the shell nor the disk."""

    def __init__(self, mcp: FastMCP, root: Path) -> None:
        self.mcp, self.root = mcp, str(root)

    def scrubbed(self, text: str) -> str:
        """Paths under the root become relative to it; the root itself is "the root"."""
        return text.replace(self.root + "/", "").replace(self.root, "the root")

    async def on_call_tool(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        try:
            return await call_next(context)
        except ArgumentsError as exc:
            cause = exc.__cause__
            text = condensed(cause, context.message.name) if isinstance(cause, ValidationError) else str(exc)
            raise ToolError(self.scrubbed(text)) from exc
        except ToolError as exc:
            raise ToolError(self.scrubbed(str(exc))) from exc

    async def on_read_resource(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        try:
            return await call_next(context)
        except ResourceError as exc:
            raise ResourceError(self.scrubbed(str(exc))) from exc

    async def on_get_prompt(self, context: MiddlewareContext[Any], call_next: CallNext[Any, Any]) -> Any:
        name, given = context.message.name, set(context.message.arguments or {})
        prompt = await self.mcp.get_prompt(name)
        missing = [a for a in (prompt.arguments or []) if a.required and a.name not in given] if prompt else []
        if missing:
            needs = "; ".join(f"{a.name} ({_first_part(a.description)})" if a.description else a.name for a in missing)
            raise PromptError(f"prompt {name!r} needs the argument {needs}")
        try:
            return await call_next(context)
        except PromptError as exc:
            raise PromptError(self.scrubbed(str(exc))) from exc
