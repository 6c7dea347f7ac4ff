"""Local stand-ins for the Telegram Bot API and Slack/Discord webhooks: loopback HTTP servers that
record every request and answer with a scripted status, so no test reaches the network."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeEndpoint:
    """Answers ``statuses`` in order (then ``default``); ``delay_s`` before each answer."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    delay_s: float = 0.0
    answer: dict[int, bytes] = field(default_factory=dict)  # body per status
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append(Request("POST", self.path, dict(self.headers), body, time.monotonic()))
                time.sleep(fake.delay_s)
                status = fake.statuses.pop(0) if fake.statuses else fake.default
                payload = fake.answer.get(status, b'{"ok": true}' if status < 300 else b'{"ok": false}')
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def texts(self) -> list[str]:
        return [r.json.get("text", "") for r in self.requests]


def free_port() -> int:
    """A loopback port nobody listens on right now, for a server started in a subprocess."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
