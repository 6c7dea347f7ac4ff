"""``trainatlas ask``: a tool-calling loop with Anthropic's Messages API over the trainatlas MCP tools.

The server runs in this process (fastmcp's in-memory client), so the model sees exactly the tools,
instructions and belief-state prompts an MCP client would. Images from plot_metrics are passed to the
model as image blocks. The belief the model states at the end is saved with record_belief (unless the
model saved it itself), and the next ``ask`` about the run starts from it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

try:
    import anthropic
except ImportError:  # the optional extra is not installed
    anthropic = None  # type: ignore[assignment]

# A current Sonnet: good at multi-step tool use at a moderate price. Override with --model or $TRAINATLAS_MODEL.
DEFAULT_MODEL = "claude-sonnet-5-5"
MODEL_ENV = "TRAINATLAS_MODEL"
KEY_ENV = "ANTHROPIC_API_KEY"
ASK_PROMPTS = ("diagnose_run", "should_i_stop", "postmortem")
MAX_RESULT_CHARS = 30_000  # about 7.5k tokens per tool result keeps a 12-turn conversation affordable
MAX_TOKENS = 4096
MISSING_EXTRA = "trainatlas ask needs the anthropic package: pip install 'trainatlas[agent]'"
_JSON_BLOCK = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


class AgentError(Exception):
    """Ask could not produce an answer: no API key, an API error, an unknown run, too many turns."""


@dataclass
class ToolCall:
    name: str
    input: dict[str, Any]
    is_error: bool
    chars: int  # size of the text the model got back
    seconds: float


@dataclass
class Answer:
    answer: str
    belief: dict[str, Any] | None
    belief_saved_by: str | None  # "model" (it called record_belief), "ask" (parsed from the answer) or None
    tool_calls: list[ToolCall] = field(default_factory=list)
    turns: int = 0
    model: str = ""
    stop_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ask(
    root: str | Path | None,
    run: str,
    question: str,
    model: str | None = None,
    max_turns: int = 12,
    prompt: str = "diagnose_run",
    on_tool_call: Callable[[ToolCall], None] | None = None,
    max_result_chars: int = MAX_RESULT_CHARS,
) -> Answer:
    """Answer ``question`` about ``run`` with Claude calling the trainatlas tools; raises AgentError."""
    if anthropic is None:
        raise AgentError(MISSING_EXTRA)
    if prompt not in ASK_PROMPTS:
        raise AgentError(f"--prompt must be one of {', '.join(ASK_PROMPTS)}, got {prompt!r}")
    if max_turns < 1:
        raise AgentError("--max-turns must be at least 1")
    if not os.environ.get(KEY_ENV):
        raise AgentError(f"set ${KEY_ENV} to an Anthropic API key (and $ANTHROPIC_BASE_URL for a proxy or gateway)")
    loop = _Loop(root, run, question, model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL,
                 max_turns, prompt, on_tool_call, max_result_chars)  # fmt: skip
    return anyio.run(loop.run)


class _Loop:
    def __init__(self, root: str | Path | None, run: str, question: str, model: str, max_turns: int, prompt: str,
                 on_tool_call: Callable[[ToolCall], None] | None, max_result_chars: int) -> None:  # fmt: skip
        self.root, self.run_ref, self.question, self.model = root, run, question, model
        self.max_turns, self.prompt, self.on_tool_call, self.cap = max_turns, prompt, on_tool_call, max_result_chars

    async def run(self) -> Answer:
        from fastmcp import Client

        from trainatlas.prompts import render
        from trainatlas.server.app import build_server

        server = build_server(self.root)
        api = anthropic.AsyncAnthropic()  # reads $ANTHROPIC_API_KEY and $ANTHROPIC_BASE_URL
        async with Client(server) as mcp:
            prior = await mcp.call_tool("get_beliefs", {"run": self.run_ref, "limit": 1}, raise_on_error=False)
            if prior.is_error:  # an unknown run: fail before spending tokens
                raise AgentError(_text(prior.content))
            beliefs = prior.structured_content or json.loads(_text(prior.content))
            run_id = beliefs["run_id"]
            tools = [{"name": t.name, "description": t.description or "", "input_schema": t.input_schema}
                     for t in await mcp.list_tools()]  # fmt: skip
            system = f"{server.instructions}\n\n{render(self.prompt, [run_id], self.question)}"
            messages: list[dict[str, Any]] = [{"role": "user", "content": _first_message(self.question, beliefs)}]
            result = Answer(answer="", belief=None, belief_saved_by=None, model=self.model,
                            usage={"input_tokens": 0, "output_tokens": 0})  # fmt: skip
            while True:
                if result.turns == self.max_turns:
                    raise AgentError(
                        f"no answer after {self.max_turns} turns ({len(result.tool_calls)} tool calls): the model "
                        "kept calling tools; raise --max-turns or ask a narrower question"
                    )
                reply = await self._create(api, system, tools, messages)
                result.turns += 1
                result.stop_reason = reply.stop_reason
                result.usage["input_tokens"] += reply.usage.input_tokens
                result.usage["output_tokens"] += reply.usage.output_tokens
                content = [_echo(block) for block in reply.content]
                messages.append({"role": "assistant", "content": content})
                uses = [b for b in content if b["type"] == "tool_use"]
                if reply.stop_reason != "tool_use" or not uses:
                    result.answer = "\n".join(b["text"] for b in content if b["type"] == "text").strip()
                    break
                results = [await self._call(mcp, use, result) for use in uses]
                messages.append({"role": "user", "content": results})
            result.belief = parse_belief(result.answer)
            if any(c.name == "record_belief" and not c.is_error for c in result.tool_calls):
                result.belief_saved_by = "model"
            elif result.belief is not None:
                saved = await mcp.call_tool("record_belief", {**result.belief, "runs": [run_id],
                                            "question": self.question}, raise_on_error=False)  # fmt: skip
                result.belief_saved_by = None if saved.is_error else "ask"
        return result

    async def _create(self, api: Any, system: str, tools: list[dict], messages: list[dict]) -> Any:
        try:
            return await api.messages.create(
                model=self.model, max_tokens=MAX_TOKENS, system=system, tools=tools, messages=messages
            )
        except anthropic.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            detail = (body.get("error") or {}).get("message") or exc.message  # the API's words, not the SDK's
            raise AgentError(f"Anthropic API error {exc.status_code}: {detail}") from exc
        except anthropic.APIError as exc:  # connection failures, timeouts
            raise AgentError(f"Anthropic API error: {exc}") from exc

    async def _call(self, mcp: Any, use: dict[str, Any], result: Answer) -> dict[str, Any]:
        """Run one tool_use through the MCP server; errors go back to the model, which can correct itself."""
        start = time.perf_counter()
        try:
            out = await mcp.call_tool(use["name"], use.get("input") or {}, raise_on_error=False)
            blocks, is_error = _blocks(out.content, self.cap), out.is_error
        except Exception as exc:  # noqa: BLE001 - a protocol failure: tell the model instead of ending the conversation
            blocks, is_error = [{"type": "text", "text": f"tool call failed: {exc}"}], True
        call = ToolCall(use["name"], use.get("input") or {}, is_error,
                        sum(len(b.get("text", "")) for b in blocks), round(time.perf_counter() - start, 3))  # fmt: skip
        result.tool_calls.append(call)
        if self.on_tool_call:
            self.on_tool_call(call)
        return {"type": "tool_result", "tool_use_id": use["id"], "content": blocks, "is_error": is_error}


def _first_message(question: str, beliefs: dict[str, Any]) -> str:
    if not beliefs["beliefs"]:
        return question
    last = beliefs["beliefs"][-1]
    keep = ("hypothesis", "confidence", "evidence", "open_questions", "next_action")
    earlier = json.dumps({k: last.get(k) for k in keep}, indent=1)
    return (
        f"{question}\n\nYour earlier belief about this run (saved {last.get('at')}, question "
        f"{last.get('question')!r}):\n```json\n{earlier}\n```\nStart from it; say what changed."
    )


def _echo(block: Any) -> dict[str, Any]:
    """An assistant content block as it goes back to the API in the next request."""
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return block.model_dump(exclude_none=True)  # e.g. thinking blocks, passed back unchanged


def _text(content: list[Any]) -> str:
    return "\n".join(getattr(c, "text", "") for c in content)


def _blocks(content: list[Any], cap: int) -> list[dict[str, Any]]:
    """MCP content as Anthropic tool_result content: text (cut at ``cap`` characters) and images."""
    blocks: list[dict[str, Any]] = []
    for c in content:
        if c.type == "text":
            text = c.text
            if len(text) > cap:
                text = text[:cap] + (
                    f"\n[truncated by trainatlas ask: {cap:,} of {len(c.text):,} characters shown; "
                    "ask for fewer keys, a step range or a lower limit]"
                )
            blocks.append({"type": "text", "text": text})
        elif c.type == "image":
            blocks.append({"type": "image", "source": {"type": "base64", "media_type": c.mime_type, "data": c.data}})
        else:
            blocks.append({"type": "text", "text": f"[{c.type} content not shown]"})
    return blocks or [{"type": "text", "text": "(empty result)"}]


def parse_belief(answer: str) -> dict[str, Any] | None:
    """The last JSON block of the answer that states a belief (hypothesis and confidence), or None."""
    for raw in reversed(_JSON_BLOCK.findall(answer)):
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("hypothesis"), str) and "confidence" in data:
            keep = ("hypothesis", "confidence", "evidence", "open_questions", "next_action")
            return {k: data[k] for k in keep if data.get(k) is not None}
    return None
