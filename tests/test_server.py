"""The MCP server through the official `mcp` client: over stdio (the server as a subprocess) and
streamable HTTP (a real server on a loopback port), in both protocol eras, on real training runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from http_fakes import free_port
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated

from tests.scenarios import record, sleep
from trainatlas.demo import SCENARIOS, build
from trainatlas.store.runinfo import read_run_json, write_run_json

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:resources/subscribe is removed")]
TOOLS = {
    "list_runs", "run_summary", "diagnose", "training_status", "sustainability_report", "compare_runs",
    "get_metric_series", "layer_health", "list_events", "query_sql", "plot_metrics", "record_belief",
    "get_beliefs", "set_review_status",
}  # fmt: skip
SERVER_ENV = {**os.environ, "FASTMCP_LOG_LEVEL": "ERROR"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A root with two real trainings on digits: a healthy one and one whose loss explodes to NaN."""
    root = tmp_path_factory.mktemp("mcp") / "runs"
    ids = {}
    for scenario in SCENARIOS[:2]:
        model, opt = build(scenario)
        ids[scenario.name] = record(root, scenario.name, model, 120, optimizer=opt, lr=scenario.lr, sample_every=20)
    return {"root": root, **ids}


def start_http(root: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainatlas", "serve", "--http", "--port", str(port), "--root", str(root), *extra],
        env=SERVER_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}/mcp"
        except OSError:
            assert proc.poll() is None, f"the server exited with {proc.returncode}"
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the HTTP server did not start within 60 s")


@pytest.fixture(scope="module")
def http_url(runs: dict[str, Any]) -> Iterator[str]:
    proc, url = start_http(runs["root"])
    yield url
    proc.terminate()
    proc.wait(10)


def stdio(root: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "trainatlas", "serve", "--root", str(root)],
                                 env=SERVER_ENV)  # fmt: skip


@asynccontextmanager
async def connect(transport: str, era: str, runs: dict[str, Any], url: str | None = None, **kw: Any
                  ) -> AsyncIterator[Client]:  # fmt: skip
    target = stdio(runs["root"]) if transport == "stdio" else url
    async with Client(target, mode="legacy" if era == "legacy" else "auto", **kw) as client:
        yield client


def data(result: Any) -> Any:
    assert not result.is_error, result.content[0].text
    return result.structured_content


@pytest.mark.parametrize("era", ["modern", "legacy"])
@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_user_asks_what_is_wrong(transport: str, era: str, runs: dict[str, Any], request) -> None:
    url = request.getfixturevalue("http_url") if transport == "http" else None
    async with connect(transport, era, runs, url) as client:
        assert client.protocol_version == ("2026-07-28" if era == "modern" else "2025-11-25")
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == TOOLS
        assert all(t.description for t in tools.values())
        assert tools["diagnose"].annotations.read_only_hint is True
        assert tools["record_belief"].annotations.read_only_hint is False
        assert "health_score" in tools["diagnose"].output_schema["properties"]

        listed = data(await client.call_tool("list_runs", {}))
        assert {r["name"] for r in listed["runs"]} == {"healthy", "lr-too-high"}
        assert listed["runs"][0]["name"] == "lr-too-high"  # newest first

        sick = data(await client.call_tool("diagnose", {"run": "lr-too-high"}))
        codes = {i["code"]: i for i in sick["issues"]}
        assert codes["nonfinite_loss"]["severity"] == "critical"
        assert "learning rate" in codes["loss_divergence"]["fix_prompt"]
        assert sick["health_score"] <= 40
        assert sick["recommendation"]["recommendation"] == "stop_now"
        healthy = data(await client.call_tool("diagnose", {"run": runs["healthy"]}))
        assert not [i for i in healthy["issues"] if i["severity"] == "critical"]
        assert healthy["health_score"] > sick["health_score"]


