"""The MCP half of the demo: start ``trainatlas serve`` over stdio and ask it, through the official
``mcp`` client, what a user would ask about the demo's runs."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import tempfile
from pathlib import Path
from typing import Any


async def _ask(root: Path, buggy: str, healthy: str, plot_path: Path) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    env = {**os.environ, "FASTMCP_LOG_LEVEL": "ERROR"}
    server = StdioServerParameters(command=sys.executable, args=["-m", "trainatlas", "serve", "--root", str(root)],
                                   env=env)  # fmt: skip
    # The server's stderr goes to a scratch file: ours may be a test's capture without a file descriptor.
    with tempfile.TemporaryFile("w+") as errlog:
        async with Client(stdio_client(server, errlog=errlog)) as client:
            return await _questions(client, buggy, healthy, plot_path)


async def _questions(client: Any, buggy: str, healthy: str, plot_path: Path) -> dict[str, Any]:
    tools = [t.name for t in (await client.list_tools()).tools]
    runs = (await client.call_tool("list_runs", {"project": "demo", "limit": 10})).structured_content
    diagnosis = (await client.call_tool("diagnose", {"run": buggy})).structured_content
    status = (await client.call_tool("training_status", {"run": buggy})).structured_content
    plot = await client.call_tool("plot_metrics", {"runs": [healthy, buggy], "keys": ["train/loss", "val/acc"]})
    image = next(block for block in plot.content if block.type == "image")
    plot_path.write_bytes(base64.b64decode(image.data))
    return {"protocol": client.protocol_version, "tools": tools, "runs": runs, "diagnosis": diagnosis,
            "status": status, "plot": str(plot_path)}  # fmt: skip


def ask_server(root: Path, buggy: str, healthy: str) -> dict[str, Any]:
    """What the server answers; the plot is saved next to the runs as ``demo-plot.png``."""
    return asyncio.run(_ask(root, buggy, healthy, root / "demo-plot.png"))


def render(answers: dict[str, Any], console: Any) -> None:
    from rich.markup import escape

    console.rule("[bold]asked through MCP[/bold] (trainatlas serve over stdio, official mcp client)")
    console.print(f"protocol {answers['protocol']}, {len(answers['tools'])} tools: {', '.join(answers['tools'])}")
    names = ", ".join(f"{r['name']} ({r['status']}, {r['steps']} steps)" for r in answers["runs"]["runs"][:3])
    console.print(f"[bold]> which runs exist?[/bold] {names}", highlight=False)
    d = answers["diagnosis"]
    console.print(f"[bold]> what is wrong with {escape(d['run']['name'])}?[/bold] health {d['health_score']}/100")
    for issue in [i for i in d["issues"] if i["severity"] == "critical"][:3]:
        console.print(f"  {issue['code']}: {escape(issue['message'])}", highlight=False)
    fixes = [i["fix_prompt"] for i in d["issues"] if i["severity"] == "critical"][:1]
    advice = answers["status"]["recommendation"]
    console.print(f"[bold]> what should I do?[/bold] {advice['recommendation'].replace('_', ' ')}: "
                  f"{escape(advice['reason'])}", highlight=False)  # fmt: skip
    for fix in fixes:
        console.print(f"  fix: {escape(fix)}", highlight=False)
    console.print(f"[bold]> plot the loss[/bold] saved {answers['plot']}")
