"""``trainatlas watch``: follow a live run or a growing log, tell what changes, send alerts."""

from trainatlas.watch.alerts import Alerts, Telegram, Webhook, channels_from
from trainatlas.watch.narrative import narrate, notify
from trainatlas.watch.sources import AutoSearch, LogSource, RunSource, newest, open_source
from trainatlas.watch.watcher import Event, Snapshot, Watcher, alertable, analyse, diff

__all__ = [
    "Alerts", "AutoSearch", "Event", "LogSource", "RunSource", "Snapshot", "Telegram", "Watcher", "Webhook",
    "alertable", "analyse", "channels_from", "diff", "narrate", "newest", "notify", "open_source",
]  # fmt: skip
