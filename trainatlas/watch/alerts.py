"""Notifications: Telegram (Bot API) and a generic webhook (Slack and Discord compatible JSON).

Messages go out from a background thread, so a slow or dead endpoint never holds up the watch; each
send is retried with backoff, and a failure is reported once per channel, never raised. A cooldown
per kind of alert (an issue code, a phase) keeps a flapping signal from sending the same news again.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

TELEGRAM_API = "https://api.telegram.org"
TELEGRAM_LIMIT = 4096  # characters per message
WEBHOOK_LIMIT = 2000  # Discord's limit for `content`; Slack takes more
COOLDOWN_S = 600.0
TRIES = 3
BACKOFF_S = 1.0  # wait before the 2nd try; doubles after each failure
MAX_RETRY_AFTER_S = 30.0
TIMEOUT_S = 10.0
USER_AGENT = "trainatlas-watch"


class SendError(Exception):
    """A send that failed; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, retry: bool = True, after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.after_s = after_s


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def post_json(url: str, payload: dict, timeout: float = TIMEOUT_S) -> bytes:
    """POST ``payload`` as JSON; raises SendError (retryable for network errors, 429 and 5xx)."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": USER_AGENT}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        after = None
        if exc.code == 429:
            try:  # Telegram: {"parameters": {"retry_after": 5}}; Discord: {"retry_after": 1.5}
                answer = json.loads(exc.read() or b"{}")
                after = answer.get("parameters", {}).get("retry_after", answer.get("retry_after"))
            except (ValueError, AttributeError):
                after = None
            after = after if after is None else float(after)
        raise SendError(
            f"HTTP {exc.code} {exc.reason}", retry=exc.code == 429 or exc.code >= 500, after_s=after
        ) from None
    except (urllib.error.URLError, OSError) as exc:  # refused, unreachable, timed out
        reason = getattr(exc, "reason", exc)
        raise SendError(f"cannot reach the endpoint ({reason})") from None


@dataclass
class Telegram:
    """A chat through the Telegram Bot API: ``POST {api}/bot{token}/sendMessage``."""

    token: str
    chat_id: str
    api: str = TELEGRAM_API
    name: str = "telegram"

    def send(self, text: str) -> None:
        url = f"{self.api.rstrip('/')}/bot{self.token}/sendMessage"
        answer = post_json(url, {"chat_id": self.chat_id, "text": _clip(text, TELEGRAM_LIMIT),
                                 "disable_web_page_preview": True})  # fmt: skip
        try:
            ok = json.loads(answer or b"{}").get("ok", True)
        except (ValueError, AttributeError):
            ok = True  # a 2xx without JSON: accepted
        if ok is False:
            raise SendError("Telegram answered ok=false", retry=False)


@dataclass
class Webhook:
    """An incoming webhook: the JSON carries ``text`` (Slack, Mattermost) and ``content`` (Discord)."""

    url: str
    name: str = field(init=False, default="webhook")

    def __post_init__(self) -> None:
        self.name = f"webhook {urllib.parse.urlsplit(self.url).hostname}"  # never the path: it holds the secret

    def send(self, text: str) -> None:
        text = _clip(text, WEBHOOK_LIMIT)
        post_json(self.url, {"text": text, "content": text})


Channel = Telegram | Webhook


def channels_from(
    telegram_token: str | None = None,
    telegram_chat: str | None = None,
    telegram_api: str | None = None,
    webhook_url: str | None = None,
    env: dict[str, str] | None = None,
) -> list[Channel]:
    """The channels configured by flags, else by ``TRAINATLAS_TELEGRAM_*`` and ``TRAINATLAS_WEBHOOK_URL``."""
    env = os.environ if env is None else env
    token = telegram_token or env.get("TRAINATLAS_TELEGRAM_TOKEN")
    chat = telegram_chat or env.get("TRAINATLAS_TELEGRAM_CHAT")
    api = telegram_api or env.get("TRAINATLAS_TELEGRAM_API") or TELEGRAM_API
    url = webhook_url or env.get("TRAINATLAS_WEBHOOK_URL")
    out: list[Channel] = []
    if token or chat:
        if not (token and chat):
            raise ValueError("Telegram needs both a bot token and a chat id (--telegram-token, --telegram-chat)")
        out.append(Telegram(token, chat, api))
    if url:
        out.append(Webhook(url))
    return out


def _warn(message: str) -> None:
    print(f"trainatlas watch: {message}", file=sys.stderr, flush=True)


class Alerts:
    """Sends alerts to every channel from a background thread, with a cooldown per kind."""

    def __init__(
        self,
        channels: list[Channel],
        cooldown_s: float = COOLDOWN_S,
        tries: int = TRIES,
        backoff_s: float = BACKOFF_S,
        warn: Callable[[str], None] = _warn,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.channels = channels
        self.cooldown_s = cooldown_s
        self.tries = max(1, tries)
        self.backoff_s = backoff_s
        self.warn = warn
        self.sleep = sleep  # injectable, so a test counts the waits instead of timing them
        self.sent: dict[str, int] = {c.name: 0 for c in channels}
        self.failed: dict[str, int] = {c.name: 0 for c in channels}
        self._last: dict[str, float] = {}  # kind -> monotonic time it was last alerted
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def allow(self, kind: str) -> bool:
        """True (and the cooldown starts) unless ``kind`` was alerted within the cooldown."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.cooldown_s:
            return False
        self._last[kind] = now
        return True

    def send(self, text: str) -> None:
        """Queue ``text`` for every channel; returns at once."""
        if not self.channels:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="trainatlas-alerts", daemon=True)
            self._thread.start()
        self._queue.put(text)

    def close(self, timeout: float = 15.0) -> None:
        """Deliver what is queued (up to ``timeout`` seconds), then stop the thread."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)
        self._thread = None

    def _work(self) -> None:
        while (text := self._queue.get()) is not None:
            for channel in self.channels:
                self._deliver(channel, text)

    def _deliver(self, channel: Channel, text: str) -> None:
        wait = self.backoff_s
        for attempt in range(1, self.tries + 1):
            try:
                channel.send(text)
                self.sent[channel.name] += 1
                return
            except SendError as exc:
                if not exc.retry or attempt == self.tries:
                    self.failed[channel.name] += 1
                    if self.failed[channel.name] == 1:  # once per channel: a dead endpoint must not flood stderr
                        self.warn(f"could not send an alert to {channel.name}: {exc} (the watch goes on)")
                    return
                self.sleep(min(exc.after_s, MAX_RETRY_AFTER_S) if exc.after_s is not None else wait)
                wait *= 2
            except Exception as exc:  # noqa: BLE001 - an alert must never stop the watch
                self.failed[channel.name] += 1
                if self.failed[channel.name] == 1:
                    self.warn(f"could not send an alert to {channel.name}: {exc!r} (the watch goes on)")
                return
