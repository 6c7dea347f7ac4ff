"""What a person looks at first: the runs under a root, and one run's details."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainatlas.store.layout import RUN_FILE
from trainatlas.store.runinfo import read_run_json

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog


def list_runs(
    catalog: Catalog, project: str | None = None, status: str | None = None, name: str | None = None
) -> list[dict[str, Any]]:
    """Runs newest first with their step count and last training loss; ``name`` matches a substring."""
    last_loss = dict(
        catalog.con.execute(
            "SELECT run_id, arg_max(value, step) FROM scalars WHERE key = 'train/loss' GROUP BY run_id"
        ).fetchall()
    )
    now = datetime.now(timezone.utc)
    rows = []
    for run in sorted(catalog.runs, key=lambda r: r["started_at"] or now, reverse=True):
        if (project and run["project"] != project) or (status and run["status"] != status):
            continue
        if name and name.lower() not in run["name"].lower():
            continue
        seen = run["ended_at"] or run["heartbeat_at"] or run["started_at"]
        rows.append(
            {
                "project": run["project"],
                "name": run["name"],
                "run_id": run["run_id"],
                "status": run["status"],
                "steps": run["steps"],
                "last_loss": last_loss.get(run["run_id"]),
                "age_s": round((now - seen).total_seconds(), 1) if seen else None,
                "started_at": run["started_at"],
                "path": run["path"],
            }
        )
    return rows


def run_details(catalog: Catalog, ref: str) -> dict[str, Any]:
    """Everything a person looks at first about one run."""
    run = catalog.resolve(ref)
    info = read_run_json(Path(run["path"]) / RUN_FILE)
    con = catalog.con
    metrics = con.execute(
        """SELECT key, count(*) AS n, min(step) AS first_step, max(step) AS last_step,
                  arg_max(value, step) AS last, min(value) AS min, max(value) AS max
           FROM scalars WHERE run_id = ? GROUP BY key ORDER BY key""",
        [run["run_id"]],
    ).fetchall()
    layer_count, sampled_steps = con.execute(
        "SELECT count(DISTINCT layer), count(DISTINCT step) FROM layers WHERE run_id = ?",
        [run["run_id"]],
    ).fetchone()
    events = con.execute(
        "SELECT step, kind, code, severity, message FROM events WHERE run_id = ? ORDER BY ts DESC LIMIT 20",
        [run["run_id"]],
    ).fetchall()
    names = ("key", "n", "first_step", "last_step", "last", "min", "max")
    return {
        "run": {k: run[k] for k in ("run_id", "name", "project", "status", "steps", "path")},
        "started_at": run["started_at"],
        "ended_at": run["ended_at"],
        "config": info.get("config", {}),
        "environment": info.get("environment", {}),
        "model": {k: v for k, v in (info.get("model") or {}).items() if k != "modules"},
        "optimizer": info.get("optimizer"),
        "total_steps": info.get("total_steps"),
        "metrics": [dict(zip(names, m, strict=True)) for m in metrics],
        "layers": {"layers": layer_count, "sampled_steps": sampled_steps},
        "events": [dict(zip(("step", "kind", "code", "severity", "message"), e, strict=True)) for e in events],
        "traceback": info.get("traceback"),
        "channels_off": info.get("channels_off") or {},
    }
