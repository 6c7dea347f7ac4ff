"""What an MCP client reads, through the official `mcp` client: no silent substitution or emptiness,
errors without CLI hints, root paths or pydantic banners, prompts that check their arguments."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.scenarios import record
from tests.test_server import connect, data, start_http
from trainatlas.demo import SCENARIOS, build

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three short real trainings: two of one name (the name means the newer), one that explodes."""
    root = tmp_path_factory.mktemp("answers") / "runs"
    ids: dict[str, Any] = {"root": root}
    for scenario, label in ((SCENARIOS[0], "older"), (SCENARIOS[1], "sick"), (SCENARIOS[0], "newer")):
        model, opt = build(scenario)
        ids[label] = record(root, scenario.name, model, 60, optimizer=opt, lr=scenario.lr, sample_every=20)
    return ids


@pytest.fixture(scope="module")
def url(runs: dict[str, Any]) -> Iterator[str]:
    proc, address = start_http(runs["root"])
    yield address
    proc.terminate()
    proc.wait(10)


def error(result: Any) -> str:
    assert result.is_error, result.structured_content
    return result.content[0].text


def assert_plain(text: str, root: Path) -> None:
    """An MCP answer: no shell command to run, no path of the server's disk, no pydantic banner or URL."""
    assert "trainatlas runs" not in text and "--root" not in text
    assert str(root) not in text
    assert "http" not in text and "validation error" not in text


async def test_layer_health_says_which_step_it_shows(runs: dict[str, Any], url: str) -> None:
    async with connect("http", "modern", runs, url) as c:
        latest = data(await c.call_tool("layer_health", {"run": runs["newer"]}))
        assert latest["note"] is None
        exact = data(await c.call_tool("layer_health", {"run": runs["newer"], "step": latest["step"]}))
        assert exact["step"] == latest["step"] and exact["note"] is None
        other = data(await c.call_tool("layer_health", {"run": runs["newer"], "step": latest["step"] - 1}))
        assert other["step"] < latest["step"]
        assert f"step {latest['step'] - 1} was not sampled; showing step {other['step']}" in other["note"]


async def test_empty_or_meaningless_requests_are_errors(runs: dict[str, Any], url: str) -> None:
    async with connect("http", "modern", runs, url) as c:
        args = {"run": runs["newer"], "keys": ["train/loss"], "start_step": 50, "end_step": 10}
        text = error(await c.call_tool("get_metric_series", args))
        assert "start_step 50 is after end_step 10" in text
        text = error(await c.call_tool("list_events", {"run": runs["sick"], "kinds": ["alrt"]}))
        assert "'alrt'" in text and "alert, checkpoint, lifecycle, observer, phase" in text
        text = error(await c.call_tool("compare_runs", {"run_a": "healthy", "run_b": runs["newer"]}))
        assert f"both run {runs['newer']}" in text
        assert data(await c.call_tool("list_events", {"run": runs["sick"], "kinds": ["alert"]}))["events"]


async def test_unknown_and_ambiguous_runs_are_told_apart(runs: dict[str, Any], url: str) -> None:
    root = runs["root"]
    async with connect("http", "legacy", runs, url) as c:
        text = error(await c.call_tool("run_summary", {"run": "no-such-run"}))
        assert text == "no run 'no-such-run' (call list_runs to see the run ids)"
        prefix = runs["older"][:4]  # the year: every run id starts with it
        text = error(await c.call_tool("diagnose", {"run": prefix}))
        assert text.startswith(f"'{prefix}' matches 3 runs: ") and all(runs[k] in text for k in ("older", "newer"))
        assert_plain(text, root)
        summary = data(await c.call_tool("run_summary", {"run": "healthy"}))  # a name: the newest run of it
        assert summary["run"]["run_id"] == runs["newer"]
        outside = shutil.copytree(next(root.glob(f"*/run={runs['older']}")), root.parent / "elsewhere" / "run=x")
        text = error(await c.call_tool("get_beliefs", {"run": str(outside)}))
        assert text == f"{outside} is a run directory outside the served root"


async def test_bad_arguments_come_back_one_line_per_field(runs: dict[str, Any], url: str) -> None:
    async with connect("http", "modern", runs, url) as c:
        text = error(await c.call_tool("list_runs", {"status": "sleeping", "limit": 0}))
        assert text.splitlines() == [
            "invalid arguments for list_runs:",
            "  status: Input should be 'running', 'completed', 'failed' or 'crashed' (got 'sleeping')",
            "  limit: Input should be greater than or equal to 1 (got 0)",
        ]
        text = error(await c.call_tool("get_metric_series", {"run": runs["newer"]}))
        assert text.splitlines() == ["invalid arguments for get_metric_series:", "  keys: Missing required argument"]
        assert_plain(text, runs["root"])