async def test_every_tool_answers_on_real_runs(runs: dict[str, Any], http_url: str) -> None:
    healthy, sick = runs["healthy"], runs["lr-too-high"]
    async with connect("http", "modern", runs, http_url) as c:
        summary = data(await c.call_tool("run_summary", {"run": healthy}))
        assert summary["run"]["steps"] == 120 and summary["model"]["params"] > 0
        status = data(await c.call_tool("training_status", {"run": healthy}))
        assert status["phase"] in ("STABLE_CONVERGENCE", "CONVERGED", "PLATEAU", "LEARNING_FAST", "OVERFITTING_RISK")
        assert status["recommendation"]["recommendation"] == "finished"  # a completed run trains no more
        carbon = data(await c.call_tool("sustainability_report", {"run": healthy}))
        assert carbon["grade"] in "ABCDEF" and carbon["energy_kwh"] > 0
        comparison = data(await c.call_tool("compare_runs", {"run_a": healthy, "run_b": sick}))
        assert {ch["key"] for ch in comparison["config_changes"]} >= {"lr"}

        series = data(await c.call_tool("get_metric_series", {"run": healthy, "keys": ["train/loss", "lr"],
                                                                "max_points": 40}))  # fmt: skip
        loss = series["series"][0]
        assert loss["points_in_range"] == 120 and len(loss["steps"]) == 40 and loss["downsampled"]
        assert loss["steps"][0] == 1 and loss["steps"][-1] == 120  # LTTB keeps both ends
        ranged = data(await c.call_tool("get_metric_series", {"run": healthy, "keys": ["train/loss"],
                                                                "start_step": 50, "end_step": 60}))  # fmt: skip
        assert ranged["series"][0]["steps"] == list(range(50, 61))

        layers = data(await c.call_tool("layer_health", {"run": healthy}))
        assert layers["step"] == 120 and len(layers["layers"]) >= 3
        assert all("grad_norm" in lay for lay in layers["layers"] if lay["module_type"] == "Linear")
        events = data(await c.call_tool("list_events", {"run": sick, "min_severity": "critical"}))
        assert events["events"] and {e["severity"] for e in events["events"]} == {"critical"}

        sql = data(await c.call_tool("query_sql", {"sql": "SELECT r.name, count(*) AS n FROM scalars s JOIN runs r "
                                                          "USING (run_id) WHERE key = 'train/loss' GROUP BY 1 "
                                                          "ORDER BY 1"}))  # fmt: skip
        assert sql["columns"] == ["name", "n"] and sql["rows"][0][0] == "healthy"
        capped = data(await c.call_tool("query_sql", {"sql": "SELECT * FROM scalars", "max_rows": 5}))
        assert capped["row_count"] == 5 and capped["truncated"] and "5 rows" in capped["note"]

        plot = await c.call_tool("plot_metrics", {"runs": [healthy, sick], "keys": ["train/loss", "val/acc"]})
        assert not plot.is_error
        image = next(b for b in plot.content if b.type == "image")
        assert image.mime_type == "image/png"
        import base64

        assert base64.b64decode(image.data)[:8] == b"\x89PNG\r\n\x1a\n"
        panels = plot.structured_content["panels"]
        assert [p["key"] for p in panels] == ["train/loss", "val/acc"]
        assert panels[0]["log_scale"] is True  # the exploding loss spans decades


async def test_list_events_has_a_row_per_phase_transition(runs: dict[str, Any]) -> None:
    """The design's promise, through a stdio client: each phase change is an event (kind phase), with
    the alerts the run stored, newest first, and the same history `training_status` tells."""
    async with connect("stdio", "modern", runs) as c:
        for run in (runs["healthy"], runs["lr-too-high"]):
            events = data(await c.call_tool("list_events", {"run": run}))["events"]
            history = data(await c.call_tool("training_status", {"run": run}))["transitions"]
            phases = [e for e in events if e["kind"] == "phase"]
            assert [e["code"] for e in reversed(phases)] == [t["code"] for t in history] and history
            assert [e["ts"] for e in events] == sorted((e["ts"] for e in events), reverse=True)
        assert phases[0]["code"] == "DIVERGING" and {"alert", "lifecycle"} <= {e["kind"] for e in events}
        only = data(await c.call_tool("list_events", {"run": runs["lr-too-high"], "kinds": ["phase"], "limit": 1}))
        assert [e["code"] for e in only["events"]] == ["DIVERGING"] and only["truncated"]


