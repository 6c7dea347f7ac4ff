"""``run.json``: what a run is (id, name, config, environment, model) and whether it is alive.

A run that says ``running`` but whose process is gone on this host, or whose heartbeat is old
when it ran elsewhere, is reported as ``crashed``. An ingested log has no process: it is running
while its file grows, then completed, or failed when its last lines show a crash (a traceback).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psutil

STATUSES = ("running", "completed", "failed", "crashed")
HEARTBEAT_STALE_S = 120.0
LOG_LIVE_S = 120.0  # a log modified this recently is still being written (a slow epoch logs every minute or so)


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def read_run_json(path: Path) -> dict[str, Any]:
    """Read a run.json; raises ``ValueError`` naming the file when it is not a JSON object."""
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable run.json ({exc})") from exc
    if not isinstance(info, dict) or "run_id" not in info:
        raise ValueError(f"{path}: run.json has no run_id")
    return info


KEPT_KEYS = ("review",)  # written by readers (the MCP server); kept when the Observer rewrites run.json


def write_run_json(path: Path, info: dict[str, Any]) -> None:
    """Replace run.json atomically, carrying over the keys readers own when ``info`` lacks them."""
    missing = [k for k in KEPT_KEYS if k not in info]
    if missing and path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        if isinstance(old, dict):
            info = {**info, **{k: old[k] for k in missing if k in old}}
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(json.dumps(info, indent=1, default=str))
    os.replace(tmp, path)


def process_identity() -> dict[str, Any]:
    """Enough to tell later, from another process, whether this one is still alive."""
    me = psutil.Process()
    return {"host": socket.gethostname(), "pid": me.pid, "pid_created": me.create_time()}


def _process_alive(pid: int, created: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        return created is None or abs(proc.create_time() - created) < 1.0
    except (psutil.Error, ValueError, TypeError):
        return False


def effective_status(info: dict[str, Any], now: datetime | None = None) -> str:
    """The status a reader should show: ``running`` only while the writer is really alive."""
    status = info.get("status", "running")
    if status != "running":
        return status if status in STATUSES else "failed"
    now = now or datetime.now(timezone.utc)
    if str(info.get("source", "")).startswith("ingest:"):
        return _log_status(info, now)
    if info.get("host") == socket.gethostname() and info.get("pid"):
        return "running" if _process_alive(info["pid"], info.get("pid_created")) else "crashed"
    beat = parse_iso(info.get("heartbeat_at")) or parse_iso(info.get("started_at"))
    if beat is None or (now - beat).total_seconds() > HEARTBEAT_STALE_S:
        return "crashed"
    return "running"


def log_status(live: bool, parser_state: dict[str, Any]) -> str:
    """An ingested log's status: running while it grows; once it stopped, failed if it ends in a
    crash signature (the parser keeps the last one no training row followed), else completed."""
    if live:
        return "running"
    return "failed" if parser_state.get("crash") else "completed"


def _log_status(info: dict[str, Any], now: datetime) -> str:
    """A log recorded as running when it was last ingested: judged by its file's mtime now (the
    mtime at that ingest when the file is gone), never by a process or a heartbeat."""
    try:
        mtime: datetime | None = datetime.fromtimestamp(os.stat(info["source_path"]).st_mtime, timezone.utc)
    except (OSError, KeyError, TypeError, ValueError):
        mtime = parse_iso(info.get("heartbeat_at"))
    live = mtime is not None and (now - mtime).total_seconds() < LOG_LIVE_S
    return log_status(live, (info.get("ingest") or {}).get("parser") or {})