async def test_prompts_and_resources_name_what_is_missing(runs: dict[str, Any]) -> None:
    async with connect("stdio", "modern", runs) as c:
        with pytest.raises(MCPError, match="prompt 'diagnose_run' needs the argument run_id") as missing:
            await c.get_prompt("diagnose_run", {})
        assert "JSON schema" not in str(missing.value)
        with pytest.raises(MCPError, match=r"no run 'nope' \(call list_runs"):
            await c.get_prompt("should_i_stop", {"run_id": "nope"})
        with pytest.raises(MCPError, match="no run 'zzz'"):
            await c.get_prompt("compare_runs", {"run_ids": f"{runs['newer']}, zzz"})
        prompt = await c.get_prompt("postmortem", {"run_id": "lr-too-high"})
        assert "lr-too-high" in prompt.messages[0].content.text
        with pytest.raises(MCPError) as unknown:
            await c.read_resource("trainatlas://runs/nope")
        assert str(unknown.value) == "no run 'nope' (call list_runs to see the run ids)"


async def test_every_tool_is_typed_titled_described_and_annotated(runs: dict[str, Any], url: str) -> None:
    async with connect("http", "legacy", runs, url) as c:
        tools = (await c.list_tools()).tools
    assert len(tools) == 14
    for tool in tools:
        schema = tool.output_schema or {}
        assert schema.get("properties") and schema.get("additionalProperties") is not True, f"{tool.name}: {schema}"
        assert tool.title and tool.title != tool.name.replace("_", " ").title(), tool.name  # written, not "Query Sql"
        undocumented = [name for name, spec in tool.input_schema["properties"].items() if not spec.get("description")]
        assert not undocumented, f"{tool.name}: {undocumented}"
        hints = tool.annotations.model_dump()
        assert None not in [hints[h] for h in ("read_only_hint", "destructive_hint", "idempotent_hint",
                                                "open_world_hint")], tool.name  # fmt: skip


async def test_plot_is_an_image_beside_typed_numbers(runs: dict[str, Any], url: str) -> None:
    import base64

    async with connect("http", "modern", runs, url) as c:
        plot = await c.call_tool("plot_metrics", {"runs": [runs["newer"], runs["sick"]], "keys": ["train/loss"]})
    image = next(block for block in plot.content if block.type == "image")
    png = base64.b64decode(image.data)
    info = data(plot)
    assert info["png_bytes"] == len(png) and image.data not in str(info)
    curve = info["panels"][0]["curves"][0]
    assert curve["run_id"] == runs["newer"] and all(isinstance(row[0], int) for row in curve["data"])


def test_error_text_never_shows_the_root(tmp_path: Path) -> None:
    """Whatever an analysis puts in an error (a run.json's path, say), the client sees paths relative to the root."""
    from fastmcp import FastMCP

    from trainatlas.server.errors import PlainErrors

    plain = PlainErrors(FastMCP("t"), tmp_path)
    text = plain.scrubbed(f"{tmp_path}/project=p/run=x/run.json: unreadable run.json; nothing else under {tmp_path}")
    assert text == "project=p/run=x/run.json: unreadable run.json; nothing else under the root"


SLOW_SQL = "SELECT sum(hash(i)) FROM range(1000000000000) t(i)"  # hours of work anywhere: stopped by timeout_s


async def test_slow_queries_hold_up_no_other_tool_and_no_more_than_their_slots(runs: dict[str, Any], url: str) -> None:
    """Two slow queries take both SQL slots: list_runs and a diagnosis still answer while they run, and a third
    query is refused with the reason instead of queueing behind them for a minute."""
    stopped: list[str] = []

    async def slow_query(client: Any) -> None:
        stopped.append(error(await client.call_tool("query_sql", {"sql": SLOW_SQL, "timeout_s": 15})))

    clients = [connect("http", "modern", runs, url) for _ in range(3)]
    async with clients[0] as a, clients[1] as b, clients[2] as c, anyio.create_task_group() as tasks:
        tasks.start_soon(slow_query, a)
        tasks.start_soon(slow_query, b)
        await anyio.sleep(1.5)  # both queries are running by now
        assert data(await c.call_tool("list_runs", {}))["total"] == 3
        assert data(await c.call_tool("diagnose", {"run": runs["sick"]}))["issues"]
        assert not stopped, "an answer waited behind the slow queries"
        refused = error(await c.call_tool("query_sql", {"sql": "SELECT 1"}))
        assert not stopped
    assert "already running 2 queries" in refused
    assert stopped == ["query refused: the query ran longer than 15 s and was stopped"] * 2