async def test_bad_arguments_get_errors_that_say_how_to_fix_them(runs: dict[str, Any], http_url: str) -> None:
    async with connect("http", "legacy", runs, http_url) as c:
        r = await c.call_tool("diagnose", {"run": "no-such-run"})
        assert r.is_error and "list_runs" in r.content[0].text
        r = await c.call_tool("get_metric_series", {"run": runs["healthy"], "keys": ["train/los"]})
        assert r.is_error and "train/loss" in r.content[0].text  # it lists the keys the run has
        r = await c.call_tool("diagnose", {"run": runs["healthy"], "checks": ["not_a_check"]})
        assert r.is_error and "loss_divergence" in r.content[0].text
        r = await c.call_tool("get_metric_series", {"run": runs["healthy"], "keys": ["lr"], "max_points": 1})
        assert r.is_error and "max_points" in r.content[0].text
        r = await c.call_tool("list_runs", {"status": "sleeping"})
        assert r.is_error
        r = await c.call_tool("no_such_tool", {})
        assert r.is_error
        assert data(await c.call_tool("list_runs", {}))["total"] == 2  # still serving


async def test_hostile_sql_is_refused_and_the_server_keeps_serving(runs: dict[str, Any], http_url: str) -> None:
    root: Path = runs["root"]
    (root / "link").symlink_to("/etc/passwd")
    hostile = [
        "SELECT * FROM read_csv('/etc/passwd')",
        f"SELECT * FROM read_csv('{root}/../../../../etc/passwd')",
        f"SELECT * FROM read_csv('{root}/link')",
        f"COPY (SELECT 1) TO '{root}/out.csv'",
        f"ATTACH '{root}/x.db'",
        "INSTALL httpfs",
        "SET threads = 1",
        "SELECT 1; SELECT 2",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{root}/e.csv'",
    ]
    try:
        async with connect("http", "modern", runs, http_url) as c:
            for sql in hostile:
                r = await c.call_tool("query_sql", {"sql": sql})
                assert r.is_error, sql
                assert "root:" not in r.content[0].text  # /etc/passwd content never comes back
            started = time.monotonic()
            r = await c.call_tool("query_sql", {"sql": "SELECT count(*) FROM range(10000000000) a, range(1000) b",
                                                "timeout_s": 1})  # fmt: skip
            assert r.is_error and "stopped" in r.content[0].text
            assert time.monotonic() - started < 15
            assert data(await c.call_tool("query_sql", {"sql": "SELECT count(*) AS n FROM runs"}))["rows"] == [[2]]
    finally:
        (root / "link").unlink()
    assert not list(root.glob("*.csv")) and not (root / "x.db").exists()


