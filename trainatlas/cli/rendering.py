"""Terminal renderings shared by the commands and the demo: runs, run details, a diagnosis, advice."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trainatlas.fmt import duration as _duration
from trainatlas.fmt import number as _num

# Piped output gets a wide table instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
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

