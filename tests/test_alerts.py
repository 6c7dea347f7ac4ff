"""Alerts: the exact Telegram and webhook requests, retries, a dead endpoint, the cooldown, configuration."""

from __future__ import annotations

import socket
import time

import pytest
from http_fakes import FakeEndpoint

from trainatlas.watch.alerts import Alerts, Telegram, Webhook, channels_from

TOKEN = "123456:ABC-secret"


@pytest.fixture
def endpoint():
    fakes: list[FakeEndpoint] = []

    def make(**kwargs) -> FakeEndpoint:
        fakes.append(FakeEndpoint(**kwargs))
        return fakes[-1]

    yield make
    for fake in fakes:
        fake.close()


def deliver(channels, *texts: str, **kwargs) -> tuple[Alerts, list[str]]:
    warnings: list[str] = []
    alerts = Alerts(channels, backoff_s=0.01, warn=warnings.append, **kwargs)
    for text in texts:
        alerts.send(text)
    alerts.close()
    return alerts, warnings


def test_telegram_posts_send_message_as_json(endpoint):
    tg = endpoint()
    alerts, warnings = deliver([Telegram(TOKEN, "-10042", api=tg.url + "/")], "loss went NaN at step 27")
    (req,) = tg.requests
    assert req.method == "POST" and req.path == f"/bot{TOKEN}/sendMessage"
    assert req.headers["Content-Type"] == "application/json"
    assert req.json == {"chat_id": "-10042", "text": "loss went NaN at step 27",
                        "disable_web_page_preview": True}  # fmt: skip
    assert alerts.sent == {"telegram": 1} and not warnings


def test_webhook_json_suits_slack_and_discord(endpoint):
    hook = endpoint(default=204, answer={204: b""})  # Discord answers 204 No Content
    _, warnings = deliver([Webhook(hook.url + "/api/webhooks/1/tok")], "x" * 2500)
    (req,) = hook.requests
    assert req.path == "/api/webhooks/1/tok" and req.headers["Content-Type"] == "application/json"
    body = req.json
    assert set(body) == {"text", "content"} and body["text"] == body["content"]
    assert len(body["content"]) == 2000 and body["content"].endswith("…")  # Discord's limit
    assert not warnings


def test_a_failing_endpoint_is_retried_until_it_answers(endpoint):
    tg = endpoint(statuses=[500, 502])
    waits: list[float] = []  # the backoff asked for, counted instead of timed: no clock to race
    alerts, warnings = deliver([Telegram(TOKEN, "42", api=tg.url)], "diverging", sleep=waits.append)
    assert len(tg.requests) == 3 and {r.json["text"] for r in tg.requests} == {"diverging"}
    assert waits == [0.01, 0.02]  # backoff_s, then doubled
    assert alerts.sent["telegram"] == 1 and not warnings


def test_too_many_requests_waits_as_told(endpoint):
    tg = endpoint(statuses=[429], answer={429: b'{"ok": false, "parameters": {"retry_after": 0.3}}'})
    waits: list[float] = []
    alerts, _ = deliver([Telegram(TOKEN, "42", api=tg.url)], "x", sleep=waits.append)
    assert len(tg.requests) == 2 and waits == [0.3]  # Telegram's retry_after, not our backoff
    assert alerts.sent["telegram"] == 1


def test_a_dead_endpoint_warns_once_and_never_blocks(endpoint):
    hook = endpoint(default=500, delay_s=0.1)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    warnings: list[str] = []
    alerts = Alerts([Webhook(hook.url + "/secret-path"), Telegram(TOKEN, "42", api=closed)], tries=2,
                    backoff_s=0.01, warn=warnings.append)  # fmt: skip
    started = time.monotonic()
    for i in range(3):
        alerts.send(f"alert {i}")
    assert time.monotonic() - started < 0.2  # queued: a slow endpoint does not hold up the caller
    alerts.close()
    assert len(hook.requests) == 6  # 3 messages x 2 tries
    assert alerts.failed == {"webhook 127.0.0.1": 3, "telegram": 3}
    assert len(warnings) == 2 and all("the watch goes on" in w for w in warnings)
    assert not any(TOKEN in w or "secret-path" in w for w in warnings)  # secrets stay out of logs


def test_telegram_ok_false_is_a_failure_not_retried(endpoint):
    tg = endpoint(answer={200: b'{"ok": false, "description": "chat not found"}'})
    alerts, warnings = deliver([Telegram(TOKEN, "42", api=tg.url)], "x")
    assert len(tg.requests) == 1 and alerts.failed["telegram"] == 1 and len(warnings) == 1


def test_cooldown_is_per_kind():
    alerts = Alerts([], cooldown_s=0.2)
    assert alerts.allow("nonfinite_loss")
    assert not alerts.allow("nonfinite_loss")  # the same signal again: held back
    assert alerts.allow("phase:DIVERGING")  # another kind goes through
    time.sleep(0.25)
    assert alerts.allow("nonfinite_loss")


def test_channels_from_flags_and_environment():
    env = {
        "TRAINATLAS_TELEGRAM_TOKEN": "t",
        "TRAINATLAS_TELEGRAM_CHAT": "7",
        "TRAINATLAS_TELEGRAM_API": "http://127.0.0.1:9",
        "TRAINATLAS_WEBHOOK_URL": "http://127.0.0.1:9/h",
    }
    tg, hook = channels_from(env=env)
    assert (tg.token, tg.chat_id, tg.api) == ("t", "7", "http://127.0.0.1:9") and hook.url.endswith("/h")
    (tg,) = channels_from(telegram_token="flag", telegram_chat="8", env={})
    assert (tg.token, tg.chat_id, tg.api) == ("flag", "8", "https://api.telegram.org")
    assert channels_from(env={}) == []
    with pytest.raises(ValueError, match="chat id"):
        channels_from(telegram_token="t", env={})