async def test_resources_and_prompts(runs: dict[str, Any], http_url: str) -> None:
    sick = runs["lr-too-high"]
    async with connect("http", "modern", runs, http_url) as c:
        uris = {str(r.uri) for r in (await c.list_resources()).resources}
        assert uris == {"trainatlas://runs", "trainatlas://schema"}
        templates = {t.uri_template for t in (await c.list_resource_templates()).resource_templates}
        assert templates == {"trainatlas://runs/{run_id}", "trainatlas://runs/{run_id}/diagnostics"}
        listing = json.loads((await c.read_resource("trainatlas://runs")).contents[0].text)
        assert len(listing) == 2
        one = json.loads((await c.read_resource(f"trainatlas://runs/{sick}")).contents[0].text)
        assert one["run"]["name"] == "lr-too-high"
        diagnosis = json.loads((await c.read_resource(f"trainatlas://runs/{sick}/diagnostics")).contents[0].text)
        assert "nonfinite_loss" in {i["code"] for i in diagnosis["issues"]}
        schema = json.loads((await c.read_resource("trainatlas://schema")).contents[0].text)
        assert {"runs", "scalars", "layers", "events"} <= set(schema["tables"]) and schema["examples"]
        with pytest.raises(Exception, match="no run"):
            await c.read_resource("trainatlas://runs/missing-run")

        prompts = {p.name: p for p in (await c.list_prompts()).prompts}
        assert set(prompts) == {"diagnose_run", "should_i_stop", "compare_runs", "postmortem"}
        assert [a.name for a in prompts["diagnose_run"].arguments] == ["run_id", "question"]
        text = (await c.get_prompt("should_i_stop", {"run_id": sick, "question": "stop?"})).messages[0].content.text
        assert sick in text and "stop?" in text and "record_belief" in text and '"confidence"' in text
        both = f"{runs['healthy']},{sick}"
        text = (await c.get_prompt("compare_runs", {"run_ids": both})).messages[0].content.text
        assert runs["healthy"] in text and sick in text


async def test_beliefs_and_review_outlive_the_conversation(runs: dict[str, Any], http_url: str) -> None:
    healthy = runs["healthy"]
    belief = {"runs": [healthy], "hypothesis": "converging normally", "confidence": 0.7,
              "evidence": ["val/acc 0.9 at step 120"], "open_questions": ["does it overfit later?"],
              "question": "is it fine?"}  # fmt: skip
    async with connect("http", "modern", runs, http_url) as c:
        saved = data(await c.call_tool("record_belief", belief))
        assert saved["run_ids"] == [healthy] and saved["at"]
        r = await c.call_tool("record_belief", {**belief, "confidence": 1.5})
        assert r.is_error
        review = data(await c.call_tool("set_review_status", {"run": healthy, "status": "approved", "note": "ok"}))
        assert review["review"]["status"] == "approved"
    async with connect("stdio", "legacy", runs) as c:  # another client, another server process
        history = data(await c.call_tool("get_beliefs", {"run": "healthy"}))
        assert history["beliefs"][-1]["hypothesis"] == "converging normally"
        assert history["beliefs"][-1]["open_questions"] == ["does it overfit later?"]
        assert history["review"]["status"] == "approved"
    # the Observer rewrites run.json (heartbeat, close) without losing the review
    path = Path(data_path(runs, healthy)) / "run.json"
    info = read_run_json(path)
    info.pop("review")
    write_run_json(path, {**info, "heartbeat_at": "later"})
    assert read_run_json(path)["review"]["status"] == "approved"


def data_path(runs: dict[str, Any], run_id: str) -> str:
    return str(next(runs["root"].glob(f"project=*/run={run_id}")))


