"""`trainatlas ask` against a local HTTP server that speaks Anthropic's Messages API with scripted
replies, on a real recorded training run: the tools really run, only the model is scripted."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.scenarios import record
from trainatlas.agent import ask, parse_belief
from trainatlas.cli import main
from trainatlas.demo import SCENARIOS, build
from trainatlas.server.app import INSTRUCTIONS
from trainatlas.store.catalog import Catalog
from trainatlas.tools.annotations import get_beliefs
from trainatlas.tools.report import diagnose

# A reply is a Messages API response body, or (status, body), or a function of the request body.
Reply = dict[str, Any] | tuple[int, dict[str, Any]] | Callable[[dict[str, Any]], dict[str, Any]]


class FakeMessagesAPI:
    """POST /v1/messages answers with the next scripted reply and records every request."""

    def __init__(self, replies: list[Reply], repeat_last: bool = False) -> None:
        self.replies, self.repeat_last = list(replies), repeat_last
        self.requests: list[dict[str, Any]] = []  # {"path", "headers", "body"}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                reply = fake.replies[0] if fake.repeat_last and len(fake.replies) == 1 else fake.replies.pop(0)
                status, payload = reply if isinstance(reply, tuple) else (200, reply)
                if callable(payload):
                    payload = payload(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("retry-after-ms", "1")  # the SDK's retries of a 5xx stay fast
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def message(*content: dict[str, Any], stop: str = "end_turn") -> dict[str, Any]:
    return {"id": "msg_test", "type": "message", "role": "assistant", "model": "claude-test",
            "content": list(content), "stop_reason": stop, "stop_sequence": None,
            "usage": {"input_tokens": 100, "output_tokens": 20}}  # fmt: skip


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def tool_use(id_: str, name: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": args}


def error(status: int, kind: str, msg: str) -> tuple[int, dict[str, Any]]:
    return status, {"type": "error", "error": {"type": kind, "message": msg}}


BELIEF = {"hypothesis": "the learning rate is too high: the loss diverges", "confidence": 0.8,
          "evidence": ["loss is NaN"], "open_questions": ["does lr 1e-3 fix it?"],
          "next_action": "lower the lr"}  # fmt: skip
ANSWER = "The loss diverged because the learning rate is far too high; lower it tenfold."


def final_answer(belief: dict[str, Any] = BELIEF) -> dict[str, Any]:
    return message(text(f"{ANSWER}\n\n```json\n{json.dumps(belief)}\n```"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two real trainings on digits: a healthy one and SGD at lr 1.0 whose loss explodes to NaN."""
    root = tmp_path_factory.mktemp("ask") / "runs"
    ids = []
    for scenario in SCENARIOS[:2]:
        model, opt = build(scenario)
        ids.append(record(root, scenario.name, model, 80, optimizer=opt, lr=scenario.lr, sample_every=20))
    return {"root": root, "good": ids[0], "bad": ids[1]}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeMessagesAPI]]:
    servers: list[FakeMessagesAPI] = []

    def start(replies: list[Reply], repeat_last: bool = False) -> FakeMessagesAPI:
        api = FakeMessagesAPI(replies, repeat_last)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        servers.append(api)
        return api

    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
    monkeypatch.delenv("TRAINATLAS_MODEL", raising=False)
    yield start
    for api in servers:
        api.close()


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    return request["body"]["messages"][-1]["content"]


def test_ask_diagnoses_a_real_run_saves_the_belief_and_resumes_from_it(runs, fake, capsys) -> None:
    root, run = runs["root"], runs["bad"]
    api = fake([message(text("Let me look."), tool_use("toolu_1", "diagnose", {"run": run}), stop="tool_use"),
                final_answer()])  # fmt: skip

    assert main(["ask", run, "Why is my loss NaN?", "--root", str(root)]) == 0

    out = capsys.readouterr()
    assert "learning rate is far too high" in out.out
    assert "> diagnose" in out.err  # the tool call was shown
    first, second = api.requests
    assert first["path"] == "/v1/messages" and first["headers"]["Authorization"] == "Bearer test-key"
    assert first["body"]["model"] == "claude-sonnet-5-5"
    tools = {t["name"]: t for t in first["body"]["tools"]}
    assert len(tools) == 14 and "run" in tools["diagnose"]["input_schema"]["properties"]
    assert INSTRUCTIONS in first["body"]["system"] and f"diagnose(run={run!r})" in first["body"]["system"]
    assert first["body"]["messages"] == [{"role": "user", "content": "Why is my loss NaN?"}]
    # The model got the real diagnosis of the real run back.
    (result,) = tool_results(second)
    assert result["tool_use_id"] == "toolu_1" and result["is_error"] is False
    real = diagnose(Catalog(root), run)
    sent = json.loads(result["content"][0]["text"])
    assert sent["health_score"] == real.health_score < 80
    assert {i["code"] for i in sent["issues"]} == {i.code for i in real.issues}
    # The belief from the answer's JSON block is saved; the next ask starts from it.
    history = get_beliefs(Catalog(root), run)["beliefs"]
    assert [b["hypothesis"] for b in history] == [BELIEF["hypothesis"]]
    assert history[0]["question"] == "Why is my loss NaN?" and history[0]["confidence"] == 0.8

    api = fake([final_answer({**BELIEF, "confidence": 0.9})])
    assert main(["ask", run, "Is it still the learning rate?", "--root", str(root), "--json"]) == 0
    opening = api.requests[0]["body"]["messages"][0]["content"]
    assert opening.startswith("Is it still the learning rate?") and BELIEF["hypothesis"] in opening
    assert [b["confidence"] for b in get_beliefs(Catalog(root), run)["beliefs"]] == [0.8, 0.9]


