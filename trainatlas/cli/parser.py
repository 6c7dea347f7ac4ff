"""The ``trainatlas`` command line: its commands, arguments and help."""

from __future__ import annotations

import argparse
from pathlib import Path

from trainatlas import __version__

RUN_HELP = "run id, run name (the newest run of that name if several), unique id prefix, or run directory"


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", help="runs directory (default: $TRAINATLAS_ROOT or ./trainatlas-runs)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainatlas", description="Record, query and diagnose PyTorch training runs.")
    parser.add_argument("--version", action="version", version=f"trainatlas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("runs", help="list the runs under the root, newest first")
    _add_common(p)
    p.add_argument("--project", help="only this project")
    p.add_argument("--status", choices=["running", "completed", "failed", "crashed"])

    p = sub.add_parser("show", help="one run: status, config, metrics, layers, events")
    _add_common(p)
    p.add_argument("run", help=RUN_HELP)

    p = sub.add_parser("events", help="a run's events, newest first: alerts, phase changes, lifecycle")
    _add_common(p)
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--kind", action="append", dest="kinds", metavar="KIND",
                   help="only this kind (repeatable): alert, phase, lifecycle, observer")  # fmt: skip
    p.add_argument("--min-severity", choices=["info", "warning", "critical"], help="hide less severe events")
    p.add_argument("--limit", type=int, default=100, help="at most this many events (default 100)")

    p = sub.add_parser("sql", help="run one read-only SELECT over runs, scalars, layers, events")
    _add_common(p)
    p.add_argument("query", help='e.g. "SELECT key, count(*) FROM scalars GROUP BY key"')
    p.add_argument("--max-rows", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before the query is stopped")

    p = sub.add_parser("diagnose", help="all diagnostic checks on a run: issues, health score, advice")
    _add_common(p)
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--checks", help="comma-separated codes to run (default: all)")

    p = sub.add_parser("status", help="phase, ETA, forecast of the main metric, early-stop advice")
    _add_common(p)
    p.add_argument("run", help=RUN_HELP)

    p = sub.add_parser("check", help="CI gate: exit 1 when an issue at or above --fail-on is present")
    _add_common(p)
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--fail-on", choices=["critical", "warning"], default="critical")

    p = sub.add_parser("compare", help="two runs side by side: config, metrics, speed, issues, verdict")
    _add_common(p)
    p.add_argument("run_a")
    p.add_argument("run_b")

    p = sub.add_parser("carbon", help="sustainability report: energy, CO2, cost, grade, recommendations")
    _add_common(p)
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("--carbon-price", type=float, default=50.0, help="EUR per tonne of CO2 (default: EU ETS 50)")

    p = sub.add_parser("serve", help="MCP server over the root: stdio (default) or streamable HTTP")
    p.add_argument("--root", help="runs directory (default: $TRAINATLAS_ROOT or ./trainatlas-runs)")
    p.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP interface (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--token", help="require 'Authorization: Bearer TOKEN' over HTTP (or set $TRAINATLAS_TOKEN)")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a Host header clients may use (repeatable), e.g. the machine's name with --host 0.0.0.0",
    )

    p = sub.add_parser("ask", help="ask Claude about a run: it calls the trainatlas tools (needs the agent extra)")
    _add_common(p)
    p.add_argument("run", help=RUN_HELP)
    p.add_argument("question", help='e.g. "why did the loss jump at step 300?"')
    p.add_argument("--model", help="Anthropic model (default: $TRAINATLAS_MODEL or claude-sonnet-5-5)")
    p.add_argument("--max-turns", type=int, default=12, help="model calls before giving up (default 12)")
    p.add_argument("--prompt", choices=["diagnose_run", "should_i_stop", "postmortem"], default="diagnose_run",
                   help="the belief-state prompt that guides the investigation")  # fmt: skip

    p = sub.add_parser("watch", help="follow a live run or a growing log: narrate changes, send alerts")
    _add_common(p)
    p.add_argument("target", nargs="?", help="run id, run name, run directory, or training log file")
    p.add_argument("--auto", action="store_true", help="follow the newest training log or run")
    p.add_argument("--base-dir", action="append", type=Path,
                   help="where --auto also looks, besides the current directory and the usual places (repeatable)")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="with --auto: wait for one to appear")
    p.add_argument("--project", help="project for a log file's run (default: chosen by the ingester)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    p.add_argument("--once", action="store_true", help="analyse once, print, exit with the `check` exit codes")
    p.add_argument("--fail-on", choices=["critical", "warning"], default="critical", help="exit 1 on such issues")
    p.add_argument("--max-time", type=float, metavar="SECONDS", help="stop watching after this long")
    p.add_argument("--alert-on", choices=["critical", "warning", "info"], default="warning",
                   help="lowest severity sent as an alert (default warning; the run's end is always sent)")  # fmt: skip
    p.add_argument("--cooldown", type=float, default=600.0, help="seconds before the same kind of alert is resent")
    p.add_argument("--telegram-token", help="bot token (or $TRAINATLAS_TELEGRAM_TOKEN)")
    p.add_argument("--telegram-chat", help="chat id (or $TRAINATLAS_TELEGRAM_CHAT)")
    p.add_argument("--telegram-api", help="Bot API base URL (or $TRAINATLAS_TELEGRAM_API; https://api.telegram.org)")
    p.add_argument("--webhook", help="Slack or Discord incoming-webhook URL (or $TRAINATLAS_WEBHOOK_URL)")

    p = sub.add_parser("ingest", help="read existing training logs (TensorBoard, MMEngine, HF, CSV, text) into runs")
    _add_common(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="log files or directories to walk")
    p.add_argument("--project", help="project of the new runs (default: imported, or the run's current one)")

    p = sub.add_parser("demo", help="train three small models (one healthy, two buggy) and show them")
    _add_common(p)
    p.add_argument("--steps", type=int, default=600, help="optimizer steps per run")
    return parser