def train_in_background(root: Path, name: str) -> threading.Thread:
    """A real training that takes several seconds (a data loader that sleeps), flushing often."""

    def work() -> None:
        model, opt = build(SCENARIOS[0])
        record(root, name, model, steps=400, optimizer=opt, flush_every_s=0.2, before_step=sleep(0.02))

    thread = threading.Thread(target=work)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A server over a root of its own, where runs appear while clients listen."""
    root = tmp_path_factory.mktemp("live") / "runs"
    proc, url = start_http(root)
    yield {"root": root, "url": url}
    proc.terminate()
    proc.wait(10)


def notified(messages: list[Any], kind: str) -> set[str]:
    """The URIs of handshake-era notifications of a kind ('' for list changes)."""
    out = set()
    for m in messages:
        m = getattr(m, "root", m)
        if type(m).__name__ == kind:
            params = getattr(m, "params", None)
            out.add(str(getattr(params, "uri", "")))
    return out


@pytest.mark.parametrize("era", ["modern", "legacy"])
async def test_subscribers_hear_about_new_runs_and_new_data(era: str, live: dict[str, Any]) -> None:
    """A listener hears that a run appeared; a client subscribed to that run hears each time it writes."""
    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        seen.append(message)

    name = f"live-{era}"
    async with connect("http", era, live, live["url"], message_handler=on_message) as c:
        with anyio.fail_after(90):
            if era == "modern":
                async with c.listen(resources_list_changed=True) as sub:
                    thread = train_in_background(live["root"], name)
                    assert isinstance(await sub.__anext__(), ResourcesListChanged)
            else:
                await c.subscribe_resource("trainatlas://runs")
                thread = train_in_background(live["root"], name)
                while "" not in notified(seen, "ResourceListChangedNotification"):
                    await anyio.sleep(0.1)
            run_id = data(await c.call_tool("list_runs", {"name": name}))["runs"][0]["run_id"]
            uri = f"trainatlas://runs/{run_id}"
            if era == "modern":
                async with c.listen(resource_subscriptions=[uri]) as sub:
                    updates = [await sub.__anext__() for _ in range(2)]  # two writes, two events
                    assert {(type(u), u.uri) for u in updates} == {(ResourceUpdated, uri)}
            else:
                await c.subscribe_resource(uri)
                while uri not in notified(seen, "ResourceUpdatedNotification"):
                    await anyio.sleep(0.1)
            running = json.loads((await c.read_resource(uri)).contents[0].text)
            assert running["run"]["status"] == "running" and running["run"]["name"] == name
        await anyio.to_thread.run_sync(thread.join)
        done = data(await c.call_tool("list_runs", {"name": name}))["runs"][0]
        assert done["status"] == "completed" and done["steps"] == 400


async def test_http_needs_the_token_when_one_is_set(runs: dict[str, Any]) -> None:
    proc, url = start_http(runs["root"], "--token", "s3cret", "--allowed-host", "trainatlas.example")
    try:
        body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        async with httpx2.AsyncClient() as raw:
            assert (await raw.post(url, json=body, headers=headers)).status_code == 401
            wrong = {**headers, "Authorization": "Bearer nope"}
            assert (await raw.post(url, json=body, headers=wrong)).status_code == 401
            rebinding = {**headers, "Authorization": "Bearer s3cret", "Host": "evil.example"}
            assert (await raw.post(url, json=body, headers=rebinding)).status_code == 421
            named = {**rebinding, "Host": "trainatlas.example"}  # a name the operator allowed
            assert (await raw.post(url, json=body, headers=named)).status_code != 421
        authed = httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret"})
        async with authed, Client(streamable_http_client(url, http_client=authed)) as c:
            assert data(await c.call_tool("list_runs", {}))["total"] >= 2
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_server_starts_and_answers_without_torch(runs: dict[str, Any]) -> None:
    code = f"""
import sys, asyncio
sys.modules["torch"] = None  # any `import torch` now fails
from fastmcp import Client
from trainatlas.server import build_server
async def main():
    async with Client(build_server({str(runs["root"])!r})) as c:
        r = await c.call_tool("diagnose", {{"run": "lr-too-high"}})
        assert r.structured_content["health_score"] <= 40
        r = await c.call_tool("plot_metrics", {{"runs": ["healthy"]}})
        assert "torch" not in sys.modules or sys.modules["torch"] is None
asyncio.run(main())
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=SERVER_ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


async def test_the_claude_desktop_config_launches_the_server(runs: dict[str, Any]) -> None:
    config = json.loads((Path(__file__).parents[1] / "claude_desktop_config.json").read_text())
    entry = config["mcpServers"]["trainatlas"]
    assert entry["command"].endswith("/.venv/bin/trainatlas") and entry["args"][:2] == ["serve", "--root"]
    command = str(Path(sys.executable).parent / "trainatlas")  # the placeholders, filled in as the README says
    args = [*entry["args"][:2], str(runs["root"])]
    params = StdioServerParameters(command=command, args=args, env={**os.environ, **entry["env"]})
    async with Client(params) as c:
        assert data(await c.call_tool("list_runs", {}))["total"] >= 2