def test_tool_errors_go_back_to_the_model_and_its_own_record_belief_is_not_repeated(runs, fake, capsys) -> None:
    root, run = runs["root"], runs["good"]
    api = fake([
        message(tool_use("t1", "diagnose", {"run": "no-such-run"}), tool_use("t2", "no_such_tool", {}),
                tool_use("t3", "record_belief", {**BELIEF, "runs": [run]}), stop="tool_use"),
        final_answer(),
    ])  # fmt: skip

    before = get_beliefs(Catalog(root), run)["total"]
    assert main(["ask", run, "How is it going?", "--root", str(root), "--json"]) == 0

    out = json.loads(capsys.readouterr().out)
    assert out["answer"].startswith(ANSWER) and out["belief"] == BELIEF and out["turns"] == 2
    assert [(c["name"], c["is_error"]) for c in out["tool_calls"]] == [
        ("diagnose", True), ("no_such_tool", True), ("record_belief", False)]  # fmt: skip
    bad_run, bad_tool, saved = tool_results(api.requests[1])
    assert bad_run["is_error"] and "list_runs" in bad_run["content"][0]["text"]
    assert bad_tool["is_error"] and "no_such_tool" in bad_tool["content"][0]["text"]
    assert not saved["is_error"]
    assert out["belief_saved_by"] == "model" and get_beliefs(Catalog(root), run)["total"] == before + 1


def test_plots_reach_the_model_as_images_and_large_results_are_cut(runs, fake) -> None:
    root, run = runs["root"], runs["good"]
    api = fake([
        message(tool_use("p", "plot_metrics", {"runs": [run]}),
                tool_use("s", "get_metric_series", {"run": run, "keys": ["train/loss", "grad_norm", "lr"]}),
                stop="tool_use"),
        message(text("Smooth descent, nothing to fix.")),  # no belief block: nothing is saved
    ])  # fmt: skip

    before = get_beliefs(Catalog(root), run)["total"]
    answer = ask(root, run, "Show me the loss", max_result_chars=2000)

    assert answer.answer == "Smooth descent, nothing to fix." and answer.belief is None and not answer.belief_saved_by
    plot, series = tool_results(api.requests[1])
    image = next(b for b in plot["content"] if b["type"] == "image")
    assert image["source"]["media_type"] == "image/png"
    assert base64.b64decode(image["source"]["data"]).startswith(b"\x89PNG")
    cut = series["content"][0]["text"]
    assert len(cut) < 2300 and "truncated by trainatlas ask: 2,000 of" in cut
    assert get_beliefs(Catalog(root), run)["total"] == before


def test_max_turns_stops_a_model_that_keeps_calling_tools(runs, fake, capsys) -> None:
    api = fake([message(tool_use("t", "list_runs", {}), stop="tool_use")], repeat_last=True)

    assert main(["ask", runs["good"], "?", "--root", str(runs["root"]), "--max-turns", "3"]) == 2

    assert len(api.requests) == 3
    assert "no answer after 3 turns (3 tool calls)" in capsys.readouterr().err


@pytest.mark.parametrize(("status", "kind", "requests"), [(400, "invalid_request_error", 1), (500, "api_error", 3)])
def test_api_errors_exit_2_with_the_api_message(runs, fake, capsys, status, kind, requests) -> None:
    api = fake([error(status, kind, "scripted failure")], repeat_last=True)

    assert main(["ask", runs["good"], "?", "--root", str(runs["root"]), "--json"]) == 2

    assert json.loads(capsys.readouterr().out) == {"error": f"Anthropic API error {status}: scripted failure"}
    assert len(api.requests) == requests  # the SDK retries a 5xx twice, never a 4xx


def test_no_key_or_an_unknown_run_fails_before_calling_the_api(runs, fake, monkeypatch, capsys) -> None:
    api = fake([final_answer()])
    assert main(["ask", "no-such-run", "?", "--root", str(runs["root"])]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err

    monkeypatch.delenv("ANTHROPIC_API_KEY")
    assert main(["ask", runs["good"], "?", "--root", str(runs["root"])]) == 2
    assert "set $ANTHROPIC_API_KEY" in capsys.readouterr().err
    assert api.requests == []


def test_without_the_anthropic_package_the_error_names_the_extra(runs) -> None:
    code = (
        "import sys; sys.modules['anthropic'] = None\n"
        "from trainatlas.cli import main\n"
        f"sys.exit(main(['ask', {runs['good']!r}, '?', '--root', {str(runs['root'])!r}]))"
    )
    env = {**os.environ, "ANTHROPIC_API_KEY": "k", "PYTHONPATH": str(Path(__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    assert "pip install 'trainatlas[agent]'" in " ".join(done.stderr.split())  # rich wraps at 80 columns


def test_parse_belief_takes_the_last_block_that_states_a_belief() -> None:
    answer = 'Data:\n```json\n{"rows": 3}\n```\nBelief:\n```json\n{"hypothesis": "h", "confidence": 0.4}\n```\n'
    assert parse_belief(answer) == {"hypothesis": "h", "confidence": 0.4}
    assert parse_belief("no block here") is None
    assert parse_belief('```json\n{"hypothesis": "h", broken\n```') is None
