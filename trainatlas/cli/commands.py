"""The commands: each calls the same functions as the MCP tools and prints a table or JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainatlas.cli.parser import build_parser
from trainatlas.cli.rendering import (
    SEVERITY_STYLE,
    console,
    render_advice,
    render_details,
    render_diagnosis,
    render_runs,
)
from trainatlas.fmt import duration as _duration
from trainatlas.fmt import number as _num


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


def cmd_runs(args: argparse.Namespace) -> int:
    from trainatlas.tools.runs import list_runs

    rows = list_runs(_catalog(args), args.project, args.status)
    return _emit(args, rows, lambda: render_runs(rows))


# -- show --------------------------------------------------------------------------------------------


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

