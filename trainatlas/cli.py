"""The ``trainatlas`` command: the same answers as the MCP tools, in a terminal or as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainatlas import __version__
from trainatlas.fmt import duration as _duration
from trainatlas.fmt import number as _num

# Piped output gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except LookupError as exc:  # an unknown run
        return _fail(args, str(exc))
    except ValueError as exc:  # bad input: a rejected query, a malformed file
        return _fail(args, str(exc))


def _existing_root(args: argparse.Namespace) -> Path:
    """``--root`` (or its default) for a command that reads runs: a missing root is a mistyped path,
    not an empty list of runs, so it is an error (LookupError: exit 2)."""
    from trainatlas.store.layout import resolve_root

    root = resolve_root(args.root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise LookupError(f"root {root} {what} (give --root DIR or set $TRAINATLAS_ROOT to where the runs are)")
    return root


def _catalog(args: argparse.Namespace) -> Any:
    """The catalog over ``--root``; DuckDB is imported here, so `serve` and `--help` start without it."""
    from trainatlas.store.catalog import Catalog

    return Catalog(_existing_root(args))


def _fail(args: argparse.Namespace, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": message}))
    else:
        Console(stderr=True).print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return 2


def _emit(args: argparse.Namespace, payload: Any, render: Any) -> int:
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        render()
    return 0


# -- runs --------------------------------------------------------------------------------------------


STATUS_STYLE = {"running": "cyan", "completed": "green", "failed": "red", "crashed": "magenta"}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def render_runs(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(rows)} runs", title_justify="left")
    for col in ("project", "name", "id", "status", "steps", "last loss", "age"):
        table.add_column(col, justify="right" if col in ("steps", "last loss") else "left",
                         no_wrap=col == "id")  # fmt: skip
    for r in rows:
        style = STATUS_STYLE.get(r["status"], "")
        table.add_row(
            r["project"], r["name"], r["run_id"], f"[{style}]{r['status']}[/{style}]",
            str(r["steps"]), _num(r["last_loss"]), _age(r["age_s"]),
        )  # fmt: skip
    console.print(table)


def cmd_runs(args: argparse.Namespace) -> int:
    from trainatlas.tools.runs import list_runs

    rows = list_runs(_catalog(args), args.project, args.status)
    return _emit(args, rows, lambda: render_runs(rows))


# -- show --------------------------------------------------------------------------------------------


def render_details(d: dict[str, Any]) -> None:
    run = d["run"]
    style = STATUS_STYLE.get(run["status"], "")
    console.print(
        f"[bold]{run['name']}[/bold] ({run['run_id']}, project {run['project']}): "
        f"[{style}]{run['status']}[/{style}], {run['steps']} steps\n{run['path']}",
        highlight=False,
    )
    model, opt = d["model"], d["optimizer"]
    if model:
        console.print(f"model {model.get('type')}: {model.get('params', 0):,} parameters")
    if opt:
        lrs = ", ".join(str(g.get("lr")) for g in opt.get("param_groups", []))
        console.print(f"optimizer {opt.get('type')}: lr {lrs}")
    if d["config"]:
        console.print("config " + json.dumps(d["config"], default=str), highlight=False)
    table = Table(title="metrics", title_justify="left")
    for col in ("key", "n", "steps", "last", "min", "max"):
        table.add_column(col, justify="left" if col in ("key", "steps") else "right")
    for m in d["metrics"]:
        table.add_row(m["key"], str(m["n"]), f"{m['first_step']}-{m['last_step']}",
                      _num(m["last"]), _num(m["min"]), _num(m["max"]))  # fmt: skip
    console.print(table)
    lay = d["layers"]
    console.print(f"layer stats: {lay['layers']} layers at {lay['sampled_steps']} sampled steps")
    for e in d["events"]:
        console.print(escape(f"  step {e['step']}: [{e['severity']}] {e['message']}"), highlight=False)
    for channel, err in d["channels_off"].items():
        console.print(f"[yellow]channel {channel} was switched off: {escape(err)}[/yellow]", highlight=False)
    if d["traceback"]:
        console.print("[red]traceback:[/red]\n" + escape(d["traceback"]), highlight=False)


def cmd_show(args: argparse.Namespace) -> int:
    from trainatlas.tools.runs import run_details

    details = run_details(_catalog(args), args.run)
    return _emit(args, details, lambda: render_details(details))


# -- events ------------------------------------------------------------------------------------------


def cmd_events(args: argparse.Namespace) -> int:
    from trainatlas.tools.series import list_events

    result = list_events(_catalog(args), args.run, args.kinds, args.min_severity, args.limit)

    def render() -> None:
        events = result["events"]
        console.print(f"{len(events)} event(s) of run {result['run_id']}, newest first", highlight=False)
        for e in events:
            style = SEVERITY_STYLE.get(e["severity"], "default")
            what = "phase" if e["kind"] == "phase" else f"{e['kind']} {e['code']}:"  # a phase message names it
            line = f"step {e['step']}: [{e['severity']}] {what} {e['message']}"
            console.print(f"  [{style}]{escape(line)}[/{style}]", highlight=False, soft_wrap=True)
        if result["truncated"]:
            console.print(f"[yellow]only the newest {args.limit} are shown (--limit)[/yellow]")

    return _emit(args, result, render)


# -- sql ---------------------------------------------------------------------------------------------


def cmd_sql(args: argparse.Namespace) -> int:
    from trainatlas.store.sandbox import open_sandbox, run_select

    result = run_select(open_sandbox(_existing_root(args)).con, args.query, args.timeout, args.max_rows)
    payload = {"columns": result.columns, "rows": result.rows, "truncated": result.truncated}

    def render() -> None:
        table = Table(title_justify="left")
        for col in result.columns:
            table.add_column(col)
        for row in result.rows:
            table.add_row(*("NULL" if v is None else _num(v) if isinstance(v, float) else str(v) for v in row))
        console.print(table)
        if result.truncated:
            console.print(f"[yellow]only the first {args.max_rows} rows are shown[/yellow]")

    return _emit(args, payload, render)


# -- diagnose, status, check -------------------------------------------------------------------------

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "blue"}


def render_diagnosis(d: Any) -> None:
    run = d.run
    score_style = "green" if d.health_score >= 80 else "yellow" if d.health_score >= 50 else "red"
    console.print(
        f"[bold]{escape(run.name)}[/bold] ({run.run_id}): health [{score_style}]{d.health_score}/100[/{score_style}], "
        f"phase {d.phase}, {run.steps} steps, {run.status}",
        highlight=False,
    )
    if not d.issues:
        console.print("[green]no issues found[/green]")
    for issue in d.issues:
        style = SEVERITY_STYLE[issue.severity]
        console.print(f"[{style}]{issue.severity:>8}[/{style}] {issue.code}: {escape(issue.message)}", highlight=False)
        console.print(f"         fix: {escape(issue.fix_prompt)}", style="dim", highlight=False)
    render_advice(d.recommendation, d.eta)
    if d.skipped:
        console.print(f"skipped (no data): {', '.join(s.code for s in d.skipped)}", style="dim")


def render_advice(advice: Any, remaining: Any) -> None:
    from trainatlas.tools.answers import STOPPING

    if remaining is not None:
        console.print(
            f"ETA: {remaining.remaining_steps} steps, {_duration(remaining.seconds)} "
            f"({_duration(remaining.low_s)}-{_duration(remaining.high_s)})",
            highlight=False,
        )
    word = advice.recommendation.replace("_", " ")
    console.print(f"[bold]recommendation: {word}[/bold] - {escape(advice.reason)}", highlight=False)
    if advice.savings and advice.recommendation in STOPPING:
        sv = advice.savings
        console.print(
            f"stopping now saves {_duration(sv.seconds)}, {sv.energy_kwh:.3g} kWh, {sv.co2_kg:.3g} kg CO2, "
            f"EUR {sv.cost_eur:.3g} ({escape(sv.basis)})",
            highlight=False,
        )


def cmd_diagnose(args: argparse.Namespace) -> int:
    from trainatlas.tools.report import diagnose

    codes = [c.strip() for c in args.checks.split(",")] if args.checks else None
    result = diagnose(_catalog(args), args.run, codes)
    return _emit(args, result.model_dump(mode="json"), lambda: render_diagnosis(result))


def cmd_status(args: argparse.Namespace) -> int:
    from trainatlas.tools.report import status

    result = status(_catalog(args), args.run)

    def render() -> None:
        console.print(f"[bold]{escape(result.run.name)}[/bold]: phase {result.phase}", highlight=False)
        for t in result.transitions:
            console.print(f"  step {t['step']}: {escape(t['message'])}", highlight=False)
        if result.forecast:
            fc = result.forecast.forecast
            console.print(
                f"forecast {result.forecast.metric} at step {fc.target_step}: {fc.value:.4g} "
                f"(80% {fc.low:.4g}-{fc.high:.4g}; now {fc.current:.4g}, best {fc.best_so_far:.4g})",
                highlight=False,
            )
        render_advice(result.recommendation, result.eta)

    return _emit(args, result.model_dump(mode="json"), render)


def cmd_check(args: argparse.Namespace) -> int:
    from trainatlas.tools.report import diagnose

    result = diagnose(_catalog(args), args.run)
    blocking = {"critical"} if args.fail_on == "critical" else {"critical", "warning"}
    failed = [i for i in result.issues if i.severity in blocking]
    _emit(
        args,
        {"run": result.run.run_id, "passed": not failed, "fail_on": args.fail_on,
         "health_score": result.health_score, "failing": [i.model_dump() for i in failed]},
        lambda: render_diagnosis(result),
    )  # fmt: skip
    return 1 if failed else 0


# -- compare, carbon -----------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from trainatlas.tools.compare import compare

    c = compare(_catalog(args), args.run_a, args.run_b)

    def render() -> None:
        console.print(
            f"[bold]A[/bold] {escape(c.a.name)} ({c.a.run_id}) vs [bold]B[/bold] {escape(c.b.name)} ({c.b.run_id})"
        )
        table = Table(title_justify="left")
        for col in ("", "A", "B"):
            table.add_column(col, justify="left" if not col else "right")
        for ch in c.config_changes:
            table.add_row(f"config {ch.key}", escape(str(ch.a)), escape(str(ch.b)))
        for m in c.metrics:
            table.add_row(f"{m.key} final", _num(m.final_a), _num(m.final_b))
            table.add_row(
                f"{m.key} best (step)", f"{_num(m.best_a)} ({m.best_step_a})", f"{_num(m.best_b)} ({m.best_step_b})"
            )
        table.add_row("s/step", _num(c.speed.get("step_s_a")), _num(c.speed.get("step_s_b")))
        table.add_row("health", str(c.health["a"]), str(c.health["b"]))
        table.add_row("issues only here", ", ".join(c.only_a) or "-", ", ".join(c.only_b) or "-")
        console.print(table)
        console.print(escape(c.verdict), highlight=False)

    return _emit(args, c.model_dump(mode="json"), render)


def cmd_carbon(args: argparse.Namespace) -> int:
    from trainatlas.tools.sustainability import sustainability_report

    r = sustainability_report(_catalog(args), args.run, args.carbon_price)

    def render() -> None:
        console.print(
            f"[bold]{escape(r.run.name)}[/bold]: grade [bold]{r.grade}[/bold], {r.energy_kwh:.3g} kWh, "
            f"{r.co2_kg:.3g} kg CO2, EUR {r.cost_eur:.3g} of carbon over {_duration(r.duration_s)} "
            f"({'measured' if r.measured else 'estimated'}: {escape(r.basis)})",
            highlight=False,
        )
        if r.power_w:
            console.print("power " + ", ".join(f"{k} {v:.3g} W" for k, v in r.power_w.items()))
        if r.share_after_convergence is not None:
            console.print(
                f"converged at step {r.convergence_step}; {r.share_after_convergence:.0%} of the energy came after"
            )
        for rec in r.recommendations:
            console.print(f"- {escape(rec)}", highlight=False)
        console.print(r.grade_rule, style="dim")

    return _emit(args, r.model_dump(mode="json"), render)


# -- ask ---------------------------------------------------------------------------------------------


def cmd_ask(args: argparse.Namespace) -> int:
    import logging

    from trainatlas.agent import AgentError, ToolCall, ask

    logging.getLogger("fastmcp").setLevel(logging.CRITICAL)  # tool errors go to the model, not to the terminal
    progress = Console(stderr=True)

    def show(call: ToolCall) -> None:
        if not args.json:
            mark = "[red]error[/red] " if call.is_error else ""
            progress.print(
                f"[dim]> {call.name} {escape(json.dumps(call.input)[:100])} {mark}({call.chars:,} chars, "
                f"{call.seconds:.2f} s)[/dim]",
                highlight=False,
            )

    try:
        result = ask(_existing_root(args), args.run, args.question, args.model, args.max_turns, args.prompt, show)
    except AgentError as exc:
        return _fail(args, str(exc))

    def render() -> None:
        from rich.markdown import Markdown

        console.print(Markdown(result.answer))
        why = "record_belief refused it" if result.belief else "no belief block in the answer"
        saved = {"model": "saved by the model", "ask": "saved", None: f"not saved ({why})"}
        tokens = f"{result.usage['input_tokens']:,} in / {result.usage['output_tokens']:,} out tokens"
        console.print(
            f"[dim]{result.turns} turns, {len(result.tool_calls)} tool calls, {tokens}, {result.model}; "
            f"belief {saved[result.belief_saved_by]}[/dim]",
            highlight=False,
        )

    return _emit(args, result.to_json(), render)


# -- watch -------------------------------------------------------------------------------------------


def cmd_watch(args: argparse.Namespace) -> int:
    import time

    from trainatlas.watch import Alerts, AutoSearch, Watcher, channels_from, narrate, newest, open_source
    from trainatlas.watch.narrative import as_json, headline, notify
    from trainatlas.watch.watcher import stop_event

    if args.auto == bool(args.target):
        return _fail(args, "give a run or a log file, or --auto")
    target = args.target
    if args.auto:
        search = AutoSearch.of(args.base_dir, args.root)
        found = newest(search, wait_s=args.wait, interval_s=args.interval)
        if found is None:
            waited = f" within {args.wait:g} s" if args.wait else ""
            return _fail(args, f"--auto found no training log or run{waited}; {search.describe_places()}. "
                               "Give the log file or run (trainatlas watch PATH), add --base-dir DIR, "
                               "or --wait SECONDS for one to appear")  # fmt: skip
        target = str(found)
        # stdout carries only event lines under --json: the pick goes to stderr there
        Console(stderr=args.json).print(escape(search.describe_pick(found)), highlight=False, soft_wrap=True)
    alerts = Alerts(channels_from(args.telegram_token, args.telegram_chat, args.telegram_api, args.webhook),
                    cooldown_s=args.cooldown)  # fmt: skip

    def report(events: list, snap: Any) -> None:
        if args.json:
            for event in events:
                print(json.dumps(as_json(event, snap), default=str), flush=True)
        else:
            stamp = time.strftime("%H:%M:%S")
            for i, line in enumerate(narrate(events, snap).split("\n")):  # a headline per event, then figures
                head = f"[dim]{stamp}[/dim] " if i == 0 else " " * (len(stamp) + 1)
                style = SEVERITY_STYLE[events[i].severity] if i < len(events) else "default"
                console.print(f"{head}[{style}]{escape(line)}[/{style}]", highlight=False, soft_wrap=True)
        notify(alerts, events, snap, args.alert_on)

    if not Path(target).expanduser().exists():  # a run id or name, looked up under the root
        _existing_root(args)
    watcher = Watcher(open_source(target, args.root, args.project), report, interval_s=args.interval)
    try:
        if args.once:
            watcher.poll()
        else:
            watcher.run(args.max_time)
    except KeyboardInterrupt:
        return 130
    finally:
        alerts.close()
    snap = watcher.snapshot
    if snap is None:
        return _fail(args, "the run could not be analysed")
    if watcher.timed_out:
        stop = stop_event(snap, args.max_time)
        if args.json:
            print(json.dumps(as_json(stop, snap), default=str), flush=True)
        else:
            console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {escape(headline(stop, snap))}", highlight=False,
                          soft_wrap=True)  # fmt: skip
    blocking = {"critical"} if args.fail_on == "critical" else {"critical", "warning"}
    return 1 if any(i.severity in blocking for i in snap.diagnosis.issues) else 0


# -- ingest ------------------------------------------------------------------------------------------

PROGRESS_BYTES = 16 << 20  # inputs larger than this get a progress bar


def cmd_ingest(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from trainatlas.ingest import ingest_paths

    missing = [p for p in args.paths if not Path(p).expanduser().exists()]
    total = sum(_tree_size(Path(p).expanduser()) for p in args.paths if p not in missing)
    show = not args.json and total > PROGRESS_BYTES
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=Console(stderr=True), disable=not show, transient=True) as bar:  # fmt: skip
        task = bar.add_task("ingest", total=total)

        def progress(file: Path, done: int, all_bytes: int) -> None:
            bar.update(task, completed=done, total=all_bytes, description=escape(file.name[:40]))

        results = ingest_paths([p for p in args.paths if p not in missing], args.root, args.project, progress)
    payload = [r.to_json() for r in results] + [
        {"path": p, "run_id": None, "mode": "skipped", "errors": [f"{p}: no such file or directory"]} for p in missing
    ]
    if not payload:
        return _fail(args, "no training logs found under " + ", ".join(args.paths))

    def render() -> None:
        table = Table(title=f"{sum(r.ok for r in results)} of {len(payload)} files ingested", title_justify="left")
        for col in ("file", "format", "run", "mode", "rows", "steps", "errors"):
            table.add_column(col, justify="right" if col in ("rows", "steps", "errors") else "left")
        for r in results:
            table.add_row(escape(Path(r.path).name), r.format or "-", r.run_id or "-", r.mode, f"{r.rows_added:,}",
                          f"{r.steps:,}", str(r.error_count or len(r.errors)))  # fmt: skip
        console.print(table)
        for item in payload:
            for err in item["errors"][:5]:
                console.print(f"[yellow]{escape(err)}[/yellow]", highlight=False)

    _emit(args, payload, render)
    return 0 if any(r.ok for r in results) else 2


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


# -- demo --------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from trainatlas.demo import run_demo
    except ImportError as exc:
        return _fail(args, f"the demo needs torch and scikit-learn ({exc}); run `make demo`")
    return run_demo(args.root, args.steps, as_json=args.json)


def cmd_serve(args: argparse.Namespace) -> int:
    from trainatlas.server import serve

    serve(args.root, http=args.http, host=args.host, port=args.port, token=args.token,
          allowed_hosts=args.allowed_host)  # fmt: skip
    return 0


COMMANDS = {
    "runs": cmd_runs,
    "show": cmd_show,
    "events": cmd_events,
    "sql": cmd_sql,
    "diagnose": cmd_diagnose,
    "status": cmd_status,
    "check": cmd_check,
    "compare": cmd_compare,
    "carbon": cmd_carbon,
    "ask": cmd_ask,
    "watch": cmd_watch,
    "ingest": cmd_ingest,
    "demo": cmd_demo,
    "serve": cmd_serve,
}


if __name__ == "__main__":
    sys.exit(main())
