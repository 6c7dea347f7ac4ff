"""The fixture tools, resources and prompts the official MCP conformance suite calls by name, added
to the real trainatlas server for tests/test_conformance.py (never to the shipped server).

Run as a script it serves ``build_server(root)`` plus these fixtures over streamable HTTP, the way
``trainatlas serve --http`` does: ``python tests/conformance_fixtures.py --root DIR --port N``.

The behaviour of each fixture follows the scenario descriptions of @modelcontextprotocol/conformance
0.1.16. Sampling and elicitation are left out on purpose: trainatlas uses neither, and
tests/conformance-baseline.yml lists their scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import struct
import wave
import zlib

import mcp_types as t
from fastmcp import Context, FastMCP
from fastmcp.exceptions import ToolError
from fastmcp.prompts import Message
from fastmcp.tools.base import ToolResult


def red_pixel_png() -> bytes:
    """A 1x1 red PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # 1x1, 8-bit RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then red
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def silent_wav() -> bytes:
    """A tenth of a second of silence, 8 kHz mono 16-bit."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * 800)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PNG = red_pixel_png()
WAV = silent_wav()


def image() -> t.ImageContent:
    return t.ImageContent(type="image", data=b64(PNG), mime_type="image/png")


def text(value: str) -> t.TextContent:
    return t.TextContent(type="text", text=value)


def embedded(uri: str, mime_type: str, body: str) -> t.EmbeddedResource:
    return t.EmbeddedResource(type="resource", resource=t.TextResourceContents(uri=uri, mime_type=mime_type, text=body))


def add_fixtures(mcp: FastMCP) -> None:
    """Add the conformance suite's fixture tools, resources and prompts to ``mcp``."""

    @mcp.tool(description="conformance fixture: simple text")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @mcp.tool(description="conformance fixture: image content")
    def test_image_content() -> ToolResult:
        return ToolResult(content=[image()])

    @mcp.tool(description="conformance fixture: audio content")
    def test_audio_content() -> ToolResult:
        return ToolResult(content=[t.AudioContent(type="audio", data=b64(WAV), mime_type="audio/wav")])

    @mcp.tool(description="conformance fixture: embedded resource")
    def test_embedded_resource() -> ToolResult:
        return ToolResult(
            content=[embedded("test://embedded-resource", "text/plain", "This is an embedded resource content.")]
        )

    @mcp.tool(description="conformance fixture: text, image and resource")
    def test_multiple_content_types() -> ToolResult:
        body = json.dumps({"test": "data", "value": 123})
        return ToolResult(
            content=[
                text("Multiple content types test:"),
                image(),
                embedded("test://mixed-content-resource", "application/json", body),
            ]
        )

    @mcp.tool(description="conformance fixture: three info log notifications")
    async def test_tool_with_logging(ctx: Context) -> str:
        await ctx.info("Tool execution started")
        await asyncio.sleep(0.05)
        await ctx.info("Tool processing data")
        await asyncio.sleep(0.05)
        await ctx.info("Tool execution completed")
        return "Tool with logging executed successfully"

    @mcp.tool(description="conformance fixture: progress 0, 50, 100 of 100")
    async def test_tool_with_progress(ctx: Context) -> str:
        for done in (0, 50, 100):
            await ctx.report_progress(done, 100)
            if done < 100:
                await asyncio.sleep(0.05)
        return "Tool with progress executed successfully"

    @mcp.tool(description="conformance fixture: always an error")
    def test_error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    @mcp.resource("test://static-text", mime_type="text/plain", description="conformance fixture: static text")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary", mime_type="image/png", description="conformance fixture: a PNG")
    def static_binary() -> bytes:
        return PNG

    @mcp.resource(
        "test://template/{id}/data", mime_type="application/json", description="conformance fixture: template"
    )
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.resource("test://watched-resource", mime_type="text/plain", description="conformance fixture: subscribable")
    def watched_resource() -> str:
        return "Watched resource content."

    @mcp.prompt(description="conformance fixture: simple prompt")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @mcp.prompt(description="conformance fixture: prompt with two arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @mcp.prompt(description="conformance fixture: prompt with an embedded resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[Message]:
        return [
            Message(embedded(resourceUri, "text/plain", "Embedded resource content for testing.")),
            Message("Please process the embedded resource above."),
        ]

    @mcp.prompt(description="conformance fixture: prompt with an image")
    def test_prompt_with_image() -> list[Message]:
        return [Message(image()), Message("Please analyze the image above.")]


def main() -> None:
    from trainatlas.server.app import build_server, run_http

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    mcp = build_server(args.root)
    add_fixtures(mcp)
    run_http(mcp, "127.0.0.1", args.port)


if __name__ == "__main__":
    main()
